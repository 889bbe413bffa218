package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// defaultFetchTimeout bounds each fetch of a RemoteProvider, headers and
// body, unless FetchTimeout says otherwise.
const defaultFetchTimeout = 10 * time.Second

// maxRedirects is how many redirects a RemoteProvider follows when the
// user's client has no CheckRedirect of its own (net/http's default).
const maxRedirects = 10

// RemoteProvider serves policies published at a URL, in the file format
// (JSON when the response's Content-Type or the URL's path says json,
// YAML otherwise), polled like a FileProvider with the same last-known-
// good behaviour. Polls send If-None-Match with the ETag of the last good
// set, so an unchanged set costs the server a 304 — and a 304 after failed
// polls means the source serves the set in use again: the error clears.
//
// Every fetch is bounded by FetchTimeout and ended by Close, whatever the
// client. Redirects are followed only to the URL's own host unless
// AllowRedirectsToOtherHosts is given.
//
// A policy server is a dependency too: when it is down or serves a bad
// set (an empty body included), calls keep running under the last good
// one, and the timeline attribute policy_source says "remote:URL (stale: …)"
// — the URL with its password and the values of its query parameters
// shown as xxxxx, there and in errors, since tokens are often passed there.
// Like a FileProvider it builds the set's declared budgets and serves them
// as a BudgetSource.
type RemoteProvider struct {
	reloader
	remote *remoteFetch
}

// WithHTTPClient makes a RemoteProvider fetch through a copy of c (default:
// a client of its own, whose connections Close releases). The copy's
// CheckRedirect refuses redirects to other hosts, then defers to c's. A
// FileProvider ignores it.
func WithHTTPClient(c *http.Client) FileOption { return func(r *reloader) { r.client = c } }

// FetchTimeout bounds each fetch of a RemoteProvider, from sending the
// request to the end of the body (default 10s; d ≤ 0 means the default).
// A FileProvider ignores it.
func FetchTimeout(d time.Duration) FileOption {
	return func(r *reloader) {
		if d <= 0 {
			d = defaultFetchTimeout
		}
		r.timeout = d
	}
}

// AllowRedirectsToOtherHosts lets a RemoteProvider follow redirects away
// from its URL's host (by default such a redirect is an error naming its
// target; redirects within the host are followed). A FileProvider
// ignores it.
func AllowRedirectsToOtherHosts() FileOption { return func(r *reloader) { r.crossHost = true } }

// NewRemoteProvider fetches url once (that must succeed with a policy
// set: an error status, an empty body or a 304 is an error) and then
// polls it, configured by the options of NewFileProvider and those above.
func NewRemoteProvider(url string, opts ...FileOption) (*RemoteProvider, error) {
	p := &RemoteProvider{}
	shown := redact(url)
	p.configure("remote:"+shown, opts)
	f := &remoteFetch{url: url, shown: shown, limit: p.limit, timeout: p.timeout}
	if p.client == nil {
		f.own = true
		f.client = &http.Client{Transport: http.DefaultTransport}
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			f.client.Transport = t.Clone()
		}
	} else {
		c := *p.client
		f.client = &c
	}
	f.client.CheckRedirect = checkRedirect(f.client.CheckRedirect, p.crossHost)
	p.remote = f
	if err := p.start(f.get); err != nil {
		f.release()
		return nil, err
	}
	return p, nil
}

// Close stops polling, ending a fetch in progress, and releases the idle
// connections of the provider's own client. The provider keeps serving
// its last good set.
func (p *RemoteProvider) Close() error {
	err := p.reloader.Close()
	if p.remote != nil {
		p.remote.release()
	}
	return err
}

// checkRedirect refuses redirects that leave the original request's host
// (or go from https to http) unless crossHost, then applies the user's
// policy, or net/http's default limit when there is none.
func checkRedirect(user func(*http.Request, []*http.Request) error, crossHost bool) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		from := via[0].URL
		if !crossHost && !sameHost(from, req.URL) {
			return fmt.Errorf("refusing the redirect to %s: it leaves %s (allow with AllowRedirectsToOtherHosts)",
				redact(req.URL.String()), from.Scheme+"://"+from.Host)
		}
		if user != nil {
			return user(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

// sameHost reports whether to is on from's host and port (a missing port
// being the scheme's) — or is its https upgrade on the default ports — and
// not a downgrade from https to http.
func sameHost(from, to *url.URL) bool {
	fs, ts := strings.ToLower(from.Scheme), strings.ToLower(to.Scheme)
	switch {
	case !strings.EqualFold(from.Hostname(), to.Hostname()), fs == "https" && ts != "https":
		return false
	case fs == "http" && ts == "https":
		return portOf(from) == "80" && portOf(to) == "443"
	}
	return portOf(from) == portOf(to)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// redact returns rawURL with any password and the value of every query
// parameter replaced by "xxxxx" (tokens are often passed there), for
// Source, timelines and errors.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			for i := range vs {
				vs[i] = "xxxxx"
			}
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

type remoteFetch struct {
	url     string
	shown   string       // url without its password and query values
	client  *http.Client // a copy, with the redirect policy
	own     bool         // client is the provider's own
	limit   int64
	timeout time.Duration
}

// release closes the idle connections of the provider's own transport; a
// user's client (or a replaced http.DefaultTransport) is shared, and its
// connections are its owner's to close.
func (f *remoteFetch) release() {
	if _, cloned := f.client.Transport.(*http.Transport); f.own && cloned {
		f.client.CloseIdleConnections()
	}
}

func (f *remoteFetch) get(ctx context.Context, tag string) (fetched, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	data, res, err := f.do(ctx, tag)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("GET %s: no complete answer within %v (FetchTimeout): %w (%v)", f.shown, f.timeout, context.DeadlineExceeded, err)
	}
	res.data = data
	return res, err
}

func (f *remoteFetch) do(ctx context.Context, tag string) ([]byte, fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, fetched{}, err
	}
	if tag != "" {
		req.Header.Set("If-None-Match", tag)
	}
	resp, err := f.client.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = f.shown // net/http's shows the query, tokens included
	}
	if err != nil {
		return nil, fetched{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if tag == "" {
			return nil, fetched{}, fmt.Errorf("GET %s: %s to a request that named no ETag: there is no set it could stand for", f.shown, resp.Status)
		}
		return nil, fetched{unchanged: true, tag: tag}, nil
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fetched{}, fmt.Errorf("GET %s: %s", f.shown, resp.Status)
	}
	what := "GET " + f.shown + ": the policy set"
	if resp.ContentLength > f.limit {
		return nil, fetched{}, tooLarge(what, resp.ContentLength, f.limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.limit+1))
	if err != nil {
		return nil, fetched{}, fmt.Errorf("GET %s: reading the body: %w", f.shown, err)
	}
	if int64(len(data)) > f.limit {
		return nil, fetched{}, tooLarge(what, -1, f.limit)
	}
	format := YAML
	if strings.Contains(resp.Header.Get("Content-Type"), "json") || strings.HasSuffix(strings.ToLower(req.URL.Path), ".json") {
		format = JSON
	}
	return data, fetched{format: format, tag: resp.Header.Get("ETag")}, nil
}
