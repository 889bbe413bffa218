package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

// spyLimiter admits everything and records how each try was released.
type spyLimiter struct {
	mu      sync.Mutex
	dropped []bool
	err     error // returned by Acquire when set
	nilRel  bool  // admit with a nil release
}

func (s *spyLimiter) Acquire(context.Context) (func(bool), error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.nilRel {
		return nil, nil
	}
	return func(d bool) {
		s.mu.Lock()
		s.dropped = append(s.dropped, d)
		s.mu.Unlock()
	}, nil
}

func (s *spyLimiter) releases() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.dropped...)
}

func TestLimitRefusalDoesNotRunIsAbortAndRecorded(t *testing.T) {
	b := NewBulkhead(1, 0)
	hold := mustAcquire(t, b)
	defer hold(false)
	var calls atomic.Int32
	ep := endpoint.Chain(Observe("k"), Retry(MaxAttempts(3)), Limit(b), Classify(nil))(scripted(&calls))
	ctx, capture := recordCall(context.Background())
	_, err := ep(ctx, nil)
	if !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("err = %v, want ErrBulkheadFull", err)
	}
	if calls.Load() != 0 {
		t.Fatalf("next called %d times on a refused try", calls.Load())
	}
	tl := capture.Timeline()
	if len(tl.Attempts) != 1 {
		t.Fatalf("%d attempts recorded, want 1 (a refusal is not retried)", len(tl.Attempts))
	}
	a := tl.Attempts[0]
	if a.Reason != timeline.ReasonBulkheadFull || a.Outcome != timeline.OutcomeAbort || !errors.Is(a.Err, ErrBulkheadFull) {
		t.Fatalf("record = %+v, want abort bulkhead_full", a)
	}
	var ce *ClassifiedError
	_, rerr := Limit(b)(scripted(&calls))(context.Background(), nil)
	if !errors.As(rerr, &ce) || ce.Verdict.Reason != timeline.ReasonBulkheadFull || ce.Verdict.Outcome != timeline.OutcomeAbort {
		t.Fatalf("alone: %v, want a classified abort", rerr)
	}
}

// limiterFunc adapts a function to Limiter.
type limiterFunc func(context.Context) (func(bool), error)

func (f limiterFunc) Acquire(ctx context.Context) (func(bool), error) { return f(ctx) }

// A retry after a real failure that finds the bulkhead full is not sent.
func TestLimitRetryIntoFullBulkheadIsNotSent(t *testing.T) {
	var acquires atomic.Int32
	full := fmt.Errorf("%w (test)", ErrBulkheadFull)
	l := limiterFunc(func(context.Context) (func(bool), error) {
		if acquires.Add(1) > 1 {
			return nil, full // filled up by others after the first try
		}
		return noRelease, nil
	})
	var calls atomic.Int32
	flaky := errors.New("flaky")
	_, err := endpoint.Chain(Retry(MaxAttempts(5)), Limit(l), Classify(nil))(scripted(&calls, flaky, flaky))(context.Background(), nil)
	if calls.Load() != 1 || acquires.Load() != 2 || err == nil {
		t.Fatalf("calls = %d, acquires = %d, err = %v; want 1 call, 2 acquires and an error", calls.Load(), acquires.Load(), err)
	}
}

func TestLimitRefusalsAreNotCountedByBreaker(t *testing.T) {
	cb := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Hour})
	b := NewBulkhead(1, 0)
	hold := mustAcquire(t, b)
	var calls atomic.Int32
	ep := endpoint.Chain(Retry(MaxAttempts(1)), Breaker(cb), Limit(b), Classify(nil))(scripted(&calls))
	for i := 0; i < 50; i++ {
		if _, err := ep(context.Background(), nil); !errors.Is(err, ErrBulkheadFull) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if s := cb.State(); s != endpoint.BreakerClosed {
		t.Fatalf("breaker %v after 50 refusals, want closed", s)
	}
	hold(false)
	if _, err := ep(context.Background(), nil); err != nil || calls.Load() != 1 {
		t.Fatalf("next healthy call: %v (calls %d)", err, calls.Load())
	}
}

func TestLimitReleasesOnPanic(t *testing.T) {
	b := NewBulkhead(1, 0)
	ep := Limit(b)(func(context.Context, any) (any, error) { panic("boom") })
	func() {
		defer func() { _ = recover() }()
		_, _ = ep(context.Background(), nil)
	}()
	if b.InFlight() != 0 {
		t.Fatal("a panicking try kept its room")
	}
}

func TestLimitDroppedSignal(t *testing.T) {
	pushback := &ClassifiedError{Err: errors.New("503"), Verdict: Verdict{Outcome: timeline.OutcomeRetryable, RetryAfter: time.Second}}
	cases := []struct {
		name string
		ep   endpoint.Endpoint
		mw   []endpoint.Middleware // inside Limit
		want bool
	}{
		{"success", func(context.Context, any) (any, error) { return "ok", nil }, nil, false},
		{"plain failure", func(context.Context, any) (any, error) { return nil, errors.New("x") }, nil, false},
		{"non-retryable", func(context.Context, any) (any, error) { return nil, Permanent(errors.New("x")) }, nil, false},
		{"pushback", func(context.Context, any) (any, error) { return nil, pushback }, nil, true},
		{"refused further in", func(context.Context, any) (any, error) { return nil, ErrBulkheadFull }, nil, true},
		{"own attempt timeout", func(ctx context.Context, _ any) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, []endpoint.Middleware{Timeout(time.Millisecond), Classify(nil)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &spyLimiter{}
			mws := append([]endpoint.Middleware{Limit(s)}, c.mw...)
			_, _ = endpoint.Chain(mws[0], mws[1:]...)(c.ep)(context.Background(), nil)
			if got := s.releases(); len(got) != 1 || got[0] != c.want {
				t.Fatalf("releases = %v, want [%v]", got, c.want)
			}
		})
	}
}

func TestLimitForeignLimiterErrorIsARefusal(t *testing.T) {
	other := errors.New("quota service down")
	var calls atomic.Int32
	_, err := Limit(&spyLimiter{err: other})(scripted(&calls))(context.Background(), nil)
	if !errors.Is(err, ErrBulkheadFull) || !errors.Is(err, other) || calls.Load() != 0 {
		t.Fatalf("err = %v (calls %d), want ErrBulkheadFull wrapping the limiter's error", err, calls.Load())
	}
	if v := VerdictOf(context.Background(), nil, err); v.Outcome != timeline.OutcomeAbort || v.Reason != timeline.ReasonBulkheadFull {
		t.Fatalf("verdict %+v", v)
	}
	// A limiter admitting with a nil release does not crash the try.
	if _, err := Limit(&spyLimiter{nilRel: true})(scripted(&calls))(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	// Limit(nil) limits nothing.
	if _, err := Limit(nil)(scripted(&calls))(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestLimitContextEndingWhileWaitingIsTheCallers(t *testing.T) {
	b := NewBulkhead(1, time.Hour)
	hold := mustAcquire(t, b)
	defer hold(false)
	var calls atomic.Int32
	ep := endpoint.Chain(Observe("k"), Retry(MaxAttempts(3)), Limit(b), Classify(nil))(scripted(&calls))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	ctx, capture := recordCall(ctx)
	_, err := ep(ctx, nil)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrBulkheadFull) || calls.Load() != 0 {
		t.Fatalf("err = %v, calls %d; want the deadline, no call", err, calls.Load())
	}
	tl := capture.Timeline()
	if len(tl.Attempts) != 1 || tl.Attempts[0].Reason != timeline.ReasonTimeout || tl.Attempts[0].Outcome != timeline.OutcomeAbort {
		t.Fatalf("attempts %+v, want one abort timeout", tl.Attempts)
	}
}

// The shared refusal of a Bulkhead costs no allocation in the decorator.
func TestLimitRefusalAllocatesNothing(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items under the race detector")
	}
	b := NewBulkhead(1, 0)
	hold := mustAcquire(t, b)
	ep := Limit(b)(func(context.Context, any) (any, error) { return nil, nil })
	ctx := context.Background()
	_, _ = ep(ctx, nil)
	if n := testing.AllocsPerRun(200, func() { _, _ = ep(ctx, nil) }); n != 0 {
		t.Fatalf("%v allocs per refused try", n)
	}
	hold(false)
	if n := testing.AllocsPerRun(200, func() { _, _ = ep(ctx, nil) }); n != 0 {
		t.Fatalf("%v allocs per admitted try", n)
	}
}

func TestLimitThousandGoroutinesWithBreakerAndRetry(t *testing.T) {
	cb := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 3, Cooldown: time.Hour})
	b := NewBulkhead(4, time.Millisecond)
	var running, peak atomic.Int32
	op := func(ctx context.Context, _ any) (any, error) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(100 * time.Microsecond)
		running.Add(-1)
		return "ok", nil
	}
	ep := endpoint.Chain(Observe("k"), Retry(MaxAttempts(2)), Breaker(cb), Limit(b), Classify(nil))(op)
	var wg sync.WaitGroup
	var ok, full atomic.Int32
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, _ := recordCall(context.Background())
			_, err := ep(ctx, nil)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrBulkheadFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if peak.Load() > 4 || ok.Load()+full.Load() != 1000 || ok.Load() == 0 {
		t.Fatalf("peak %d, ok %d, full %d", peak.Load(), ok.Load(), full.Load())
	}
	if cb.State() != endpoint.BreakerClosed || b.InFlight() != 0 {
		t.Fatalf("breaker %v, in flight %d", cb.State(), b.InFlight())
	}
}

func TestPerKeyMakesOneLimiterPerKeyAndBoundsKeys(t *testing.T) {
	var made atomic.Int32
	src := PerKey(func(key string) Limiter { made.Add(1); return NewBulkhead(1, 0) })
	a, b := src("a"), src("b")
	if src("a") != a || a == b {
		t.Fatal("same key, different limiters (or different keys, one limiter)")
	}
	for i := 0; i < defaultMaxLimiterKeys+50; i++ {
		src(fmt.Sprint("k", i))
	}
	if m := made.Load(); m != defaultMaxLimiterKeys+1 {
		t.Fatalf("made %d limiters, want %d (the cap plus one shared)", m, defaultMaxLimiterKeys+1)
	}
	if src("x1") != src("x2") {
		t.Fatal("keys past the cap do not share")
	}
	if PerKey(nil)("a") != nil {
		t.Fatal("PerKey(nil) limits")
	}
	// Concurrent first uses of one key get one limiter.
	made.Store(0)
	src = PerKey(func(string) Limiter { made.Add(1); return NewBulkhead(1, 0) })
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); src("same") }()
	}
	wg.Wait()
	if made.Load() != 1 {
		t.Fatalf("made %d limiters for one key", made.Load())
	}
}
