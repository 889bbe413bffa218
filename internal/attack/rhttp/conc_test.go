package rhttpattack

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// 500 goroutines, one hedging Transport, a server slow at random: every caller
// gets its own answer, whole; with -race.
func TestStormHedged(t *testing.T) {
	var hits atomic.Int64
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if n%3 == 0 {
			select {
			case <-time.After(30 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if n%7 == 0 {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "busy")
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.URL.Query().Get("id")+"|"+r.Header.Get("X-Id")+"|"+string(b))
	})
	c, _, base := newClient(t, newExec(4, hedge(2*time.Millisecond), perAttempt(5*time.Second)))
	base.MaxIdleConnsPerHost = 64
	const n = 500
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := strconv.Itoa(g)
			req, _ := http.NewRequest("PUT", srv.URL+"?id="+id, stringsReader("body"+id))
			req.Header.Set("X-Id", id)
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 {
				return
			}
			if want := id + "|" + id + "|body" + id; string(b) != want {
				t.Errorf("got %q want %q", b, want)
			}
		}()
	}
	wg.Wait()
}

// A response kept open (unread) while many other calls run, then read whole.
func TestResponseKeptOpenWhileOthersRun(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(pattern(1<<20, 5))
			return
		}
		_, _ = io.WriteString(w, "small")
	})
	for _, name := range []string{"plain", "hedged"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			if name == "hedged" {
				e = newExec(3, hedge(time.Millisecond))
			}
			c, _, _ := newClient(t, e)
			held, err := c.Get(srv.URL + "/big")
			if err != nil {
				t.Fatal(err)
			}
			defer held.Body.Close()
			var wg sync.WaitGroup
			for g := 0; g < 50; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 5; i++ {
						resp, err := c.Get(srv.URL + "/s")
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			time.Sleep(50 * time.Millisecond)
			got, err := io.ReadAll(held.Body)
			if err != nil || sum(got) != sum(pattern(1<<20, 5)) {
				t.Fatalf("held body: %d bytes err %v", len(got), err)
			}
		})
	}
}

// headerReader is a base RoundTripper like a logging wrapper: after the inner
// transport returns, it reads the request's headers. A lost hedge's try returns
// from the inner transport when its context is cancelled; if RoundTrip (or the
// winner's Body.Close) does not wait for it, the caller's legal reuse of the
// request after closing the body races with it.
type headerReader struct {
	inner http.RoundTripper
	after time.Duration
}

func (h headerReader) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.inner.RoundTrip(r)
	time.Sleep(h.after)
	n := 0
	for k, v := range r.Header {
		n += len(k) + len(v)
	}
	_ = n
	return resp, err
}

// The caller mutates the request's header after closing the winning body (allowed by
// net/http: "callers should not mutate or reuse the request until the Response's Body
// has been closed"). No try may still be reading it.
func TestHeaderMutatedAfterBodyClosed(t *testing.T) {
	var hits atomic.Int64
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 1 { // the first try is slow: the hedge wins
			select {
			case <-r.Context().Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rt := rhttp.NewTransport(newExec(2, hedge(5*time.Millisecond)), key, headerReader{inner: base, after: 20 * time.Millisecond})
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("X-A", "1")
	for i := 0; i < 5; i++ {
		hits.Store(0)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		for j := 0; j < 50; j++ { // reuse: mutate for the next call
			req.Header.Set("X-B", strconv.Itoa(j))
			time.Sleep(time.Millisecond)
		}
	}
}

// Same with a plain retry whose failed try the loop moves past.
func TestHeaderMutatedAfterRetry(t *testing.T) {
	var hits atomic.Int64
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rt := rhttp.NewTransport(newExec(2), key, headerReader{inner: base})
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("X-A", "1")
	for i := 0; i < 20; i++ {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		req.Header.Set("X-B", strconv.Itoa(i))
	}
}

// No goroutine outlives the call once bodies are closed, even unread, under each policy shape.
func TestNoGoroutinesAfterClose(t *testing.T) {
	var hits atomic.Int64
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch n % 4 {
		case 0:
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		case 1:
			w.WriteHeader(503)
			_, _ = w.Write(make([]byte, 100<<10))
			return
		}
		_, _ = w.Write(make([]byte, 50<<10))
	})
	for _, name := range []string{"plain", "hedged", "perAttempt", "overall", "hedgedAll"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			switch name {
			case "hedged":
				e = newExec(3, hedge(time.Millisecond))
			case "perAttempt":
				e = newExec(3, perAttempt(50*time.Millisecond))
			case "overall":
				e = newExec(3, overall(2*time.Second))
			case "hedgedAll":
				e = newExec(3, hedge(time.Millisecond), perAttempt(100*time.Millisecond), overall(2*time.Second))
			}
			base := &http.Transport{}
			rt := rhttp.NewTransport(e, key, base)
			var wg sync.WaitGroup
			for g := 0; g < 20; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
					resp, err := rt.RoundTrip(req)
					if err == nil {
						if g%2 == 0 {
							_, _ = io.Copy(io.Discard, resp.Body)
						}
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			base.CloseIdleConnections()
			srv.CloseClientConnections()
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*conn).serve"),
					goleak.IgnoreAnyFunction("net/http/httptest.(*Server).goServe.func1"),
					goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
					goleak.IgnoreAnyFunction("testing.(*T).Run"),
					goleak.IgnoreAnyFunction("testing.tRunner"))
				if err == nil {
					return
				}
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				base.CloseIdleConnections()
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

type sr struct {
	s string
	i int
}

func (r *sr) Read(p []byte) (int, error) {
	if r.i >= len(r.s) {
		return 0, io.EOF
	}
	n := copy(p, r.s[r.i:])
	r.i += n
	return n, nil
}

// stringsReader is an io.Reader without GetBody support (buffered for replay).
func stringsReader(s string) io.Reader { return &sr{s: s} }
