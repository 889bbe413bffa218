package adopt_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const key = "adopt.Get"

// shapes are the policy shapes under which a final failed response is adopted.
var shapes = map[string][]policy.Option{
	"plain":      nil,
	"perAttempt": {policy.TimeoutPerAttempt(time.Hour)},
	"overall":    {policy.OverallTimeout(time.Hour)},
	"hedged":     {policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})},
	"all": {policy.TimeoutPerAttempt(time.Hour), policy.OverallTimeout(time.Hour),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})},
}

var shapeNames = []string{"plain", "perAttempt", "overall", "hedged", "all"}

func newExec(attempts int, extra ...policy.Option) *recourse.Executor {
	opts := []policy.Option{
		policy.MaxAttempts(attempts),
		policy.Backoff(time.Millisecond, 2*time.Millisecond, 2),
		policy.WithBudget(policy.BudgetUnlimited),
	}
	return recourse.NewExecutor(recourse.WithPolicy(key, append(opts, extra...)...))
}

// tbody is a base response body that records closes and can drip or stall.
type tbody struct {
	ctx        context.Context
	data       []byte
	drip       time.Duration // sleep before each 1-byte read, if > 0
	stallAt    int           // Read blocks once pos reaches stallAt (if >= 0)
	closeWakes bool          // Close unblocks a stalled Read (as net/http's bodies)

	mu     sync.Mutex
	pos    int
	closes atomic.Int32
	closed chan struct{}
	once   sync.Once
}

func newBody(ctx context.Context, data []byte) *tbody {
	return &tbody{ctx: ctx, data: data, stallAt: -1, closeWakes: true, closed: make(chan struct{})}
}

func (b *tbody) Read(p []byte) (int, error) {
	b.mu.Lock()
	pos := b.pos
	b.mu.Unlock()
	if b.stallAt >= 0 && pos >= b.stallAt {
		wake := b.closed
		if !b.closeWakes {
			wake = nil
		}
		select {
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		case <-wake:
			return 0, errors.New("tbody: read after close")
		}
	}
	if b.drip > 0 {
		select {
		case <-time.After(b.drip):
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
		if len(p) > 1 {
			p = p[:1]
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pos >= len(b.data) {
		return 0, io.EOF
	}
	end := len(b.data)
	if b.stallAt >= 0 && end > b.stallAt {
		end = b.stallAt
	}
	n := copy(p, b.data[b.pos:end])
	b.pos += n
	return n, nil
}

func (b *tbody) Close() error {
	b.closes.Add(1)
	b.once.Do(func() { close(b.closed) })
	return nil
}

// base is an in-memory RoundTripper; mk builds try n's response.
type base struct {
	n      atomic.Int32
	mk     func(n int32, req *http.Request) *http.Response
	mu     sync.Mutex
	bodies []*tbody
	ctxs   []context.Context
}

func (b *base) RoundTrip(req *http.Request) (*http.Response, error) {
	n := b.n.Add(1)
	if req.Body != nil {
		_ = req.Body.Close()
	}
	resp := b.mk(n, req)
	b.mu.Lock()
	b.ctxs = append(b.ctxs, req.Context())
	if tb, ok := resp.Body.(*tbody); ok {
		b.bodies = append(b.bodies, tb)
	}
	b.mu.Unlock()
	return resp, nil
}

func (b *base) reset() {
	b.mu.Lock()
	b.bodies, b.ctxs = nil, nil
	b.mu.Unlock()
}

func (b *base) snapshot() ([]*tbody, []context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*tbody(nil), b.bodies...), append([]context.Context(nil), b.ctxs...)
}

func resp503(req *http.Request, body *tbody) *http.Response {
	return &http.Response{StatusCode: 503, Status: "503 Service Unavailable",
		Header: http.Header{"Retry-After": {"0"}}, Body: body, Request: req,
		ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1}
}

func payload(n int32, size int) []byte {
	s := strings.Repeat(string(rune('a'+n%26)), size)
	return []byte(s)
}

func get(t testing.TB, ctx context.Context, rt http.RoundTripper) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://adopt.test/x", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	return resp
}

func waitGoroutines(t testing.TB, baseline, slack int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	n := runtime.NumGoroutine()
	for n > baseline+slack && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

func waitDone(ctxs []context.Context, d time.Duration) int { return waitAlive(ctxs, 0, d) }

// waitAlive waits until at most max of ctxs are alive, and returns how many are.
func waitAlive(ctxs []context.Context, max int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		alive := 0
		for _, c := range ctxs {
			if c.Err() == nil {
				alive++
			}
		}
		if alive <= max || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func rt(e *recourse.Executor, b http.RoundTripper) http.RoundTripper {
	return rhttp.NewTransport(e, key, b)
}
