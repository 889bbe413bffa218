package surfaceattack

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

func fastExec(key string, opts ...policy.Option) *recourse.Executor {
	base := []policy.Option{policy.MaxAttempts(3), policy.Backoff(time.Millisecond, 2*time.Millisecond, 2)}
	return recourse.NewExecutor(recourse.WithPolicy(key, append(base, opts...)...))
}

func newClient(t *testing.T, exec *recourse.Executor, key string, opts ...rhttp.Option) (*http.Client, *http.Transport) {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: rhttp.NewTransport(exec, key, base, opts...)}, base
}

// connCounter counts new TCP connections to a test server.
func connCounter(srv *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

// A final 4xx after nil error: whole body, Content-Length honest, large body.
func TestFinalFailedResponseWholeBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    int
		size    int
		chunked bool
	}{
		{"404-small", 404, 17, false},
		{"400-3MiB", 400, 3 << 20, false},
		{"404-chunked-2MiB", 404, 2 << 20, true},
		{"503-exhausted-1MiB", 503, 1<<20 + 7, false},
		{"500-exhausted-chunked", 500, 300 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("abcdefghij"), tc.size/10+1)[:tc.size]
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := hits.Add(1)
				if !tc.chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				}
				w.Header().Set("X-Try", strconv.Itoa(int(n)))
				w.WriteHeader(tc.code)
				if tc.chunked {
					for i := 0; i < len(body); i += 4096 {
						end := min(i+4096, len(body))
						_, _ = w.Write(body[i:end])
						w.(http.Flusher).Flush()
					}
					return
				}
				_, _ = w.Write(body)
			}))
			defer srv.Close()
			c, _ := newClient(t, fastExec("k.final"), "k.final")
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatalf("err = %v, want nil with status %d", err, tc.code)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got, rerr := io.ReadAll(resp.Body)
			if rerr != nil {
				t.Fatalf("read: %v (got %d of %d bytes)", rerr, len(got), len(body))
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("body: got %d bytes, want %d", len(got), len(body))
			}
			if tc.chunked {
				if resp.ContentLength != -1 && resp.ContentLength != int64(len(body)) {
					t.Fatalf("ContentLength %d for %d bytes", resp.ContentLength, len(body))
				}
			} else if resp.ContentLength != int64(len(body)) {
				t.Fatalf("ContentLength %d, want %d", resp.ContentLength, len(body))
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
				t.Fatalf("Content-Length header %q, body %d", cl, len(body))
			}
			if tc.code >= 500 {
				if resp.Header.Get("X-Try") != "3" {
					t.Fatalf("got response of try %q, want the last (3)", resp.Header.Get("X-Try"))
				}
			}
		})
	}
}

// Body of a final failure with a server that dies mid-body: the caller must
// see an error, not a silently truncated body.
func TestFinalFailedResponseTruncatedByServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(404)
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1000))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	c, _ := newClient(t, fastExec("k.trunc"), "k.trunc")
	resp, err := c.Get(srv.URL)
	if err != nil {
		return // an error is an acceptable answer
	}
	defer resp.Body.Close()
	got, rerr := io.ReadAll(resp.Body)
	if rerr == nil {
		t.Fatalf("truncated body read as complete: %d bytes, no error", len(got))
	}
}

// Abandoned tries' bodies are drained and the connection reused.
func TestAbandonedBodiesReuseConnection(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			w.WriteHeader(503)
			_, _ = w.Write(bytes.Repeat([]byte("e"), 2000))
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()
	c, _ := newClient(t, fastExec("k.reuse"), "k.reuse")
	for i := 0; i < 30; i++ {
		hits.Store(0)
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	// The drain of a failed try runs while the backoff sleeps; with a 1ms
	// backoff under -race the next try may dial once before the first
	// connection is back in the pool. It must not grow with the tries.
	if n := conns.Load(); n > 2 {
		t.Fatalf("%d connections for 90 sequential tries, want the pool reused", n)
	}
}

// blockingBody blocks in Read until Close.
type blockingBody struct {
	once   sync.Once
	closed chan struct{}
	first  []byte
	mu     sync.Mutex
	nClose atomic.Int32
}

func newBlockingBody(first string) *blockingBody {
	return &blockingBody{closed: make(chan struct{}), first: []byte(first)}
}

func (b *blockingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		b.mu.Unlock()
		return n, nil
	}
	b.mu.Unlock()
	<-b.closed
	return 0, errors.New("closed")
}

func (b *blockingBody) Close() error {
	b.nClose.Add(1)
	b.once.Do(func() { close(b.closed) })
	return nil
}

func TestBlockingBodyHonoursContextAndPolicy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	cases := []struct {
		name   string
		method string
		hdr    string
		opts   []policy.Option
		ctxTO  time.Duration
	}{
		{"PUT-ctx", "PUT", "", nil, 150 * time.Millisecond},
		{"PUT-overall", "PUT", "", []policy.Option{policy.OverallTimeout(150 * time.Millisecond)}, 0},
		{"PUT-perattempt", "PUT", "", []policy.Option{policy.TimeoutPerAttempt(100 * time.Millisecond)}, 0},
		{"POST-idemkey-overall", "POST", "k1", []policy.Option{policy.OverallTimeout(150 * time.Millisecond)}, 0},
		{"POST-single-ctx", "POST", "", nil, 150 * time.Millisecond},
		{"POST-single-overall", "POST", "", []policy.Option{policy.OverallTimeout(150 * time.Millisecond)}, 0},
		{"PUT-hedge-overall", "PUT", "", []policy.Option{policy.OverallTimeout(150 * time.Millisecond),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 5 * time.Millisecond})}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "k.block"
			tr := rhttp.NewTransport(fastExec(key, tc.opts...), key, &http.Transport{})
			defer tr.(*rhttp.Transport).CloseIdleConnections()
			ctx := context.Background()
			if tc.ctxTO > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTO)
				defer cancel()
			}
			body := newBlockingBody("hello")
			req, _ := http.NewRequestWithContext(ctx, tc.method, srv.URL, nil)
			req.Body = body
			req.ContentLength = -1
			if tc.hdr != "" {
				req.Header.Set("Idempotency-Key", tc.hdr)
			}
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				resp, err := tr.RoundTrip(req)
				if resp != nil {
					resp.Body.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if el := time.Since(start); el > time.Second {
					t.Fatalf("took %v", el)
				}
				if err == nil {
					t.Fatalf("nil error for a body that never ended")
				}
			case <-time.After(3 * time.Second):
				body.Close()
				<-done
				t.Fatalf("RoundTrip ignored its deadline with a blocking body")
			}
			if body.nClose.Load() == 0 {
				t.Fatalf("request body not closed")
			}
		})
	}
}

// POST without Idempotency-Key is streamed: the server sees the first bytes
// before the client has written the rest, and size is not capped.
func TestSingleAttemptStreamed(t *testing.T) {
	got := make(chan struct{})
	var total atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			w.WriteHeader(500)
			return
		}
		close(got)
		n, _ := io.Copy(io.Discard, r.Body)
		total.Store(n + 5)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	for _, method := range []string{"POST", "PATCH"} {
		got = make(chan struct{})
		c, _ := newClient(t, fastExec("k.stream"), "k.stream", rhttp.MaxReplayBody(-1))
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("first"))
			select {
			case <-got:
			case <-time.After(3 * time.Second):
				pw.CloseWithError(errors.New("server never saw first bytes: body buffered"))
				return
			}
			chunk := bytes.Repeat([]byte("z"), 64<<10)
			for i := 0; i < 48; i++ { // 3 MiB > MaxReplayBody
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(method, srv.URL, pr)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" || total.Load() != 5+48*64<<10 {
			t.Fatalf("%s: body %q, server got %d bytes", method, b, total.Load())
		}
	}
}

// A policy with one attempt and no hedge streams a GET/PUT body too.
func TestOneAttemptPolicyStreamsPUT(t *testing.T) {
	var total atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		total.Store(n)
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("k.one", policy.MaxAttempts(1)))
	c, _ := newClient(t, exec, "k.one", rhttp.MaxReplayBody(1024))
	req, _ := http.NewRequest("PUT", srv.URL, io.MultiReader(bytes.NewReader(make([]byte, 2<<20))))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("one-attempt PUT of 2 MiB refused: %v", err)
	}
	resp.Body.Close()
	if total.Load() != 2<<20 {
		t.Fatalf("server got %d", total.Load())
	}
}

func TestBodyTooLargeClosedAndError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr := rhttp.NewTransport(fastExec("k.big"), "k.big", &http.Transport{}, rhttp.MaxReplayBody(10))
	defer tr.(*rhttp.Transport).CloseIdleConnections()
	body := &closeCounter{Reader: strings.NewReader(strings.Repeat("a", 100))}
	req, _ := http.NewRequest("PUT", srv.URL, nil)
	req.Body = body
	req.ContentLength = 100
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	if !errors.Is(err, rhttp.ErrBodyTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if body.n.Load() == 0 {
		t.Fatal("body not closed")
	}
}

type closeCounter struct {
	io.Reader
	n atomic.Int32
}

func (c *closeCounter) Close() error { c.n.Add(1); return nil }

// RoundTripper contract: req unmodified, body closed on error paths.
func TestRoundTripContract(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(503)
			return
		}
	}))
	defer srv.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()

	tr := rhttp.NewTransport(fastExec("k.contract"), "k.contract", &http.Transport{})
	defer tr.(*rhttp.Transport).CloseIdleConnections()
	for _, tc := range []struct {
		name, method, url string
		getBody           bool
		cancel            bool
	}{
		{"put-retry", "PUT", srv.URL, false, false},
		{"put-getbody", "PUT", srv.URL, true, false},
		{"post-dead", "POST", deadURL, false, false},
		{"put-dead", "PUT", deadURL, false, false},
		{"put-cancelled", "PUT", srv.URL, false, true},
		{"put-badscheme", "PUT", "gopher://127.0.0.1:1/", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			body := &closeCounter{Reader: strings.NewReader("payload")}
			req, _ := http.NewRequestWithContext(ctx, tc.method, tc.url, nil)
			req.Body = body
			req.ContentLength = 7
			if tc.getBody {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("payload")), nil }
			}
			req.Header.Set("X-A", "1")
			hdrBefore := req.Header.Clone()
			urlBefore := *req.URL
			resp, err := tr.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			_ = err
			if body.n.Load() == 0 {
				t.Errorf("body not closed (err=%v)", err)
			}
			if req.Body != body || req.ContentLength != 7 || *req.URL != urlBefore || req.Method != tc.method {
				t.Errorf("request modified")
			}
			if fmt.Sprint(req.Header) != fmt.Sprint(hdrBefore) {
				t.Errorf("header modified: %v -> %v", hdrBefore, req.Header)
			}
			if (req.GetBody != nil) != tc.getBody {
				t.Errorf("GetBody modified")
			}
		})
	}
}

// The zero Transport works.
func TestZeroTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "zero")
	}))
	defer srv.Close()
	var tr rhttp.Transport
	c := &http.Client{Transport: &tr}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if string(b) != "zero" {
		t.Fatalf("%q", b)
	}
}

// 101 Switching Protocols: body is a ReadWriteCloser and the upgrade works.
func TestUpgrade101(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		_, _ = conn.Write([]byte("echo:" + line))
	}))
	defer srv.Close()
	for _, key := range []string{"k.up", "k.uphedge"} {
		exec := fastExec("k.up")
		if key == "k.uphedge" {
			exec = fastExec(key, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 200 * time.Millisecond}),
				policy.TimeoutPerAttempt(2*time.Second))
		}
		c, _ := newClient(t, exec, key)
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("%s: status %d", key, resp.StatusCode)
		}
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			resp.Body.Close()
			t.Fatalf("%s: body %T is not an io.ReadWriteCloser", key, resp.Body)
		}
		if _, err := rwc.Write([]byte("hi\n")); err != nil {
			rwc.Close()
			t.Fatalf("%s: write: %v", key, err)
		}
		line, err := bufio.NewReader(rwc).ReadString('\n')
		rwc.Close()
		if err != nil || line != "echo:hi\n" {
			t.Fatalf("%s: got %q, %v", key, line, err)
		}
	}
}

// Hedged PUTs with a body lacking GetBody: every try gets the full body, and
// the winner's response body is whole.
func TestHedgedTriesFullBodies(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 50_000) // 500 kB
	var mu sync.Mutex
	var seen []int
	var hits atomic.Int32
	resp200 := bytes.Repeat([]byte("R"), 700_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		b, rerr := io.ReadAll(r.Body)
		if rerr != nil {
			return // a losing try cancelled mid-upload: the server sees an error, never a short body
		}
		mu.Lock()
		if bytes.Equal(b, payload) {
			seen = append(seen, len(b))
		} else {
			seen = append(seen, -len(b))
		}
		mu.Unlock()
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return
		}
		_, _ = w.Write(resp200)
	}))
	defer srv.Close()
	key := "k.hedge"
	exec := fastExec(key, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 30 * time.Millisecond, MaxHedges: 2}))
	c, _ := newClient(t, exec, key)
	req, _ := http.NewRequest("PUT", srv.URL, io.NopCloser(bytes.NewReader(payload)))
	req.ContentLength = -1
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, resp200) {
		t.Fatalf("winner body %d bytes, err %v", len(b), err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range seen {
		if n < 0 {
			t.Fatalf("a try got a partial/mixed body: %v", seen)
		}
	}
	if len(seen) < 2 {
		t.Fatalf("no hedge ran: %v", seen)
	}
}

// Winner body readable after RoundTrip returns, slow reader, hedged GET.
func TestWinnerBodyReadLater(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "6000")
		for i := 0; i < 6; i++ {
			_, _ = w.Write(bytes.Repeat([]byte("b"), 1000))
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}))
	defer srv.Close()
	key := "k.later"
	exec := fastExec(key, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 1 * time.Millisecond, MaxHedges: 3}),
		policy.TimeoutPerAttempt(2*time.Second))
	c, _ := newClient(t, exec, key)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(srv.URL)
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || len(b) != 6000 {
				errs <- fmt.Errorf("read %d bytes: %v", len(b), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Retry-After oddities never produce a negative/huge sleep or a panic.
func TestRetryAfterOddities(t *testing.T) {
	for _, v := range []string{"-5", "0", "1.5", "garbage", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999", " 1 ", "+1"} {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				w.Header().Set("Retry-After", v)
				w.WriteHeader(503)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		key := "k.ra"
		c, base := newClient(t, fastExec(key, policy.MaxRetryAfter(1500*time.Millisecond)), key)
		start := time.Now()
		resp, err := c.Get(srv.URL)
		el := time.Since(start)
		if resp != nil {
			resp.Body.Close()
		}
		base.CloseIdleConnections()
		srv.Close()
		if el > 2*time.Second {
			t.Errorf("Retry-After %q: took %v", v, el)
		}
		if v == "99999999999999999999" {
			continue // may be refused as too long
		}
		if err != nil {
			t.Errorf("Retry-After %q: %v", v, err)
		}
	}
}
