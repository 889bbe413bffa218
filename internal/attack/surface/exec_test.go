package surfaceattack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	rendpoint "github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// provFunc is a policy.Provider from a func.
type provFunc func(ctx context.Context, key policy.Key) (policy.Policy, error)

func (f provFunc) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	return f(ctx, key)
}

var errTransient = errors.New("provider down")

func countAttempts(t *testing.T, exec *recourse.Executor, ctx context.Context, key string) (int, error) {
	t.Helper()
	var n atomic.Int32
	err := exec.Do(ctx, key, func(context.Context) error { n.Add(1); return errors.New("fail") })
	return int(n.Load()), err
}

func onePolicy(key policy.Key) policy.Policy {
	return policy.New(key.String(), policy.MaxAttempts(1))
}

func TestProviderErrorNotCached(t *testing.T) {
	var calls atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	prov := provFunc(func(ctx context.Context, key policy.Key) (policy.Policy, error) {
		calls.Add(1)
		if failing.Load() {
			return policy.Policy{}, errTransient
		}
		return onePolicy(key), nil
	})
	exec := recourse.NewExecutor(recourse.WithProvider(prov), recourse.WithProviderErrorBackoff(20*time.Millisecond),
		recourse.WithFallbackPolicy(policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	n, _ := countAttempts(t, exec, context.Background(), "svc.A")
	if n != 2 {
		t.Fatalf("fallback: %d attempts", n)
	}
	failing.Store(false)
	time.Sleep(40 * time.Millisecond)
	n, _ = countAttempts(t, exec, context.Background(), "svc.A")
	if n != 1 {
		t.Fatalf("after provider recovered and backoff passed: %d attempts (provider asked %d times)", n, calls.Load())
	}
	// now fail again: last good kept
	failing.Store(true)
	time.Sleep(40 * time.Millisecond)
	for i := 0; i < 3; i++ {
		n, _ = countAttempts(t, exec, context.Background(), "svc.A")
		if n != 1 {
			t.Fatalf("provider failing again: key left its last good policy (%d attempts)", n)
		}
	}
}

// A caller's cancellation must not become the key's policy.
func TestCancelledFirstCallerNotCached(t *testing.T) {
	var calls atomic.Int32
	prov := provFunc(func(ctx context.Context, key policy.Key) (policy.Policy, error) {
		calls.Add(1)
		select {
		case <-time.After(60 * time.Millisecond):
			return onePolicy(key), nil
		case <-ctx.Done():
			return policy.Policy{}, ctx.Err()
		}
	})
	exec := recourse.NewExecutor(recourse.WithProvider(prov),
		recourse.WithFallbackPolicy(policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	// already-cancelled first caller
	ctx0, cancel0 := context.WithCancel(context.Background())
	cancel0()
	n0, err0 := countAttempts(t, exec, ctx0, "svc.B")
	if err0 == nil || n0 != 0 {
		t.Logf("cancelled caller: %d attempts, err %v", n0, err0)
	}
	// a cancelled caller racing with a patient one
	ctxA, cancelA := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelA()
	var wg sync.WaitGroup
	var nB int
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = countAttempts(t, exec, ctxA, "svc.C") }()
	go func() {
		defer wg.Done()
		time.Sleep(2 * time.Millisecond)
		nB, _ = countAttempts(t, exec, context.Background(), "svc.C")
	}()
	wg.Wait()
	if nB != 1 {
		t.Errorf("patient caller ran under %d attempts, want its real policy (1)", nB)
	}
	for _, k := range []string{"svc.B", "svc.C"} {
		n, _ := countAttempts(t, exec, context.Background(), k)
		if n != 1 {
			t.Errorf("%s after a cancelled first caller: %d attempts, want 1", k, n)
		}
	}
}

func TestConcurrentFirstCallsShareLookup(t *testing.T) {
	var calls atomic.Int32
	prov := provFunc(func(ctx context.Context, key policy.Key) (policy.Policy, error) {
		calls.Add(1)
		time.Sleep(30 * time.Millisecond)
		return onePolicy(key), nil
	})
	exec := recourse.NewExecutor(recourse.WithProvider(prov))
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := context.Background()
			if i%3 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 5*time.Millisecond)
				defer cancel()
			}
			n, _ := countAttempts(t, exec, ctx, "svc.Shared")
			if i%3 != 0 && n != 1 {
				bad.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Errorf("provider asked %d times for one key", calls.Load())
	}
	if bad.Load() != 0 {
		t.Errorf("%d patient callers not under the real policy", bad.Load())
	}
}

// A provider that calls back into the executor.
func TestProviderReentrant(t *testing.T) {
	var exec *recourse.Executor
	prov := provFunc(func(ctx context.Context, key policy.Key) (policy.Policy, error) {
		if key.String() == "svc.Outer" {
			_ = exec.Do(ctx, "svc.Inner", func(context.Context) error { return nil })
		}
		if key.String() == "svc.Self" {
			_ = exec.Do(ctx, "svc.Self", func(context.Context) error { return nil })
		}
		return onePolicy(key), nil
	})
	exec = recourse.NewExecutor(recourse.WithProvider(prov), recourse.WithProviderTimeout(200*time.Millisecond),
		recourse.WithProviderErrorBackoff(time.Millisecond))
	for _, k := range []string{"svc.Outer", "svc.Self"} {
		done := make(chan struct{})
		go func() { defer close(done); _, _ = countAttempts(t, exec, context.Background(), k) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: provider calling the executor deadlocks", k)
		}
	}
}

func TestProviderTimeoutIsTransient(t *testing.T) {
	var slow atomic.Bool
	slow.Store(true)
	prov := provFunc(func(ctx context.Context, key policy.Key) (policy.Policy, error) {
		if slow.Load() {
			<-ctx.Done()
			return policy.Policy{}, ctx.Err()
		}
		return onePolicy(key), nil
	})
	exec := recourse.NewExecutor(recourse.WithProvider(prov), recourse.WithProviderTimeout(20*time.Millisecond),
		recourse.WithProviderErrorBackoff(10*time.Millisecond),
		recourse.WithFallbackPolicy(policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	start := time.Now()
	_, _ = countAttempts(t, exec, context.Background(), "svc.T")
	if time.Since(start) > time.Second {
		t.Fatalf("lookup not bounded: %v", time.Since(start))
	}
	slow.Store(false)
	time.Sleep(30 * time.Millisecond)
	if n, _ := countAttempts(t, exec, context.Background(), "svc.T"); n != 1 {
		t.Fatalf("timed-out lookup cached: %d attempts", n)
	}
}

func breakerPolicy(key string) recourse.Option {
	return recourse.WithPolicy(key, policy.MaxAttempts(1),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Minute}))
}

// Past WithMaxKeys, a key with traffic keeps its (open) breaker.
func TestMaxKeysKeepsBreakers(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithMaxKeys(8), breakerPolicy("hot.Key"), breakerPolicy("inflight.Key"),
		recourse.WithFallbackPolicy(policy.MaxAttempts(1)))
	fail := func(context.Context) error { return errors.New("down") }
	_ = exec.Do(context.Background(), "hot.Key", fail)
	_ = exec.Do(context.Background(), "inflight.Key", fail)
	hot := exec.Breaker("hot.Key")
	infl := exec.Breaker("inflight.Key")
	if hot == nil || hot.State() != rendpoint.BreakerOpen || infl.State() != rendpoint.BreakerOpen {
		t.Fatalf("breakers not open: %v %v", hot, infl)
	}
	// hold inflight.Key in use: wait until its cooldown... it is open, so
	// use a third key with a long call in flight instead.
	block := make(chan struct{})
	started := make(chan struct{})
	var inflightDone sync.WaitGroup
	inflightDone.Add(1)
	_ = exec.Do(context.Background(), "busy.Key", func(context.Context) error { return nil })
	busyBefore := exec.Keys()
	go func() {
		defer inflightDone.Done()
		_ = exec.Do(context.Background(), "busy.Key", func(context.Context) error { close(started); <-block; return nil })
	}()
	<-started
	var calledHot atomic.Int32
	for i := 0; i < 3000; i++ {
		_ = exec.Do(context.Background(), fmt.Sprintf("junk.K%d", i), func(context.Context) error { return nil })
		if i%5 == 0 {
			err := exec.Do(context.Background(), "hot.Key", func(context.Context) error { calledHot.Add(1); return nil })
			if !errors.Is(err, middleware.ErrCircuitOpen) {
				t.Fatalf("after %d junk keys hot.Key's breaker was lost: err %v", i, err)
			}
		}
	}
	close(block)
	inflightDone.Wait()
	if calledHot.Load() != 0 {
		t.Errorf("hot.Key's op ran %d times while its breaker should be open", calledHot.Load())
	}
	if exec.Breaker("hot.Key") != hot {
		t.Errorf("hot.Key's breaker replaced")
	}
	if len(exec.Keys()) > 2*8+4 {
		t.Errorf("cache grew to %d keys with bound 8", len(exec.Keys()))
	}
	_ = busyBefore
}

// Junk keys in concurrent bursts cannot evict a key that keeps being called.
func TestMaxKeysInUseConcurrent(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithMaxKeys(16), breakerPolicy("live.Key"))
	for i := 0; i < 50; i++ {
		_ = exec.Do(context.Background(), "live.Key", func(context.Context) error { return nil })
	}
	_ = exec.Do(context.Background(), "live.Key", func(context.Context) error { return errors.New("x") })
	br := exec.Breaker("live.Key")
	if br == nil || br.State() != rendpoint.BreakerOpen {
		t.Fatal("not open")
	}
	stop := make(chan struct{})
	liveRunning := make(chan struct{})
	var lost, liveCalls atomic.Int32
	var liveWG, junkWG sync.WaitGroup
	liveWG.Add(1)
	go func() {
		defer liveWG.Done()
		for i := 0; ; i++ {
			err := exec.Do(context.Background(), "live.Key", func(context.Context) error { return nil })
			liveCalls.Add(1)
			if !errors.Is(err, middleware.ErrCircuitOpen) {
				lost.Add(1)
			}
			if i == 10 {
				close(liveRunning)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	<-liveRunning
	for g := 0; g < 3; g++ {
		junkWG.Add(1)
		go func(g int) {
			defer junkWG.Done()
			for i := 0; i < 1000; i++ {
				_ = exec.Do(context.Background(), fmt.Sprintf("junk.G%dI%d", g, i), func(context.Context) error { return nil })
			}
		}(g)
	}
	junkWG.Wait()
	close(stop)
	liveWG.Wait()
	if lost.Load() > 0 || exec.Breaker("live.Key") != br {
		t.Errorf("live.Key, called %d times in a loop, lost its open breaker (%d calls ran the op) under 3000 one-off keys",
			liveCalls.Load(), lost.Load())
	}
}

// A burst of one-off keys pushes out a key that carried traffic (and its
// open breaker) if the key is not called during the burst.
func TestMaxKeysBurstEvictsTrafficKey(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithMaxKeys(16), breakerPolicy("hot.Key"))
	for i := 0; i < 100; i++ {
		_ = exec.Do(context.Background(), "hot.Key", func(context.Context) error { return nil })
	}
	_ = exec.Do(context.Background(), "hot.Key", func(context.Context) error { return errors.New("x") })
	br := exec.Breaker("hot.Key")
	for i := 0; i < 33; i++ {
		_ = exec.Do(context.Background(), fmt.Sprintf("junk.K%d", i), func(context.Context) error { return nil })
	}
	var ran atomic.Bool
	err := exec.Do(context.Background(), "hot.Key", func(context.Context) error { ran.Store(true); return nil })
	if exec.Breaker("hot.Key") != br || ran.Load() {
		t.Errorf("33 one-off keys evicted hot.Key (100 calls, open breaker): next call err %v, op ran %v; cached %v",
			err, ran.Load(), exec.Keys())
	}
}

// Observer reading the breaker's state from OnBreakerState.
type stateReader struct {
	timeline.BaseObserver
	exec   **recourse.Executor
	seen   chan string
	nested bool
}

func (o *stateReader) OnBreakerState(ev timeline.BreakerStateChange) {
	e := *o.exec
	if b := e.Breaker("br.Key"); b != nil {
		_ = b.State()
	}
	_ = e.Keys()
	if o.nested {
		_ = e.Do(context.Background(), "br.Key", func(context.Context) error { return nil })
		_, _ = e.Explain(context.Background(), "br.Key")
	}
	select {
	case o.seen <- fmt.Sprint(ev):
	default:
	}
}

func TestObserverReadsBreakerState(t *testing.T) {
	for _, nested := range []bool{false, true} {
		var exec *recourse.Executor
		obs := &stateReader{exec: &exec, seen: make(chan string, 16), nested: nested}
		exec = recourse.NewExecutor(recourse.WithObserver(obs), recourse.WithPolicy("br.Key", policy.MaxAttempts(1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: 20 * time.Millisecond})))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = exec.Do(context.Background(), "br.Key", func(context.Context) error { return errors.New("x") })
			time.Sleep(30 * time.Millisecond)
			_ = exec.Breaker("br.Key").State() // open -> half-open via State
			_ = exec.Do(context.Background(), "br.Key", func(context.Context) error { return nil })
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("nested=%v: observer reading breaker state deadlocked", nested)
		}
		if len(obs.seen) == 0 {
			t.Errorf("nested=%v: no breaker event", nested)
		}
	}
}

func TestNilEverything(t *testing.T) {
	var nilExec *recourse.Executor
	op := func(context.Context) error { return nil }
	check := func(name string, f func() error, want error) {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s panicked: %v", name, r)
			}
		}()
		if err := f(); !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", name, err, want)
		}
	}
	var nilCtx context.Context
	exec := recourse.NewExecutor()
	var zero recourse.Executor
	check("exec.Do(nil ctx)", func() error { return exec.Do(nilCtx, "a.b", op) }, recourse.ErrNilContext)
	check("zero.Do(nil ctx)", func() error { return zero.Do(nilCtx, "a.b", op) }, recourse.ErrNilContext)
	check("nil.Do", func() error { return nilExec.Do(context.Background(), "a.b", op) }, recourse.ErrNilExecutor)
	check("nil.Do(nil ctx)", func() error { return nilExec.Do(nilCtx, "a.b", op) }, recourse.ErrNilExecutor)
	check("nil.DoWithTimeline", func() error { _, err := nilExec.DoWithTimeline(context.Background(), "a.b", op); return err }, recourse.ErrNilExecutor)
	check("DoValueWith(nil exec)", func() error {
		_, err := recourse.DoValueWith(context.Background(), nilExec, "a.b", func(context.Context) (int, error) { return 1, nil })
		return err
	}, recourse.ErrNilExecutor)
	check("DoValueTimelineWith(nil ctx)", func() error {
		_, _, err := recourse.DoValueTimelineWith(nilCtx, exec, "a.b", func(context.Context) (int, error) { return 1, nil })
		return err
	}, recourse.ErrNilContext)
	check("Do(nil ctx)", func() error { return recourse.Do(nilCtx, "a.b", op) }, recourse.ErrNilContext)
	check("DoValue(nil ctx)", func() error {
		_, err := recourse.DoValue(nilCtx, "a.b", func(context.Context) (int, error) { return 1, nil })
		return err
	}, recourse.ErrNilContext)
	check("exec.Do(nil op)", func() error { return exec.Do(context.Background(), "a.b", nil) }, recourse.ErrNilOperation)
	next := func(context.Context, any) (any, error) { return "ok", nil }
	check("nil.Endpoint", func() error { _, err := nilExec.Endpoint("a.b", next)(context.Background(), nil); return err }, recourse.ErrNilExecutor)
	check("Endpoint(nil ctx)", func() error { _, err := exec.Endpoint("a.b", next)(nilCtx, nil); return err }, recourse.ErrNilContext)
	check("nil.Middleware", func() error { _, err := nilExec.Middleware("a.b")(next)(context.Background(), nil); return err }, recourse.ErrNilExecutor)
	check("Middleware(nil ctx)", func() error { _, err := exec.Middleware("a.b")(next)(nilCtx, nil); return err }, recourse.ErrNilContext)
	check("Endpoint(nil next)", func() error { _, err := exec.Endpoint("a.b", nil)(context.Background(), nil); return err }, recourse.ErrNilOperation)
	check("nil.Explain", func() error { _, err := nilExec.Explain(context.Background(), "a.b"); return err }, recourse.ErrNilExecutor)
	check("Explain(nil ctx)", func() error { _, err := exec.Explain(nilCtx, "a.b"); return err }, recourse.ErrNilContext)
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("nil executor accessor panicked: %v", r)
			}
		}()
		if nilExec.Breaker("a.b") != nil {
			t.Error("nil.Breaker non-nil")
		}
		if len(nilExec.Keys()) != 0 {
			t.Error("nil.Keys non-empty")
		}
	}()
	// nil context through a nested timeline.Record-ish path: DoWithTimeline
	check("exec.DoWithTimeline(nil ctx)", func() error { _, err := exec.DoWithTimeline(nilCtx, "a.b", op); return err }, recourse.ErrNilContext)
}

// backClock steps backwards on every reading.
type backClock struct {
	clock.Real
	mu sync.Mutex
	t  time.Time
}

func (c *backClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(-7 * time.Second)
	return c.t
}

type jumpClock struct {
	clock.Real
	n atomic.Int64
}

func (c *jumpClock) Now() time.Time {
	switch c.n.Add(1) % 4 {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(1<<40, 0)
	case 2:
		return time.Unix(-1<<40, 0)
	default:
		return time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	}
}

func TestBudgetsOddClocks(t *testing.T) {
	clocks := map[string]clock.Clock{
		"zero-fake": clock.NewFake(time.Time{}),
		"backwards": &backClock{t: time.Now()},
		"jumping":   &jumpClock{},
		"far":       clock.NewFake(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	for name, c := range clocks {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic %v", name, r)
				}
			}()
			tb := middleware.NewTokenBucketBudget(5, 1, middleware.WithClock(c))
			allowed := 0
			for i := 0; i < 50; i++ {
				if tb.Take(context.Background(), middleware.Try{Key: "a.b", Kind: middleware.TryRetry, Cost: 1}).Allowed {
					allowed++
				}
				if tok := tb.(middleware.TokenReporter).Tokens(); tok > 5 || math.IsNaN(tok) || tok < -1e-9 {
					t.Errorf("%s: token bucket reads %v tokens (capacity 5)", name, tok)
					break
				}
			}
			if allowed > 5+2 && name != "jumping" {
				t.Errorf("%s: token bucket allowed %d of 50 retries (capacity 5, 1/s)", name, allowed)
			}
			rb := middleware.NewRatioBudget(middleware.WithClock(c))
			allowed = 0
			for i := 0; i < 200; i++ {
				_ = rb.Take(context.Background(), middleware.Try{Key: "a.b", Kind: middleware.TryFirst, Cost: 1})
				if rb.Take(context.Background(), middleware.Try{Key: "a.b", Kind: middleware.TryRetry, Cost: 1}).Allowed {
					allowed++
				}
			}
			if allowed > 200 {
				t.Errorf("%s: ratio budget allowed %d", name, allowed)
			}
			if name == "zero-fake" || name == "far" {
				// 200 firsts * 10% + floor 1/s * 10s = 30 at most in one window.
				if allowed > 40 {
					t.Errorf("%s: ratio budget allowed %d retries for 200 firsts", name, allowed)
				}
			}
		}()
	}
	for _, tc := range []struct {
		cap    int
		refill float64
	}{{-1, 1}, {0, math.Inf(1)}, {3, math.NaN()}, {math.MaxInt, 1}, {3, -5}} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("token bucket %+v: panic %v", tc, r)
				}
			}()
			b := middleware.NewTokenBucketBudget(tc.cap, tc.refill, middleware.WithClock(clock.NewFake(time.Unix(0, 0))))
			if !b.Take(context.Background(), middleware.Try{Kind: middleware.TryFirst, Cost: 1}).Allowed {
				t.Errorf("token bucket %+v refused a first try", tc)
			}
			_ = b.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: 1})
			if tok := b.(middleware.TokenReporter).Tokens(); math.IsNaN(tok) {
				t.Errorf("token bucket %+v: NaN tokens", tc)
			}
		}()
	}
}

func TestTokenBucketHugeRefill(t *testing.T) {
	for _, r := range []float64{math.Inf(1), 1e308} {
		b := middleware.NewTokenBucketBudget(3, r, middleware.WithClock(clock.NewFake(time.Unix(0, 0))))
		for i := 0; i < 10; i++ {
			_ = b.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: 1})
		}
		if tok := b.(middleware.TokenReporter).Tokens(); math.IsNaN(tok) || tok < 0 || tok > 3 {
			t.Errorf("refill %v: Tokens() = %v, want within [0, 3]", r, tok)
		}
	}
}

// A key with a call in flight (a long stream, a slow dependency) is in use: a
// storm of one-off keys must not evict it and its breaker under the call.
func TestMaxKeysInFlightKeyKept(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithMaxKeys(16), breakerPolicy("busy.Key"))
	_ = exec.Do(context.Background(), "busy.Key", func(context.Context) error { return nil })
	br := exec.Breaker("busy.Key")
	block, started := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = exec.Do(context.Background(), "busy.Key", func(context.Context) error {
			close(started)
			<-block
			return errors.New("the long call failed")
		})
	}()
	<-started
	for i := 0; i < 200; i++ {
		_ = exec.Do(context.Background(), fmt.Sprintf("junk.F%d", i), func(context.Context) error { return nil })
	}
	evictedDuringCall := exec.Breaker("busy.Key") != br
	close(block)
	<-done
	var ran atomic.Bool
	err := exec.Do(context.Background(), "busy.Key", func(context.Context) error { ran.Store(true); return nil })
	if evictedDuringCall || ran.Load() {
		t.Errorf("busy.Key evicted while its call was in flight (breaker replaced: %v); the call's failure tripped an orphaned breaker, next call ran (err %v)",
			evictedDuringCall, err)
	}
}
