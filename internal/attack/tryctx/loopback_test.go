package tryctx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// recorder wraps a real transport, keeping every try's context.
type recorder struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	ctxs []context.Context
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.ctxs = append(r.ctxs, req.Context())
	r.mu.Unlock()
	return r.rt.RoundTrip(req)
}

func (r *recorder) all() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]context.Context(nil), r.ctxs...)
}

// dripHandler: ?n chunks every ?gap ms, flushed; "slow" requests (the first
// of each id when ?slowfirst) hang until the client goes away.
func dripHandler(hits *atomic.Int32, serverSaw chan error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		gap, _ := strconv.Atoi(q.Get("gap"))
		if q.Get("slowfirst") != "" && hits.Add(1) == 1 {
			<-r.Context().Done()
			if serverSaw != nil {
				serverSaw <- r.Context().Err()
			}
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		f := w.(http.Flusher)
		for i := 0; i < n; i++ {
			if _, err := fmt.Fprintf(w, "chunk%03d\n", i); err != nil {
				return
			}
			f.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Duration(gap) * time.Millisecond):
			}
		}
	}
}

type server struct {
	name string
	srv  *httptest.Server
	base http.RoundTripper
}

func servers(t *testing.T, h http.Handler) []server {
	s1 := httptest.NewUnstartedServer(h)
	s1.Config.ErrorLog = log.New(io.Discard, "", 0)
	s1.Start()
	t.Cleanup(s1.Close)
	b1 := &http.Transport{}
	t.Cleanup(b1.CloseIdleConnections)
	s2 := httptest.NewUnstartedServer(h)
	s2.EnableHTTP2 = true
	s2.Config.ErrorLog = log.New(io.Discard, "", 0)
	s2.StartTLS()
	t.Cleanup(s2.Close)
	b2 := s2.Client().Transport.(*http.Transport)
	t.Cleanup(b2.CloseIdleConnections)
	return []server{{"h1", s1, b1}, {"h2", s2, b2}}
}

// TestLoopbackBodyAfterReturn: against real HTTP/1.1 and HTTP/2 servers, the
// body dripping after the call returned reads whole under every shape; the
// caller's cancel while the body is read makes the next Read fail promptly
// with the context's error; closing the body early ends the try's context.
func TestLoopbackBodyAfterReturn(t *testing.T) {
	var hits atomic.Int32
	for _, s := range servers(t, dripHandler(&hits, nil)) {
		for _, p := range shapes() {
			for _, mode := range []string{"whole", "cancel", "closeEarly"} {
				t.Run(s.name+"/"+p.name+"/"+mode, func(t *testing.T) {
					rec := &recorder{rt: s.base}
					rt := rhttp.NewTransport(p.exec(t), key, rec)
					caller, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					req, _ := http.NewRequestWithContext(caller, http.MethodGet, s.srv.URL+"/?n=10&gap=3", nil)
					res, err := rt.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					defer res.Body.Close()
					if res.ProtoMajor == 2 != (s.name == "h2") {
						t.Fatalf("proto %s", res.Proto)
					}
					ctxs := rec.all()
					ctx := ctxs[len(ctxs)-1]
					switch mode {
					case "whole":
						b, err := io.ReadAll(res.Body)
						if err != nil || len(b) != 90 {
							t.Fatalf("read %d bytes, %v; ctx %+v", len(b), err, look(ctx))
						}
					case "cancel":
						buf := make([]byte, 9)
						if _, err := io.ReadFull(res.Body, buf); err != nil {
							t.Fatal(err)
						}
						cause := errors.New("caller stops reading")
						cancel(cause)
						var rerr error
						within(t, time.Second, "Read after cancel", func() {
							_, rerr = io.ReadAll(res.Body)
						})
						if !errors.Is(rerr, context.Canceled) && !errors.Is(rerr, cause) {
							t.Fatalf("read after cancel: %v", rerr)
						}
						if s := look(ctx); s != (snap{context.Canceled, cause, true}) {
							t.Fatalf("try ctx %+v", s)
						}
					case "closeEarly":
						buf := make([]byte, 9)
						io.ReadFull(res.Body, buf)
						res.Body.Close()
						if !waitDone(ctx, time.Second) || ctx.Err() != context.Canceled {
							t.Fatalf("try ctx after Close %+v", look(ctx))
						}
					}
				})
			}
		}
	}
}

// TestLoopbackHedgeLoser: real servers, hedged GET: the primary's handler
// hangs; the hedge wins. The losing try's context ends promptly, the server
// sees the loser's request cancelled, the winner's body (dripping) reads
// whole after the call returned.
func TestLoopbackHedgeLoser(t *testing.T) {
	var hits atomic.Int32
	saw := make(chan error, 4)
	for _, s := range servers(t, dripHandler(&hits, saw)) {
		t.Run(s.name, func(t *testing.T) {
			hits.Store(0)
			rec := &recorder{rt: s.base}
			p := pol{attempts: 1, hedge: 20 * time.Millisecond}
			rt := rhttp.NewTransport(p.exec(t), key, rec)
			req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/?n=5&gap=5&slowfirst=1", nil)
			res, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			ctxs := rec.all()
			if len(ctxs) != 2 {
				t.Fatalf("%d tries", len(ctxs))
			}
			if !waitDone(ctxs[0], time.Second) {
				t.Fatal("loser's context not ended")
			}
			select {
			case <-saw:
			case <-time.After(2 * time.Second):
				t.Fatal("server never saw the loser cancelled")
			}
			b, err := io.ReadAll(res.Body)
			if err != nil || len(b) != 45 {
				t.Fatalf("winner body %d %v (winner ctx %+v)", len(b), err, look(ctxs[1]))
			}
		})
	}
}

// TestLoopbackStorm: 200 concurrent calls per server with random caller
// cancellation; no hang; all try contexts end; goroutines back to baseline
// once idle connections are closed.
func TestLoopbackStorm(t *testing.T) {
	var hits atomic.Int32
	g0 := runtime.NumGoroutine()
	ss := servers(t, dripHandler(&hits, nil))
	for _, s := range ss {
		t.Run(s.name, func(t *testing.T) {
			rec := &recorder{rt: s.base}
			p := pol{attempts: 2, perAttempt: 200 * time.Millisecond, hedge: 3 * time.Millisecond}
			rt := rhttp.NewTransport(p.exec(t), key, rec)
			var wg sync.WaitGroup
			for i := 0; i < 200; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					caller, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					time.AfterFunc(time.Duration(rand.IntN(15))*time.Millisecond, func() { cancel(errors.New("storm")) })
					req, _ := http.NewRequestWithContext(caller, http.MethodGet, s.srv.URL+"/?n=4&gap=2", nil)
					within(t, 5*time.Second, "call", func() {
						res, err := rt.RoundTrip(req)
						if err != nil {
							return
						}
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					})
				}()
			}
			wg.Wait()
			for i, c := range rec.all() {
				if !waitDone(c, 2*time.Second) {
					t.Fatalf("try %d never ended", i)
				}
			}
		})
	}
	for _, s := range ss {
		s.base.(*http.Transport).CloseIdleConnections()
		s.srv.CloseClientConnections()
	}
	goroutinesBack(t, g0, 4)
}
