package rhttpattack

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

type valKey struct{}

// A caller context already done: no request reaches the server; the error is the caller's.
func TestCallerDoneBefore(t *testing.T) {
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	cause := errors.New("before")
	for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
		t.Run(name, func(t *testing.T) {
			e := map[string]func() *http.Client{
				"plain":      func() *http.Client { c, _, _ := newClient(t, newExec(3)); return c },
				"hedged":     func() *http.Client { c, _, _ := newClient(t, newExec(3, hedge(time.Millisecond))); return c },
				"perAttempt": func() *http.Client { c, _, _ := newClient(t, newExec(3, perAttempt(time.Second))); return c },
				"overall":    func() *http.Client { c, _, _ := newClient(t, newExec(3, overall(time.Second))); return c },
			}[name]()
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(cause)
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			resp, err := e.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("no error with a cancelled caller")
			}
			if !errors.Is(err, context.Canceled) && !errors.Is(err, cause) {
				t.Fatalf("err %v", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("server saw %d requests from cancelled callers", n)
	}
}

// Cancel during a try: the handler sees its request context end; the call returns
// promptly with the caller's error (compared against plain net/http for the cause).
func TestCancelDuringTryCauseMatchesStdlib(t *testing.T) {
	cause := errors.New("user hung up")
	run := func(t *testing.T, rt http.RoundTripper) (error, bool) {
		entered := make(chan struct{}, 4)
		handlerSaw := make(chan bool, 4)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			select {
			case <-r.Context().Done():
				handlerSaw <- true
			case <-time.After(10 * time.Second):
				handlerSaw <- false
			}
		})
		ctx, cancel := context.WithCancelCause(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		go func() { <-entered; cancel(cause) }()
		var err error
		within(t, 5*time.Second, "RoundTrip cancelled during try", func() {
			var resp *http.Response
			resp, err = rt.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
		})
		return err, <-handlerSaw
	}
	std := &http.Transport{}
	defer std.CloseIdleConnections()
	stdErr, _ := run(t, std)
	for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			switch name {
			case "hedged":
				e = newExec(3, hedge(time.Second))
			case "perAttempt":
				e = newExec(3, perAttempt(5*time.Second))
			case "overall":
				e = newExec(3, overall(5*time.Second))
			}
			_, rt, _ := newClient(t, e)
			err, saw := run(t, rt)
			if err == nil {
				t.Fatal("no error")
			}
			if !saw {
				t.Fatal("handler's r.Context() not done after caller cancelled")
			}
			if errors.Is(stdErr, cause) && !errors.Is(err, cause) {
				t.Fatalf("net/http reports the cause (%v); rhttp: %v", stdErr, err)
			}
			if !errors.Is(err, context.Canceled) && !errors.Is(err, cause) {
				t.Fatalf("err %v, want Canceled or cause", err)
			}
		})
	}
}

// Cancel during the backoff (Retry-After: 1): returns promptly, no second try.
func TestCancelDuringBackoff(t *testing.T) {
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(503)
		_, _ = io.WriteString(w, "busy")
	})
	c, _, _ := newClient(t, newExec(3, maxRetryAfter(5*time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	resp, err := c.Do(req)
	el := time.Since(start)
	if err == nil {
		// A final response is acceptable only if it is the failed one, whole.
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("returned status %d body %q after %v", resp.StatusCode, b, el)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("err %v", err)
	}
	if el > 1500*time.Millisecond {
		t.Fatalf("call outlived its 300ms deadline: %v", el)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d tries", n)
	}
}

// customCtx is a Context not made by the context package.
type customCtx struct {
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (c *customCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *customCtx) Done() <-chan struct{}       { return c.done }
func (c *customCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
func (c *customCtx) Value(k any) any {
	if k == (valKey{}) {
		return "custom"
	}
	return nil
}
func (c *customCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = context.Canceled
		close(c.done)
	}
}

// A custom caller Context: values reach the base, cancellation ends the try and the body.
func TestCustomCallerContext(t *testing.T) {
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			switch name {
			case "hedged":
				e = newExec(3, hedge(time.Millisecond))
			case "perAttempt":
				e = newExec(3, perAttempt(5*time.Second))
			}
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				_, _ = w.Write([]byte("a"))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			})
			var sawVal atomic.Int32
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			rt := rhttp.NewTransport(e, key, rtFunc(func(r *http.Request) (*http.Response, error) {
				if r.Context().Value(valKey{}) == "custom" {
					sawVal.Add(1)
				}
				return base.RoundTrip(r)
			}))
			ctx := &customCtx{done: make(chan struct{})}
			defer ctx.cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if sawVal.Load() == 0 {
				t.Fatal("caller's context value did not reach the base RoundTripper")
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(resp.Body, b); err != nil {
				t.Fatal(err)
			}
			ctx.cancel()
			var rerr error
			within(t, 5*time.Second, "body read after custom ctx cancel", func() { _, rerr = io.ReadAll(resp.Body) })
			if rerr == nil {
				t.Fatal("body ended cleanly after cancel")
			}
		})
	}
}

// Cancel a custom context while the try waits for headers.
func TestCustomContextCancelDuringTry(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	for _, name := range []string{"plain", "perAttempt", "hedged"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			switch name {
			case "hedged":
				e = newExec(3, hedge(5*time.Millisecond))
			case "perAttempt":
				e = newExec(3, perAttempt(5*time.Second))
			}
			_, rt, _ := newClient(t, e)
			ctx := &customCtx{done: make(chan struct{})}
			time.AfterFunc(50*time.Millisecond, ctx.cancel)
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			var err error
			within(t, 5*time.Second, "RoundTrip with custom ctx cancelled", func() {
				var resp *http.Response
				resp, err = rt.RoundTrip(req)
				if resp != nil {
					resp.Body.Close()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Nested: a call made from inside the base RoundTripper (e.g. an auth token fetch)
// through another rhttp transport with the try's context; both work, the outer
// per-attempt deadline bounds the inner call.
func TestNestedCalls(t *testing.T) {
	var slow atomic.Bool
	tok, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(3 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "tok")
	})
	api, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "api:"+r.Header.Get("X-Tok"))
	})
	inner, innerRT, _ := newClient(t, newExec(2))
	_ = inner
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	outer := rhttp.NewTransport(newExec(2, perAttempt(300*time.Millisecond)), key, rtFunc(func(r *http.Request) (*http.Response, error) {
		treq, _ := http.NewRequestWithContext(r.Context(), "GET", tok.URL, nil)
		tresp, err := innerRT.RoundTrip(treq)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(tresp.Body)
		tresp.Body.Close()
		r2 := r.Clone(r.Context())
		r2.Header.Set("X-Tok", string(b))
		return base.RoundTrip(r2)
	}))
	req, _ := http.NewRequest("GET", api.URL, nil)
	resp, err := outer.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "api:tok" {
		t.Fatalf("%q", b)
	}
	slow.Store(true)
	start := time.Now()
	req, _ = http.NewRequest("GET", api.URL, nil)
	resp, err = outer.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("nested slow call succeeded")
	}
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Fatalf("outer 2x300ms per-attempt did not bound nested call: %v", el)
	}
}
