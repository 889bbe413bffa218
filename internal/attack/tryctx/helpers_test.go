package tryctx_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

const key = "tryctx.Get"

type ctxKey struct{}

var errAT = middleware.ErrAttemptTimeout

// pol is a policy shape.
type pol struct {
	name       string
	attempts   int
	perAttempt time.Duration
	overall    time.Duration
	hedge      time.Duration // 0: no hedge
}

func (p pol) exec(t testing.TB) *recourse.Executor {
	t.Helper()
	n := p.attempts
	if n == 0 {
		n = 1
	}
	opts := []policy.Option{
		policy.MaxAttempts(n),
		policy.Backoff(time.Millisecond, 2*time.Millisecond, 2),
		policy.WithBudget(policy.BudgetUnlimited),
	}
	if p.perAttempt > 0 {
		opts = append(opts, policy.TimeoutPerAttempt(p.perAttempt))
	}
	if p.overall > 0 {
		opts = append(opts, policy.OverallTimeout(p.overall))
	}
	if p.hedge > 0 {
		opts = append(opts, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: p.hedge, MaxHedges: 1}))
	}
	e, err := recourse.New(recourse.WithPolicy(key, opts...))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// shapes: every way the chain can sit around a try, with deadlines far away.
func shapes() []pol {
	return []pol{
		{name: "plain", attempts: 1},
		{name: "retries", attempts: 3},
		{name: "perAttempt", attempts: 2, perAttempt: time.Hour},
		{name: "overall", attempts: 2, overall: time.Hour},
		{name: "both", attempts: 2, perAttempt: time.Hour, overall: 2 * time.Hour},
		{name: "hedged", attempts: 1, hedge: time.Hour},
		{name: "hedgedAll", attempts: 2, perAttempt: time.Hour, overall: 2 * time.Hour, hedge: time.Hour},
	}
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func resp(r *http.Request, code int, body io.ReadCloser) *http.Response {
	if body == nil {
		body = io.NopCloser(strings.NewReader("ok"))
	}
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: http.Header{},
		Body: body, Request: r, ContentLength: -1, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

// capture is a base answering 200 "ok" at once, never looking at the context,
// handing every try's context to the test; during runs inside the try.
type capture struct {
	ctxs   chan context.Context
	during func(ctx context.Context)
	body   func(ctx context.Context) io.ReadCloser
}

func newCapture() *capture { return &capture{ctxs: make(chan context.Context, 16)} }

func (c *capture) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	c.ctxs <- ctx
	if c.during != nil {
		c.during(ctx)
	}
	var b io.ReadCloser
	if c.body != nil {
		b = c.body(ctx)
	}
	return resp(r, 200, b), nil
}

func get(t testing.TB, rt http.RoundTripper, ctx context.Context) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://memory.invalid/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt.RoundTrip(req)
}

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func eventually(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitDone(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(d):
		return false
	}
}

// within fails the test if f does not return within d.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// goroutinesBack waits for the goroutine count to return to base (a little slack).
func goroutinesBack(t testing.TB, base int, slack int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			s := string(buf)
			if len(s) > 6000 {
				s = s[:6000]
			}
			t.Fatalf("goroutines %d, baseline %d\n%s", n, base, s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// snapshot is everything a standard context answers.
type snap struct {
	err   error
	cause error
	done  bool
}

func look(ctx context.Context) snap {
	return snap{err: ctx.Err(), cause: context.Cause(ctx), done: isDone(ctx)}
}

// ctxOnlyBody blocks on ctx.Done only (does not honour Close), the way
// a body bound to a request's context behaves.
type ctxOnlyBody struct{ ctx context.Context }

func (b ctxOnlyBody) Read(p []byte) (int, error) { <-b.ctx.Done(); return 0, b.ctx.Err() }
func (b ctxOnlyBody) Close() error               { return nil }

// errCheckBody serves data in chunks, failing a Read if its context has ended
// (polling Err only, never Done), sleeping between chunks.
type errCheckBody struct {
	ctx    context.Context
	chunks int
	gap    time.Duration
}

func (b *errCheckBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.chunks == 0 {
		return 0, io.EOF
	}
	time.Sleep(b.gap)
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	b.chunks--
	return copy(p, "chunk"), nil
}
func (b *errCheckBody) Close() error { return nil }

var _ = rhttp.NewTransport
