package middleware

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

func budgetChain(b Budget, attempts int, ep endpoint.Endpoint) endpoint.Endpoint {
	return endpoint.Chain(Observe("k"), Retry(MaxAttempts(attempts), WithBackoff(BackoffConfig{Initial: time.Microsecond, Max: time.Microsecond, Multiplier: 1})),
		BudgetGate(b, budgetName("retries")), Classify(nil))(ep)
}

func TestTokenBucketCapacityZeroAllowsOnlyTheFirstAttempt(t *testing.T) {
	var calls atomic.Int32
	ctx, c := recordCall(context.Background())
	_, err := budgetChain(NewTokenBucketBudget(0, 0), 3, scripted(&calls, errFlaky, errFlaky, errFlaky))(ctx, nil)
	if calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", calls.Load())
	}
	if err != errFlaky {
		t.Fatalf("err = %v, want the last real error", err)
	}
	a := c.Timeline().Attempts
	if len(a) != 2 || a[1].Reason != timeline.ReasonBudgetDenied || a[1].Outcome != timeline.OutcomeAbort || a[1].Attempt != 2 {
		t.Fatalf("attempts = %+v", a)
	}
}

func TestBudgetDeniedWithoutARealTryIsErrBudgetExhausted(t *testing.T) {
	// A hedge-less retry loop whose very first try is a retry (attempt 2)
	// cannot happen; but a budget used alone refuses with the same error.
	ep := BudgetGate(NewTokenBucketBudget(0, 0))(endpoint.Nop)
	ctx := endpoint.WithAttempt(context.Background(), endpoint.AttemptInfo{Attempt: 2})
	_, err1 := ep(ctx, nil)
	_, err2 := ep(ctx, nil)
	if !errors.Is(err1, ErrBudgetExhausted) || err1 != err2 {
		t.Fatalf("errors %v / %v: refusals must return the one same error", err1, err2)
	}
	if v := VerdictOf(ctx, nil, err1); v.Reason != timeline.ReasonBudgetDenied {
		t.Fatalf("verdict = %+v", v)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ep(ctx, nil) }); n != 0 {
		t.Fatalf("a refusal allocates %v", n)
	}
}

func TestTokenBucketRefillsOnItsClock(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	b := newTokenBucketBudget(1, 2, f) // 1 token, +2/s
	retry := Try{Kind: TryRetry, Cost: 1}
	if !b.Take(context.Background(), retry).Allowed {
		t.Fatal("full bucket refused")
	}
	if b.Take(context.Background(), retry).Allowed {
		t.Fatal("empty bucket allowed")
	}
	if !b.Take(context.Background(), Try{Kind: TryFirst}).Allowed {
		t.Fatal("first try refused")
	}
	f.Advance(500 * time.Millisecond)
	if !b.Take(context.Background(), retry).Allowed {
		t.Fatal("refilled bucket refused")
	}
}

func TestRatioBudgetBoundsAmplification(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	b := newRatioBudget(Ratio(0.1), RatioFloor(1), RatioWindow(10*time.Second), WithClock(f))
	var calls atomic.Int32
	ep := budgetChain(b, 3, func(context.Context, any) (any, error) { calls.Add(1); return nil, errFlaky })
	for i := 0; i < 1000; i++ {
		if _, err := ep(context.Background(), nil); !errors.Is(err, errFlaky) {
			t.Fatalf("call %d: err = %v", i, err)
		}
	}
	floor := 1 * 10 // floor per second × window seconds
	if got, limit := int(calls.Load()), 1100+floor; got > limit {
		t.Fatalf("tries = %d for 1000 calls, limit %d", got, limit)
	}
	if calls.Load() <= 1000 {
		t.Fatalf("tries = %d: the budget allowed no retries at all", calls.Load())
	}
}

func TestRatioBudgetWindowSlides(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	b := newRatioBudget(Ratio(0.5), RatioFloor(0), RatioWindow(time.Second), WithClock(f))
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		b.Take(ctx, Try{Kind: TryFirst})
	}
	allowed := 0
	for i := 0; i < 10; i++ {
		if b.Take(ctx, Try{Kind: TryRetry, Cost: 1}).Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d retries for 10 calls at 50%%", allowed)
	}
	f.Advance(2 * time.Second) // everything expired: no calls, no retries
	if b.Take(ctx, Try{Kind: TryRetry, Cost: 1}).Allowed {
		t.Fatal("retry allowed with no calls in the window")
	}
}

type panickyBudget struct{}

func (panickyBudget) Take(context.Context, Try) Decision { panic("budget bug") }

func TestBudgetPanicBecomesPanicError(t *testing.T) {
	ep := BudgetGate(panickyBudget{}, recoverBudgetPanics("a.b"))(endpoint.Nop)
	_, err := ep(endpoint.WithAttempt(context.Background(), endpoint.AttemptInfo{Attempt: 2}), nil)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Component != "budget" || pe.Key != "a.b" {
		t.Fatalf("err = %v", err)
	}
}

func TestUnlimitedBudgetAllowsEverything(t *testing.T) {
	var calls atomic.Int32
	_, err := budgetChain(UnlimitedBudget{}, 3, scripted(&calls, errFlaky, errFlaky))(context.Background(), nil)
	if err != nil || calls.Load() != 3 {
		t.Fatalf("err %v calls %d", err, calls.Load())
	}
}

func TestThrottleBudgetClosesAtHalfAndReopens(t *testing.T) {
	b := newThrottleBudget(10, 0.5)
	ctx := context.Background()
	retry := Try{Kind: TryRetry, Cost: 1}
	for i := 0; i < 5; i++ { // 10 → 5 tokens
		if !b.Take(ctx, retry).Allowed {
			t.Fatalf("closed after %d failures, want open while above half", i)
		}
		b.RecordOutcome(retry, false)
	}
	if d := b.Take(ctx, retry); d.Allowed || d.Reason != reasonThrottleClosed {
		t.Fatalf("at %v tokens (half): %+v", b.Tokens(), d)
	}
	if !b.Take(ctx, Try{Kind: TryFirst}).Allowed {
		t.Fatal("first tries must never be refused")
	}
	for i := 0; i < 30; i++ {
		b.RecordOutcome(Try{}, false) // floors at zero
	}
	if b.Tokens() != 0 {
		t.Fatalf("tokens = %v", b.Tokens())
	}
	for i := 0; i < 11; i++ { // 11 × 0.5 = 5.5 > half
		b.RecordOutcome(Try{}, true)
	}
	if !b.Take(ctx, retry).Allowed {
		t.Fatalf("not reopened at %v tokens", b.Tokens())
	}
	for i := 0; i < 100; i++ {
		b.RecordOutcome(Try{}, true)
	}
	if b.Tokens() != 10 {
		t.Fatalf("tokens = %v, capped at 10", b.Tokens())
	}
}

func TestThrottleBudgetStopsRetriesDuringAnOutage(t *testing.T) {
	b := newThrottleBudget(10, 0.1)
	var calls atomic.Int32
	ep := budgetChain(b, 3, func(context.Context, any) (any, error) { calls.Add(1); return nil, errFlaky })
	for i := 0; i < 1000; i++ {
		_, _ = ep(context.Background(), nil)
	}
	// Failures drain the top half within a few calls; after that each call
	// makes its first try only.
	if got := calls.Load(); got > 1010 {
		t.Fatalf("%d tries for 1000 calls to a dead dependency", got)
	}
	// Successes refill it: retries come back.
	ok := budgetChain(b, 3, func(context.Context, any) (any, error) { return "ok", nil })
	for i := 0; i < 60; i++ {
		_, _ = ok(context.Background(), nil)
	}
	if !b.Take(context.Background(), Try{Kind: TryRetry}).Allowed {
		t.Fatalf("still closed at %v tokens after 60 successes", b.Tokens())
	}
}

func TestThrottleBudgetConcurrentOutcomesStayInRange(t *testing.T) {
	b := newThrottleBudget(5, 0.3)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				b.RecordOutcome(Try{}, (i+g)%3 == 0)
			}
		}(g)
	}
	wg.Wait()
	if tok := b.Tokens(); tok < 0 || tok > 5 {
		t.Fatalf("tokens = %v outside [0, 5]", tok)
	}
}
