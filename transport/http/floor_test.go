package rhttp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
)

// memBase answers in memory: a call's first request gets status first
// (with Retry-After: 0 when it is 503), the next 200 "ok". A call is
// named by its raw query.
type memBase struct {
	first int
	mu    sync.Mutex
	seen  map[string]bool
}

func (m *memBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	code, body := http.StatusOK, "ok"
	m.mu.Lock()
	if m.first != 0 && !m.seen[req.URL.RawQuery] {
		m.seen[req.URL.RawQuery] = true
		code, body = m.first, "busy"
	}
	m.mu.Unlock()
	resp := &http.Response{StatusCode: code, Status: http.StatusText(code), Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}
	if code == http.StatusServiceUnavailable {
		resp.Header.Set("Retry-After", "0")
	}
	return resp, nil
}

func benchGet(b *testing.B, first int) { benchGetCtx(b, context.Background(), first) }

func benchGetCtx(b *testing.B, ctx context.Context, first int) {
	base := &memBase{first: first, seen: map[string]bool{}}
	c := &http.Client{Transport: NewTransport(recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(2))), "k", base)}
	urls := make([]string, b.N)
	for i := range urls {
		urls[i] = "http://memory/x?c=" + string(rune('a'+i%26)) + strings.Repeat("z", i/26%4) + itoa(i)
	}
	buf := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, urls[i], nil)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.ReadFull(resp.Body, buf[:2])
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(buf[:n], []byte("ok")) {
			b.Fatalf("status %d, body %q", resp.StatusCode, buf[:n])
		}
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		if i /= 10; i == 0 {
			return string(b[n:])
		}
	}
}

func BenchmarkMemorySuccess(b *testing.B) { benchGet(b, 0) }
func BenchmarkMemoryRetry(b *testing.B)   { benchGet(b, http.StatusServiceUnavailable) }

// The same under a caller's context that can be cancelled, as a server
// handler's is.
func BenchmarkMemorySuccessCancellable(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchGetCtx(b, ctx, 0)
}

func BenchmarkMemoryRetryCancellable(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchGetCtx(b, ctx, http.StatusServiceUnavailable)
}

// Each try is a shallow copy of the caller's request: a request of its
// own (own context, own body, replayed whole) whose header and URL are
// the caller's, which no try modifies.
func TestTriesAreShallowCopiesWithTheirOwnBody(t *testing.T) {
	payload := bytes.Repeat([]byte("replay "), 3000)
	for _, getBody := range []bool{false, true} {
		var mu sync.Mutex
		var tries []*http.Request
		var bodies [][]byte
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			mu.Lock()
			tries = append(tries, r)
			bodies = append(bodies, b)
			n := len(tries)
			mu.Unlock()
			code := http.StatusServiceUnavailable
			if n == 3 {
				code = http.StatusOK
			}
			return &http.Response{StatusCode: code, Header: http.Header{"Retry-After": {"0"}}, Body: io.NopCloser(strings.NewReader("x")), ContentLength: 1, Request: r}, err
		})
		exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(3)))
		c := &http.Client{Transport: NewTransport(exec, "k", base)}
		req, _ := http.NewRequest(http.MethodPut, "http://example.test/a?b=c", io.NopCloser(bytes.NewReader(payload)))
		if getBody {
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
		}
		req.Header.Set("X-Test", "1")
		req.ContentLength = int64(len(payload))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(tries) != 3 {
			t.Fatalf("%d tries", len(tries))
		}
		for i, r := range tries {
			if !bytes.Equal(bodies[i], payload) {
				t.Errorf("getBody %v, try %d: body of %d bytes, want %d", getBody, i+1, len(bodies[i]), len(payload))
			}
			if r == req || r.Context() == req.Context() {
				t.Errorf("try %d shares the caller's request or context", i+1)
			}
			for j := range tries[:i] {
				if tries[j] == r || tries[j].Context() == r.Context() {
					t.Errorf("tries %d and %d share a request or context", j+1, i+1)
				}
			}
			if r.Header.Get("X-Test") != "1" || r.URL.String() != "http://example.test/a?b=c" || r.ContentLength != int64(len(payload)) {
				t.Errorf("try %d: header %v, URL %v, length %d", i+1, r.Header, r.URL, r.ContentLength)
			}
		}
		if len(req.Header) != 1 || req.URL.String() != "http://example.test/a?b=c" {
			t.Errorf("the caller's request was modified: %v %v", req.Header, req.URL)
		}
	}
}

// A retried failed response is drained in time for the next try to
// reuse its connection, even when the server says "retry now"
// (Retry-After: 0, no backoff to hide the drain in): call after call,
// the server sees one connection.
func TestImmediateRetriesReuseTheConnection(t *testing.T) {
	var conns atomic.Int32
	var calls sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, seen := calls.LoadOrStore(r.URL.RawQuery, true); !seen {
			w.Header().Set("Retry-After", "0")
			http.Error(w, strings.Repeat("busy ", 200), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(2)))
	c := client(t, exec, "k")
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/?c="+itoa(i), nil)
		resp, body, _ := do(t, c, req)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("call %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// One when the machine is quiet. The drain before an immediate retry
	// is bounded (5ms), so on a loaded machine a few bodies may miss it:
	// a transport that does not drain at all opens one per call (50).
	if n := conns.Load(); n > 3 {
		t.Fatalf("50 retried calls opened %d connections; want 1 (≤ 3 on a loaded machine)", n)
	}
}

// A hedge's loser that answered (a retryable failure, while the hedge
// still ran) is drained and closed, so its connection goes back to the
// pool: two connections serve any number of such calls.
func TestHedgeLoserAnswerIsDrained(t *testing.T) {
	var conns, active atomic.Int32
	var calls sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		if _, seen := calls.LoadOrStore(r.URL.RawQuery, true); !seen {
			time.Sleep(5 * time.Millisecond) // the primary answers 503 while the hedge runs
			http.Error(w, strings.Repeat("busy ", 200), http.StatusServiceUnavailable)
			return
		}
		time.Sleep(10 * time.Millisecond)
		fmt.Fprint(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})))
	c := client(t, exec, "k")
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/?c="+itoa(i), nil)
		resp, body, _ := do(t, c, req)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("call %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Fatalf("10 hedged calls opened %d connections; want at most 2", n)
	}
	if n := active.Load(); n != 0 {
		t.Fatalf("%d handlers still running", n)
	}
}

// Hostile: hedged tries failing one after another (with and without
// Retry-After: 0) while later tries release the earlier failures: no
// race, no body read twice, every call ends with the good reply, no
// handler left running.
func TestRegressHedgesReleasingEarlierFailures(t *testing.T) {
	var active atomic.Int32
	var calls sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		v, _ := calls.LoadOrStore(r.URL.RawQuery, new(atomic.Int32))
		n := v.(*atomic.Int32).Add(1)
		if n <= 4 {
			if n%2 == 0 {
				w.Header().Set("Retry-After", "0")
			}
			time.Sleep(time.Duration(n) * 300 * time.Microsecond)
			http.Error(w, strings.Repeat("no ", 100), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(4), policy.Backoff(time.Millisecond, time.Millisecond, 1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 3})))
	c := client(t, exec, "k")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/?c="+itoa(i), nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) != "ok" || resp.StatusCode == 503 && string(b) != strings.Repeat("no ", 100)+"\n" {
				t.Errorf("call %d: %d %q", i, resp.StatusCode, b)
			}
		}(i)
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := active.Load(); n != 0 {
		t.Fatalf("%d handlers still running", n)
	}
}

// stallBody is a response body that sends nothing until its request's
// context ends, like a server that stalls mid-body.
type stallBody struct {
	ctx   context.Context
	cause atomic.Value
}

func (b *stallBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	b.cause.Store(context.Cause(b.ctx))
	return 0, b.ctx.Err()
}

func (b *stallBody) Close() error { return nil }

// A dropped response whose body stalls is cut (its try's context ended
// with errDiscarded) after a short wait, and the retry goes on; calls
// after a cut still cut (the drain's timer is not reused once it fired).
func TestStalledDroppedBodyIsCut(t *testing.T) {
	var n atomic.Int32
	var mu sync.Mutex
	var stalled []*stallBody
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if n.Add(1)%2 == 1 {
			b := &stallBody{ctx: r.Context()}
			mu.Lock()
			stalled = append(stalled, b)
			mu.Unlock()
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {"0"}},
				Body: b, ContentLength: 10, Request: r}, nil
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: r}, nil
	})
	c := &http.Client{Transport: NewTransport(recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(2))), "k", base)}
	for i := 0; i < 4; i++ {
		start := time.Now()
		resp, err := c.Get("http://example.test/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("call %d: status %d, body %q", i, resp.StatusCode, b)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("call %d took %v: the stalled body was not cut", i, d)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, b := range stalled {
		if got, _ := b.cause.Load().(error); got != errDiscarded {
			t.Errorf("stalled body %d: its context ended with %v, want %v", i, got, errDiscarded)
		}
	}
}

// A final failed response under a caller's cancellable context, with no
// cancellation of the chain's own: its body stays readable after
// RoundTrip returns, and ends when the caller's context does.
func TestFinalFailedBodyFollowsTheCaller(t *testing.T) {
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{},
			Body: &stallBody{ctx: r.Context()}, ContentLength: -1, Request: r}, nil
	})
	c := &http.Client{Transport: NewTransport(recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(3))), "k", base)}
	ctx, cancel := context.WithCancelCause(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cause := fmt.Errorf("caller gone")
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("the body ended before the caller's context did: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel(cause)
	select {
	case err := <-read:
		if err != context.Canceled {
			t.Fatalf("read: %v, want context.Canceled", err)
		}
		if got := resp.Body.(*body).rc.(*stallBody).cause.Load(); got != cause {
			t.Fatalf("the try's context ended with cause %v, want the caller's %v", got, cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the body did not end with the caller's context")
	}
}

// allocsPerGet counts the allocations of one GET through c (the body
// read and closed), a new URL per call as memBase needs.
func allocsPerGet(t *testing.T, ctx context.Context, c *http.Client) float64 {
	t.Helper()
	i := 0
	buf := make([]byte, 2)
	return testing.AllocsPerRun(200, func() {
		i++
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://memory/x?c="+itoa(i), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadFull(resp.Body, buf)
		resp.Body.Close()
	})
}

// In memory, where the base never waits on the request's context, a
// successful call costs recourse two allocations over net/http's own: the
// call (with its first try, request copy and body inside) and the
// attempt's context. The try's context is not armed (no cancel context,
// no cancel function), under a caller's context that can be cancelled or
// not.
func TestMemorySuccessAllocations(t *testing.T) {
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ctx := range []context.Context{context.Background(), cctx} {
		plain := &http.Client{Transport: &memBase{seen: map[string]bool{}}}
		exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(2)))
		rc := &http.Client{Transport: NewTransport(exec, "k", &memBase{seen: map[string]bool{}})}
		floor, got := allocsPerGet(t, ctx, plain), allocsPerGet(t, ctx, rc)
		t.Logf("net/http %.1f, recourse %.1f allocations per call", floor, got)
		if got-floor > 2 {
			t.Errorf("recourse: %.1f allocations over net/http's %.1f; want at most 2", got-floor, floor)
		}
	}
}
