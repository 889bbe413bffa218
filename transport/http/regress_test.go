package rhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// within runs f and fails the test if it has not returned after d; stop
// is then called to unblock it, and within waits for it anyway so that
// nothing outlives the test.
func within(t *testing.T, d time.Duration, stop func(), f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("still running after %v", d)
		if stop != nil {
			stop()
		}
		<-done
	}
}

// pattern returns n deterministic bytes, generated lazily.
type pattern struct{ off, n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rest := p.n - p.off; int64(len(b)) > rest {
		b = b[:rest]
	}
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternSum(n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, &pattern{n: n})
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// Item 6: a final failed response keeps its whole body, exactly as
// net/http gives it, even when it arrives after RoundTrip returned and
// the policy's deadlines were cancelled by the chain.
func TestRegressFinalFailedBodyIsWhole(t *testing.T) {
	const size = 1<<20 + 123
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusServiceUnavailable
		if r.URL.Path == "/404" {
			code = http.StatusNotFound
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(code)
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond) // the body arrives after RoundTrip returned
		_, _ = io.Copy(w, &pattern{n: size})
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", fastRetries(2),
		policy.TimeoutPerAttempt(5*time.Second), policy.OverallTimeout(10*time.Second)))
	c := client(t, exec, "inv.Get")
	for _, path := range []string{"/503", "/404"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(method+path, func(t *testing.T) {
				req, _ := http.NewRequest(method, srv.URL+path, nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("reading the body: %v after %d bytes", err, len(b))
				}
				if int64(len(b)) != resp.ContentLength || len(b) != size || sha256.Sum256(b) != patternSum(size) {
					t.Fatalf("body %d bytes, Content-Length %d, want %d intact bytes", len(b), resp.ContentLength, size)
				}
			})
		}
	}
}

// Item 6: a retried try whose error body never ends (or trickles) is
// released promptly, without reading it whole.
func TestRegressRetriedErrorBodyIsNotReadWhole(t *testing.T) {
	for name, slow := range map[string]bool{"huge": false, "trickle": true} {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			var written atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) > 1 {
					fmt.Fprint(w, "ok")
					return
				}
				w.WriteHeader(http.StatusServiceUnavailable)
				chunk := make([]byte, 32<<10)
				if slow {
					chunk = chunk[:1]
				}
				for r.Context().Err() == nil {
					k, err := w.Write(chunk)
					written.Add(int64(k))
					if err != nil {
						return
					}
					w.(http.Flusher).Flush()
					if slow {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}))
			defer srv.Close()
			exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", fastRetries(2)))
			c := client(t, exec, "inv.Get")
			within(t, 5*time.Second, srv.CloseClientConnections, func() {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				resp, body, _ := do(t, c, req)
				if resp.StatusCode != 200 || body != "ok" {
					t.Errorf("status %d body %q", resp.StatusCode, body)
				}
			})
			if w := written.Load(); w > 16<<20 { // socket buffers take a few MiB

				t.Errorf("server wrote %d bytes of the discarded body", w)
			}
		})
	}
}

// Item 6: failed tries the loop moves past release their connection for
// reuse.
func TestRegressDiscardedTriesReuseTheConnection(t *testing.T) {
	var conns, n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
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
	// A realistic backoff: the failed bodies are read while it runs.
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", policy.MaxAttempts(3), policy.Backoff(20*time.Millisecond, 20*time.Millisecond, 1)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, _, _ := do(t, client(t, exec, "inv.Get"), req)
	if resp.StatusCode != 200 || conns.Load() != 1 {
		t.Fatalf("status %d over %d connections, want 1", resp.StatusCode, conns.Load())
	}
}

// closeTracker records whether its body was closed.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
	close  func() error
}

func (c *closeTracker) Close() error {
	c.closed.Store(true)
	if c.close != nil {
		return c.close()
	}
	return nil
}

// Item 7: a request body that blocks never makes RoundTrip ignore the
// request's context or the policy's deadlines.
func TestRegressBlockingBodyHonoursContextAndDeadlines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	cases := []struct {
		name   string
		method string
		opts   []policy.Option
		ctx    func() (context.Context, context.CancelFunc)
		want   error
	}{
		{"PUT/cancel", http.MethodPut, nil, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"PUT/deadline", http.MethodPut, nil, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"PUT/overall timeout", http.MethodPut, []policy.Option{policy.OverallTimeout(50 * time.Millisecond)}, nil, context.DeadlineExceeded},
		{"PUT/attempt timeout", http.MethodPut, []policy.Option{policy.TimeoutPerAttempt(30 * time.Millisecond)}, nil, nil},
		{"POST/cancel", http.MethodPost, nil, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"POST/overall timeout", http.MethodPost, []policy.Option{policy.OverallTimeout(50 * time.Millisecond)}, nil, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exec := recourse.NewExecutor(recourse.WithPolicy("k", append([]policy.Option{fastRetries(2)}, tc.opts...)...))
			c := client(t, exec, "k")
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			pr, pw := io.Pipe()
			body := &closeTracker{Reader: pr, close: pr.Close}
			req, _ := http.NewRequestWithContext(ctx, tc.method, srv.URL, body)
			within(t, 3*time.Second, func() { pw.Close() }, func() {
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
					t.Errorf("no error; status %d", resp.StatusCode)
					return
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("err %v, want %v", err, tc.want)
				}
			})
			// The body was closed, so a writer blocked on it is released.
			deadline := time.Now().Add(2 * time.Second)
			for !body.closed.Load() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if !body.closed.Load() {
				t.Error("request body not closed")
			}
			pw.Close()
		})
	}
}

// lockstep produces a body of chunks of size n, producing chunk i+1
// only once the server has received all of chunk i (upTo reports how
// many bytes the server has read). It fails the read if the server does
// not keep up: the body was not streamed.
type lockstep struct {
	p      pattern
	chunk  int64
	steps  int64 // chunks produced in lockstep; the rest flows freely
	upTo   func() int64
	failed atomic.Bool
}

func (l *lockstep) Read(b []byte) (int, error) {
	if l.p.off > 0 && l.p.off/l.chunk <= l.steps && l.p.off%l.chunk == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for l.upTo() < l.p.off {
			if time.Now().After(deadline) {
				l.failed.Store(true)
				return 0, fmt.Errorf("server has %d of the %d bytes produced: body buffered, not streamed", l.upTo(), l.p.off)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if rest := l.chunk - l.p.off%l.chunk; int64(len(b)) > rest {
		b = b[:rest]
	}
	return l.p.Read(b)
}

// countingServer reads every request body, counting bytes as they come
// and summing them.
type countingServer struct {
	*httptest.Server
	got  atomic.Int64
	mu   sync.Mutex
	sums [][32]byte
	lens []int64
}

func newCountingServer(t *testing.T) *countingServer {
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		buf := make([]byte, 32<<10)
		var n int64
		for {
			k, err := r.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			s.got.Add(int64(k))
			if err != nil {
				break
			}
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		s.mu.Lock()
		s.sums, s.lens = append(s.sums, sum), append(s.lens, n)
		s.mu.Unlock()
		fmt.Fprint(w, n)
	}))
	t.Cleanup(s.Close)
	return s
}

// Item 8: a request that gets exactly one attempt is streamed: never
// buffered, never refused for its size.
func TestRegressSingleAttemptBodyIsStreamed(t *testing.T) {
	cases := []struct {
		name   string
		method string
		opts   []policy.Option
		size   int64
		chunk  int64
		steps  int64
	}{
		{"POST 64MiB", http.MethodPost, []policy.Option{fastRetries(3)}, 64 << 20, 256 << 10, 1},
		{"PATCH slow", http.MethodPatch, []policy.Option{fastRetries(3)}, 40 << 10, 4 << 10, 10},
		{"PUT 64MiB under a one-try policy", http.MethodPut, []policy.Option{policy.MaxAttempts(1)}, 64 << 20, 256 << 10, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newCountingServer(t)
			exec := recourse.NewExecutor(recourse.WithPolicy("k", tc.opts...))
			body := &lockstep{p: pattern{n: tc.size}, chunk: tc.chunk, steps: tc.steps, upTo: srv.got.Load}
			req, _ := http.NewRequest(tc.method, srv.URL, io.NopCloser(body))
			within(t, 20*time.Second, srv.CloseClientConnections, func() {
				resp, text, _ := do(t, client(t, exec, "k"), req)
				if resp.StatusCode != 200 || text != strconv.FormatInt(tc.size, 10) {
					t.Errorf("status %d, server read %q bytes, want %d", resp.StatusCode, text, tc.size)
				}
			})
			if body.failed.Load() {
				t.Fatal("the body was not streamed")
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.sums) != 1 || srv.sums[0] != patternSum(tc.size) {
				t.Fatalf("%d requests, lengths %v", len(srv.sums), srv.lens)
			}
		})
	}
}

// Item 9: a 101 Switching Protocols response keeps a writable body.
func TestRegressSwitchingProtocolsBodyIsWritable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		_, _ = io.Copy(conn, brw) // echo until the client closes
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("ws", fastRetries(2),
		policy.TimeoutPerAttempt(5*time.Second), policy.OverallTimeout(10*time.Second)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := client(t, exec, "ws").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is a %T, not an io.ReadWriteCloser", resp.Body)
	}
	br := bufio.NewReader(rwc)
	for _, msg := range []string{"ping\n", "pong\n"} {
		if _, err := io.WriteString(rwc, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
	}
}

// Item 23: the zero Transport, a nil executor and a nil base work with
// documented defaults.
func TestRegressZeroValueTransport(t *testing.T) {
	srv := newServer(t, 503, 200, 200, 200)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	for name, rt := range map[string]func() http.RoundTripper{
		"zero Transport": func() http.RoundTripper { return &Transport{} },
		"nil executor":   func() http.RoundTripper { return NewTransport(nil, "inv.Get", nil) },
		"NewClient(nil)": func() http.RoundTripper { return NewClient(nil, "inv.Get").Transport },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := rt().RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(b) == 0 {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
		})
	}
	(&Transport{}).CloseIdleConnections() // no panic either
}

// Hostile: after a 101, the upgraded connection belongs to the caller, as
// with net/http: neither the caller's cancellation nor the policy's
// per-attempt deadline cuts it.
func TestRegressUpgradedConnectionOutlivesContexts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		_, _ = io.Copy(conn, brw)
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("ws", fastRetries(2), policy.TimeoutPerAttempt(30*time.Millisecond)))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := client(t, exec, "ws").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cancel()
	time.Sleep(60 * time.Millisecond) // past the per-attempt deadline
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is a %T, not an io.ReadWriteCloser", resp.Body)
	}
	if _, err := io.WriteString(rwc, "still here\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(rwc).ReadString('\n'); err != nil || got != "still here\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// Hostile: net/http treats a request carrying an Idempotency-Key or
// X-Idempotency-Key entry, even an empty one, as idempotent; so does
// Idempotent.
func TestRegressIdempotencyKeyLikeNetHTTP(t *testing.T) {
	for _, h := range []http.Header{
		{"Idempotency-Key": {"k"}},
		{"X-Idempotency-Key": {"k"}},
		{"Idempotency-Key": nil}, // idempotent, not sent on the wire
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://example.invalid", nil)
		req.Header = h
		if !Idempotent(req) {
			t.Errorf("POST with %v: not idempotent", h)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://example.invalid", nil)
	if Idempotent(req) {
		t.Error("POST without a key is idempotent")
	}
}

// Hostile: RoundTrip does not modify the request, returns it as
// resp.Request like net/http, and closes its body whatever happens.
func TestRegressRequestUntouchedAndBodyClosed(t *testing.T) {
	srv := newServer(t, 503, 200, 503, 200, 503, 200)
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2)),
		recourse.WithPolicy("deny", policy.WithBudget("missing"), policy.MaxAttempts(2)))
	for _, tc := range []struct {
		name, method, key string
		getBody           bool
	}{
		{"PUT buffered", http.MethodPut, "k", false},
		{"PUT GetBody", http.MethodPut, "k", true},
		{"POST streamed", http.MethodPost, "k", false},
		{"refused PUT", http.MethodPut, "deny", false},
		{"refused POST", http.MethodPost, "deny", false},
		{"refused PUT GetBody", http.MethodPut, "deny", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &closeTracker{Reader: bytes.NewReader([]byte("payload"))}
			req, _ := http.NewRequest(tc.method, srv.URL, body)
			if tc.getBody {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte("payload"))), nil }
			}
			req.Header.Set("X-Test", "1")
			before := *req
			resp, err := client(t, exec, tc.key).Transport.RoundTrip(req)
			if err == nil {
				if resp.Request != req {
					t.Error("resp.Request is not the caller's request")
				}
				resp.Body.Close()
			} else if tc.key != "deny" {
				t.Fatal(err)
			}
			if req.Body != before.Body || req.ContentLength != before.ContentLength || req.Context() != before.Context() ||
				(req.GetBody == nil) != (before.GetBody == nil) || len(req.Header) != 1 || req.Header.Get("X-Test") != "1" {
				t.Errorf("request modified: %+v", req)
			}
			if !body.closed.Load() {
				t.Error("request body not closed")
			}
		})
	}
}

// Hostile: responses without a body keep http.NoBody, as net/http gives
// them, and reuse their connection.
func TestRegressEmptyResponsesKeepNoBody(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		if r.URL.Path == "/204" {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2), policy.TimeoutPerAttempt(time.Second),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Second})))
	c := client(t, exec, "k")
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/"}, {"GET", "/204"}, {"HEAD", "/"}} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Body != http.NoBody {
			t.Errorf("%s %s: body %T, want http.NoBody", tc.method, tc.path, resp.Body)
		}
		resp.Body.Close()
	}
	if conns.Load() != 1 {
		t.Errorf("%d connections, want 1", conns.Load())
	}
}

// Hostile: a connection reset in the middle of a final failed body is an
// error to the reader, never a silently short body.
func TestRegressResetInFailedBodyIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "partial")
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := client(t, exec, "k").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil || string(b) != "partial" {
		t.Fatalf("read %q, %v; want \"partial\" and an error", b, err)
	}
}

// Hostile: the caller's cancellation ends the read of a final failed
// body, as it would with net/http.
func TestRegressCancelEndsFinalFailedBodyRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "start")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2), policy.TimeoutPerAttempt(10*time.Second)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client(t, exec, "k").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.AfterFunc(30*time.Millisecond, cancel)
	within(t, 3*time.Second, srv.CloseClientConnections, func() {
		b, err := io.ReadAll(resp.Body)
		if !errors.Is(err, context.Canceled) || string(b) != "start" {
			t.Errorf("read %q, %v", b, err)
		}
	})
}

// Hostile: hedged tries each get the whole request body, whether it is
// replayed from GetBody or from the transport's buffer.
func TestRegressHedgedTriesEachGetTheWholeBody(t *testing.T) {
	payload := bytes.Repeat([]byte("hedge me "), 10000)
	for name, getBody := range map[string]bool{"buffered": false, "GetBody": true} {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			var mu sync.Mutex
			var got [][]byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, b)
				mu.Unlock()
				if n.Add(1) == 1 {
					select { // the primary stalls until it loses
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
					return
				}
				fmt.Fprint(w, "hedge")
			}))
			defer srv.Close()
			exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(1),
				policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 20 * time.Millisecond, MaxHedges: 2})))
			req, _ := http.NewRequest(http.MethodPut, srv.URL, io.NopCloser(bytes.NewReader(payload)))
			if getBody {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
			}
			_, body, _ := do(t, client(t, exec, "k"), req)
			if body != "hedge" {
				t.Fatalf("body %q", body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) < 2 {
				t.Fatalf("%d tries reached the server", len(got))
			}
			for i, b := range got {
				if !bytes.Equal(b, payload) {
					t.Fatalf("try %d: %d bytes, want %d", i, len(b), len(payload))
				}
			}
		})
	}
}

// Hostile: a body whose ContentLength is known to exceed MaxReplayBody is
// refused without being read; a body shorter than its ContentLength is
// refused as net/http refuses it, and neither is retried.
func TestRegressReplayBufferRefusals(t *testing.T) {
	srv := newServer(t)
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(3)))
	c := client(t, exec, "k", MaxReplayBody(10))
	var reads atomic.Int32
	body := &closeTracker{Reader: readerFunc(func(p []byte) (int, error) { reads.Add(1); return 0, io.EOF })}
	req, _ := http.NewRequest(http.MethodPut, srv.URL, body)
	req.ContentLength = 100
	if _, err := c.Do(req); !errors.Is(err, ErrBodyTooLarge) || reads.Load() != 0 || !body.closed.Load() {
		t.Fatalf("err %v after %d reads; closed %v", err, reads.Load(), body.closed.Load())
	}
	req, _ = http.NewRequest(http.MethodPut, srv.URL, io.NopCloser(io.MultiReader(bytes.NewReader([]byte("short")))))
	req.ContentLength = 8
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "ContentLength=8 with Body length 5") {
		t.Fatalf("err %v", err)
	}
	if srv.requests() != 0 {
		t.Fatalf("%d requests reached the server", srv.requests())
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Hostile: requests net/http refuses outright (nil URL, nil Header) are
// refused at once, not retried, and their bodies closed; a base that
// breaks the RoundTripper contract or panics gives an error, not a crash.
func TestRegressBrokenRequestsAndBases(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(3), policy.Backoff(time.Second, time.Second, 1)))
	var tries atomic.Int32
	counting := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		tries.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})
	for name, mutate := range map[string]func(*http.Request){
		"nil URL":    func(r *http.Request) { r.URL = nil },
		"nil Header": func(r *http.Request) { r.Header = nil },
	} {
		t.Run(name, func(t *testing.T) {
			tries.Store(0)
			body := &closeTracker{Reader: strings.NewReader("x")}
			req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1:1", body)
			mutate(req)
			start := time.Now()
			_, err := NewTransport(exec, "k", counting).RoundTrip(req)
			if err == nil || time.Since(start) > 500*time.Millisecond || tries.Load() > 1 || !body.closed.Load() {
				t.Fatalf("err %v after %v and %d tries; body closed %v", err, time.Since(start), tries.Load(), body.closed.Load())
			}
		})
	}
	for name, base := range map[string]roundTripFunc{
		"nil response, nil error": func(r *http.Request) (*http.Response, error) { return nil, nil },
		"panic":                   func(r *http.Request) (*http.Response, error) { panic("boom") },
		"nil body": func(r *http.Request) (*http.Response, error) {
			r.Body.Close()
			return &http.Response{StatusCode: 200, Header: http.Header{}, Request: r}, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2)))
			body := &closeTracker{Reader: strings.NewReader("x")}
			req, _ := http.NewRequest(http.MethodPost, "http://example.invalid", body)
			resp, err := NewTransport(exec, "k", base).RoundTrip(req)
			if name == "nil body" {
				if err != nil || resp.Body == nil {
					t.Fatalf("resp %v, err %v", resp, err)
				}
				resp.Body.Close()
			} else if err == nil {
				t.Fatal("no error")
			}
			if !body.closed.Load() {
				t.Error("request body not closed")
			}
		})
	}
}

// Hostile: a GetBody whose bodies block, and a context already done,
// still end the call promptly.
func TestRegressBlockingGetBodyAndDoneContext(t *testing.T) {
	srv := newServer(t)
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2)))
	c := client(t, exec, "k")
	var pipes []*io.PipeWriter
	defer func() {
		for _, pw := range pipes {
			pw.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, http.NoBody)
	req.Body = io.NopCloser(strings.NewReader(""))
	req.GetBody = func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		return pr, nil
	}
	req.ContentLength = 10
	within(t, 3*time.Second, func() {
		for _, pw := range pipes {
			pw.Close()
		}
	}, func() {
		if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v", err)
		}
	})

	srv2 := newServer(t)
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	body := &closeTracker{Reader: strings.NewReader("x")}
	req, _ = http.NewRequestWithContext(done, http.MethodPost, srv2.URL, body)
	if _, err := c.Do(req); !errors.Is(err, context.Canceled) || !body.closed.Load() || srv2.requests() != 0 {
		t.Fatalf("err %v; body closed %v; %d requests", err, body.closed.Load(), srv2.requests())
	}
}

// Hostile: the body of a final failed response streams like net/http's,
// even while the transport peeks at it: the bytes that arrived are
// readable before the rest comes.
func TestRegressPeekedBodyStillStreams(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "first ")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "rest")
	}))
	defer srv.Close()
	defer close(release)
	exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(1)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	within(t, 2*time.Second, srv.CloseClientConnections, func() {
		resp, err := client(t, exec, "k").Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64)
		n, err := resp.Body.Read(buf)
		if string(buf[:n]) != "first " {
			t.Errorf("first read %q, %v", buf[:n], err)
		}
	})
}

// Hostile: over HTTP/2, a final failed body is whole, a stalled hedge is
// cancelled, and many concurrent calls mixing retries, hedges, failures
// and timeouts neither race, leak nor mix bodies.
func TestRegressHTTP2AndConcurrentCalls(t *testing.T) {
	var seen sync.Map // id -> struct{}: the first request of each call misbehaves
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if r.URL.Path == "/big503" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.Copy(w, &pattern{n: 300 << 10})
			return
		}
		if _, again := seen.LoadOrStore(id, struct{}{}); !again {
			i, _ := strconv.Atoi(id)
			switch i % 4 {
			case 0: // stall: a hedge or the per-attempt timeout ends it
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			case 1:
				http.Error(w, "busy "+id, http.StatusServiceUnavailable)
				return
			case 2:
				http.Error(w, "gone "+id, http.StatusNotFound)
				return
			}
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ok %s %s", id, b)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport)
	t.Cleanup(base.CloseIdleConnections)
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(3), policy.TimeoutPerAttempt(time.Second),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 30 * time.Millisecond, MaxHedges: 1})))
	c := &http.Client{Transport: NewTransport(exec, "k", base)}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/big503", nil)
	resp, body, _ := do(t, c, req)
	if resp.ProtoMajor != 2 || resp.StatusCode != 503 || len(body) != 300<<10 || sha256.Sum256([]byte(body)) != patternSum(300<<10) {
		t.Fatalf("%s %d, %d bytes", resp.Proto, resp.StatusCode, len(body))
	}

	// The caller's deadline is reported as such over HTTP/2 too.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/?id=-4", nil)
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}

	var wg sync.WaitGroup
	for g := 0; g < 100; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := strconv.Itoa(g)
			method := http.MethodPut
			if g%3 == 0 {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, srv.URL+"/?id="+id, io.NopCloser(strings.NewReader("body-"+id)))
			resp, err := c.Do(req)
			if err != nil {
				// A POST gets one try: a stalled one times out.
				if method != http.MethodPost || !errors.Is(err, middleware.ErrAttemptTimeout) {
					t.Errorf("call %s: %v", id, err)
				}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := map[int]string{200: "ok " + id + " body-" + id, 503: "busy " + id + "\n", 404: "gone " + id + "\n"}[resp.StatusCode]
			if err != nil || string(b) != want {
				t.Errorf("call %s: %d %q, %v", id, resp.StatusCode, b, err)
			}
		}()
	}
	wg.Wait()
}

// Hostile: Retry-After values that are garbage, negative, fractional or
// in the past never stall the retry loop or break the call.
func TestRegressRetryAfterGarbage(t *testing.T) {
	for _, v := range []string{"-5", "1.5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "0", " ", "99999999999999999999999999"} {
		t.Run(v, func(t *testing.T) {
			srv := newServer(t, 503, 200)
			srv.headers = []http.Header{{"Retry-After": {v}}}
			exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2), policy.MaxRetryAfter(time.Second)))
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			start := time.Now()
			resp, err := client(t, exec, "k").Do(req)
			if v == "99999999999999999999999999" {
				if !errors.Is(err, middleware.ErrPushbackTooLong) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil || resp.StatusCode != 200 || time.Since(start) > time.Second {
				t.Fatalf("err %v after %v", err, time.Since(start))
			}
			resp.Body.Close()
		})
	}
}

// Hostile: a success body that trickles is still bounded by the
// policy's per-attempt deadline after RoundTrip returns.
func TestRegressTricklingBodyBoundedByDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2), policy.TimeoutPerAttempt(100*time.Millisecond)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := client(t, exec, "k").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	within(t, 3*time.Second, srv.CloseClientConnections, func() {
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("a trickling body outlived the per-attempt deadline")
		}
	})
}

// Hostile: a server answering garbage fails the call with an error after
// the policy's tries; the next healthy call succeeds.
func TestRegressGarbageServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("SSH-2.0-not-http\r\n\r\n"))
			conn.Close()
		}
	}()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(3)))
	c := client(t, exec, "k")
	ctx, capture := timeline.Record(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String(), nil)
	if _, err := c.Do(req); err == nil || len(capture.Timeline().Attempts) != 3 {
		t.Fatalf("err %v, %d attempts", err, len(capture.Timeline().Attempts))
	}
	srv := newServer(t)
	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	if resp, body, _ := do(t, c, req); resp.StatusCode != 200 || body != "reply 1" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

// Hostile: a zero Transport used from many goroutines at once sets
// itself up once, without a race.
func TestRegressZeroTransportConcurrentFirstUse(t *testing.T) {
	srv := newServer(t)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	var tr Transport
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
}

// Hostile: a server that rejects a streamed upload early, before reading
// it, gets its rejection read whole, as with net/http.
func TestRegressEarlyRejectionOfStreamedUpload(t *testing.T) {
	msg := strings.Repeat("too large; ", 2000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprint(w, msg)
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(3)))
	body := &closeTracker{Reader: &pattern{n: 64 << 20}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	within(t, 10*time.Second, srv.CloseClientConnections, func() {
		resp, err := client(t, exec, "k").Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != msg || err != nil {
			t.Errorf("status %d, %d bytes, %v", resp.StatusCode, len(b), err)
		}
	})
	deadline := time.Now().Add(2 * time.Second)
	for !body.closed.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !body.closed.Load() {
		t.Error("request body not closed")
	}
}

// Hostile: reading a closed failed body fails as net/http's does, even
// when the transport had read some of it ahead.
func TestRegressReadAfterCloseFails(t *testing.T) {
	srv := newServer(t, 503, 503)
	exec := recourse.NewExecutor(recourse.WithPolicy("k", fastRetries(2)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := client(t, exec, "k").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let any read ahead finish
	resp.Body.Close()
	if n, err := resp.Body.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Fatalf("read after close: %d bytes, %v", n, err)
	}
}

// Hostile: cancellation during a backoff sleep and during a hedge race
// ends the call promptly with the context's error, releasing every try.
func TestRegressCancelDuringSleepAndRace(t *testing.T) {
	for name, opts := range map[string][]policy.Option{
		"sleep": {policy.MaxAttempts(3), policy.Backoff(time.Second, time.Second, 1)},
		"race":  {policy.MaxAttempts(1), policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 10 * time.Millisecond, MaxHedges: 2})},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if name == "race" {
					<-r.Context().Done()
					return
				}
				http.Error(w, strings.Repeat("busy ", 1000), http.StatusServiceUnavailable)
			}))
			defer srv.Close()
			exec := recourse.NewExecutor(recourse.WithPolicy("k", opts...))
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(60*time.Millisecond, cancel)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			start := time.Now()
			_, err := client(t, exec, "k").Do(req)
			if !errors.Is(err, context.Canceled) || time.Since(start) > 800*time.Millisecond {
				t.Fatalf("err %v after %v", err, time.Since(start))
			}
		})
	}
}

// panicBody panics in Read.
type panicBody struct{}

func (panicBody) Read([]byte) (int, error) { panic("body bug") }
func (panicBody) Close() error             { return nil }

// panicBodyBase answers 503 with a body whose Read panics.
type panicBodyBase struct{}

func (panicBodyBase) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 503, Header: http.Header{}, Body: panicBody{}, ContentLength: -1, Request: r}, nil
}

// Hostile (black-box attack): a failed response whose body panics in Read,
// read ahead on a goroutine of the transport, killed the process. The
// panic is now that body's error, and a dropped body's panic ends only its
// drain.
func TestRegressPanickingFailedBodyDoesNotCrash(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	c := &http.Client{Transport: NewTransport(exec, "k", panicBodyBase{})}
	resp, err := c.Get("http://example.invalid/")
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	var pe *middleware.PanicError
	if resp.StatusCode != 503 || !errors.As(err, &pe) {
		t.Fatalf("status %d, read error %v: want the final 503 with the panic as its body's error", resp.StatusCode, err)
	}
}
