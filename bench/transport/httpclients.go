package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/gojek/heimdall/v7"
	"github.com/gojek/heimdall/v7/httpclient"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// HedgeDelay is when the hedging clients send their second request.
const HedgeDelay = 10 * time.Millisecond

// callID numbers the calls of a run; the server tells a call's first
// request from its retry by it.
var callID atomic.Int64

func nextQuery() string { return "?c=" + strconv.FormatInt(callID.Add(1), 10) }

// readOK reads a reply to its end and closes it; anything but a 200 with
// the expected body is an error.
func readOK(resp *http.Response, err error) error {
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(b) != string(okBody) {
		return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
	}
	return nil
}

// drain reads a dropped reply to its end and closes it, so that its
// connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// newBase returns the RoundTripper a client sends through: its own
// keep-alive connection pool to the loopback server, or the in-memory
// server.
func newBase(s *HTTPServer, mem bool) http.RoundTripper {
	if mem {
		return s.InMemory()
	}
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
}

func closeIdle(rts ...http.RoundTripper) {
	for _, rt := range rts {
		if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// get is a Call making a GET of path with a plain *http.Client.
func get(c *http.Client, url, path string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path+nextQuery(), nil)
		if err != nil {
			return err
		}
		return readOK(c.Do(req))
	}
}

// loopGet is the hand-written retry loop: a 503 is drained and the
// request sent once more, at once (the server says Retry-After: 0).
func loopGet(c *http.Client, url, path string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path+nextQuery(), nil)
		if err != nil {
			return err
		}
		for try := 1; ; try++ {
			resp, err := c.Do(req)
			if err == nil && resp.StatusCode == http.StatusServiceUnavailable && try < 2 {
				drain(resp)
				continue
			}
			return readOK(resp, err)
		}
	}
}

// hedgeGet is the hand-written hedge: a second request after HedgeDelay,
// the first reply wins, the other request is cancelled, awaited and its
// reply released.
func hedgeGet(c *http.Client, url, path string) func(context.Context) error {
	type result struct {
		i    int
		resp *http.Response
		err  error
	}
	return func(ctx context.Context) error {
		u := url + path + nextQuery()
		results := make(chan result, 2)
		var cancels [2]context.CancelFunc
		start := func(i int) {
			tctx, cancel := context.WithCancel(ctx)
			cancels[i] = cancel
			go func() {
				req, err := http.NewRequestWithContext(tctx, http.MethodGet, u, nil)
				if err != nil {
					results <- result{i: i, err: err}
					return
				}
				resp, err := c.Do(req)
				results <- result{i, resp, err}
			}()
		}
		start(0)
		sent := 1
		t := time.NewTimer(HedgeDelay)
		var first result
		select {
		case first = <-results:
			t.Stop()
		case <-t.C:
			start(1)
			sent++
			first = <-results
		}
		if sent == 2 {
			cancels[1-first.i]()
		}
		err := readOK(first.resp, first.err)
		cancels[first.i]()
		if sent == 2 {
			if loser := <-results; loser.resp != nil {
				drain(loser.resp)
			}
		}
		return err
	}
}

// recourseExec returns an executor with one policy, under key "bench".
func recourseExec(opts ...policy.Option) *recourse.Executor {
	return recourse.NewExecutor(recourse.WithPolicy("bench", opts...))
}

// HTTPScenarios returns the HTTP scenarios — success, one retry, hedged
// GET — over loopback (mem false) or in memory (mem true).
func HTTPScenarios(mem bool) []*Scenario {
	net := "loopback"
	if mem {
		net = "memory"
	}
	return []*Scenario{
		httpScenario("http/"+net+"/success", PathOK, mem, false),
		httpScenario("http/"+net+"/retry", PathFlaky, mem, false),
		httpScenario("http/"+net+"/hedge", PathStall, mem, true),
	}
}

func httpScenario(name, path string, mem, hedged bool) *Scenario {
	s := NewHTTPServer()
	url := s.URL()
	if mem {
		url = "http://memory"
	}
	var bases []http.RoundTripper
	base := func() http.RoundTripper {
		b := newBase(s, mem)
		bases = append(bases, b)
		return b
	}
	sc := &Scenario{Name: name, Server: &s.counters}
	sc.Close = func() { closeIdle(bases...); s.Close() }

	// The floor: net/http alone, with a hand-written retry or hedge.
	plain := &http.Client{Transport: base()}
	switch {
	case hedged:
		sc.Cases = append(sc.Cases, Case{"net/http+hedge", hedgeGet(plain, url, path)})
	case path == PathFlaky:
		sc.Cases = append(sc.Cases, Case{"net/http+loop", loopGet(plain, url, path)})
	default:
		sc.Cases = append(sc.Cases, Case{"net/http", get(plain, url, path)})
	}

	// recourse: one retry, or a hedge after HedgeDelay.
	ropts := []policy.Option{policy.MaxAttempts(2)}
	if hedged {
		ropts = []policy.Option{policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: HedgeDelay, MaxHedges: 1})}
	}
	rc := &http.Client{Transport: rhttp.NewTransport(recourseExec(ropts...), "bench", base())}
	sc.Cases = append(sc.Cases, Case{"recourse", get(rc, url, path)})

	// failsafe-go: failsafehttp's retry policy (Retry-After honoured), or
	// a hedge policy.
	var fp failsafe.Policy[*http.Response] = failsafehttp.NewRetryPolicyBuilder().WithMaxRetries(1).Build()
	if hedged {
		fp = hedgepolicy.NewBuilderWithDelay[*http.Response](HedgeDelay).Build()
	}
	fc := &http.Client{Transport: failsafehttp.NewRoundTripper(base(), fp)}
	sc.Cases = append(sc.Cases, Case{"failsafehttp", get(fc, url, path)})
	if hedged {
		return sc // the others do not hedge
	}

	// go-retryablehttp: one retry, no wait but the server's Retry-After.
	rh := retryablehttp.NewClient()
	rh.HTTPClient = &http.Client{Transport: base()}
	rh.Logger = nil
	rh.RetryMax = 1
	rh.RetryWaitMin, rh.RetryWaitMax = 0, 0
	sc.Cases = append(sc.Cases, Case{"go-retryablehttp", func(ctx context.Context) error {
		req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url+path+nextQuery(), nil)
		if err != nil {
			return err
		}
		return readOK(rh.Do(req))
	}})

	// heimdall: one retry after a constant zero backoff.
	hc := httpclient.NewClient(
		httpclient.WithHTTPClient(&http.Client{Transport: base()}),
		httpclient.WithRetryCount(1),
		httpclient.WithRetrier(heimdall.NewRetrier(heimdall.NewConstantBackoff(0, 0))))
	sc.Cases = append(sc.Cases, Case{"heimdall", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path+nextQuery(), nil)
		if err != nil {
			return err
		}
		return readOK(hc.Do(req))
	}})
	return sc
}
