package policy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// RemoteProvider serves policies published at a URL, in the file format
// (JSON when the response's Content-Type or the URL's path says json,
// YAML otherwise), polled like a FileProvider with the same last-known-
// good behaviour. Polls send If-None-Match with the last ETag, so an
// unchanged set costs the server a 304.
//
// A policy server is a dependency too: when it is down or serves a bad
// set, calls keep running under the last good one, and the timeline
// attribute policy_source says "remote:URL (stale: …)".
type RemoteProvider struct {
	reloader
	fetch *remoteFetch
}

// WithHTTPClient makes a RemoteProvider fetch through c (default: a client
// of its own with a 10s timeout, whose connections Close releases). A
// FileProvider ignores it.
func WithHTTPClient(c *http.Client) FileOption {
	return func(r *reloader) {
		if r.remote != nil {
			r.remote.client = c
		}
	}
}

// MaxPolicyBytes bounds the size of a set a RemoteProvider fetches
// (default 4 MiB). A FileProvider ignores it.
func MaxPolicyBytes(n int64) FileOption {
	return func(r *reloader) {
		if r.remote != nil {
			r.remote.limit = n
		}
	}
}

// NewRemoteProvider fetches url once (that must succeed) and then polls
// it, configured by the options of NewFileProvider and those above.
func NewRemoteProvider(url string, opts ...FileOption) (*RemoteProvider, error) {
	f := &remoteFetch{url: url, limit: 4 << 20,
		client: &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	p := &RemoteProvider{fetch: f}
	p.remote = f
	if err := p.start("remote:"+url, f.get, opts); err != nil {
		f.client.CloseIdleConnections()
		return nil, err
	}
	return p, nil
}

// Close stops polling and releases the provider's idle connections. The
// provider keeps serving its last good set.
func (p *RemoteProvider) Close() error {
	err := p.reloader.Close()
	p.fetch.client.CloseIdleConnections()
	return err
}

type remoteFetch struct {
	url    string
	client *http.Client
	limit  int64

	mu   sync.Mutex
	etag string
}

func (f *remoteFetch) get() ([]byte, Format, bool, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, f.url, nil)
	if err != nil {
		return nil, 0, false, err
	}
	f.mu.Lock()
	if f.etag != "" {
		req.Header.Set("If-None-Match", f.etag)
	}
	f.mu.Unlock()
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, 0, true, nil
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, 0, false, fmt.Errorf("GET %s: %s", f.url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.limit+1))
	if err != nil {
		return nil, 0, false, err
	}
	if int64(len(data)) > f.limit {
		return nil, 0, false, fmt.Errorf("GET %s: policy set larger than %d bytes", f.url, f.limit)
	}
	format := YAML
	if strings.Contains(resp.Header.Get("Content-Type"), "json") || strings.HasSuffix(strings.ToLower(req.URL.Path), ".json") {
		format = JSON
	}
	f.mu.Lock()
	f.etag = resp.Header.Get("ETag")
	f.mu.Unlock()
	return data, format, false, nil
}
