package rhttp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/middleware"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

func TestShedderSheds503WithRetryAfterAndSkipsTheHandler(t *testing.T) {
	b := middleware.NewBulkhead(1, 0)
	hold, _ := b.Acquire(context.Background())
	var called atomic.Int32
	var shedKey string
	s := rhttp.NewShedder(func(string) middleware.Limiter { return b },
		rhttp.ShedRetryAfter(1500*time.Millisecond),
		rhttp.OnShed(func(_ *http.Request, key string, err error) {
			shedKey = key
			if !errors.Is(err, middleware.ErrBulkheadFull) {
				t.Errorf("OnShed err %v", err)
			}
		}),
		rhttp.ShedKey(func(r *http.Request) string { return r.Method }))
	h := s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called.Add(1) }))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "2" || called.Load() != 0 || shedKey != "GET" {
		t.Fatalf("shed: code %d, Retry-After %q, handler calls %d, key %q", rec.Code, rec.Header().Get("Retry-After"), called.Load(), shedKey)
	}
	hold(false)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusOK || called.Load() != 1 || b.InFlight() != 0 {
		t.Fatalf("admitted: code %d, calls %d, in flight %d", rec.Code, called.Load(), b.InFlight())
	}
}

func TestShedderRouteKeysAndPerKeyLimiters(t *testing.T) {
	src := middleware.PerKey(func(key string) middleware.Limiter {
		if key == "open" {
			return nil // not limited
		}
		return middleware.NewBulkhead(1, 0)
	})
	s := rhttp.NewShedder(src, rhttp.ShedRetryAfter(0))
	block := make(chan struct{})
	entered := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mux := http.NewServeMux()
	mux.Handle("/a", s.Route("a", slow))
	mux.Handle("/a2", s.Route("a", ok))
	mux.Handle("/b", s.Route("b", ok))
	mux.Handle("/open", s.Route("open", ok))
	go mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/a", nil))
	<-entered
	for path, want := range map[string]int{"/a2": 503, "/b": 200, "/open": 200} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
		if path == "/a2" && rec.Header().Get("Retry-After") != "" {
			t.Errorf("Retry-After sent with ShedRetryAfter(0)")
		}
	}
	close(block)
	// Nil source: nothing shed.
	rec := httptest.NewRecorder()
	rhttp.NewShedder(nil).Handler(ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("nil source: %d", rec.Code)
	}
}

// dropSpy records how each request was released.
type dropSpy struct {
	mu      sync.Mutex
	dropped []bool
}

func (d *dropSpy) Acquire(context.Context) (func(bool), error) {
	return func(x bool) { d.mu.Lock(); d.dropped = append(d.dropped, x); d.mu.Unlock() }, nil
}

func TestShedderReleasesAndReportsDropsOnPanicAndTimeout(t *testing.T) {
	spy := &dropSpy{}
	s := rhttp.NewShedder(func(string) middleware.Limiter { return spy })
	h := s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
		<-r.Context().Done()
	}))
	func() {
		defer func() { _ = recover() }()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/panic", nil))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/slow", nil).WithContext(ctx))
	if len(spy.dropped) != 2 || spy.dropped[0] || !spy.dropped[1] {
		t.Fatalf("releases %v, want [false true]", spy.dropped)
	}
}

func TestShedderWaitEndsWithTheRequest(t *testing.T) {
	b := middleware.NewBulkhead(1, time.Hour)
	hold, _ := b.Acquire(context.Background())
	defer hold(false)
	h := rhttp.NewShedder(func(string) middleware.Limiter { return b }).Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("handler called")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("code %d", rec.Code)
	}
}

func TestShedderThousandConcurrentRequests(t *testing.T) {
	b := middleware.NewBulkhead(4, time.Millisecond)
	var running, peak atomic.Int32
	h := rhttp.NewShedder(func(string) middleware.Limiter { return b }).Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(100 * time.Microsecond)
		running.Add(-1)
	}))
	var wg sync.WaitGroup
	var ok, shed atomic.Int32
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code == 200 {
				ok.Add(1)
			} else {
				shed.Add(1)
			}
		}()
	}
	wg.Wait()
	if peak.Load() > 4 || ok.Load() == 0 || ok.Load()+shed.Load() != 1000 || b.InFlight() != 0 {
		t.Fatalf("peak %d ok %d shed %d in flight %d", peak.Load(), ok.Load(), shed.Load(), b.InFlight())
	}
}
