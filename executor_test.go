package recourse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kitep "github.com/go-kit/kit/endpoint"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

var errFlaky = errors.New("flaky")

// failTimes returns an op failing n times with errFlaky, then succeeding.
func failTimes(n int32, calls *atomic.Int32) func(context.Context) error {
	return func(context.Context) error {
		if calls.Add(1) <= n {
			return errFlaky
		}
		return nil
	}
}

// noWait is a policy option for tests that do not care about backoff.
func noWait() policy.Option { return policy.Backoff(time.Microsecond, time.Microsecond, 1) }

func TestDoCancelledBeforeFirstAttempt(t *testing.T) {
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewExecutor().Do(ctx, "svc.Op", failTimes(0, &calls))
	if err != context.Canceled || calls.Load() != 0 {
		t.Fatalf("err = %v, calls = %d; want ctx.Err() and no call", err, calls.Load())
	}
}

func TestDoRetriesTwiceThenSucceeds(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	e := NewExecutor(WithClock(f), WithPolicy("svc.Op", policy.MaxAttempts(3),
		policy.Backoff(10*time.Millisecond, time.Second, 2), policy.Jitter(policy.JitterEqual)))
	var calls atomic.Int32
	type result struct {
		tl  *timeline.Timeline
		err error
	}
	done := make(chan result, 1)
	go func() {
		tl, err := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(2, &calls))
		done <- result{tl, err}
	}()
	for i := 0; i < 2; i++ {
		f.BlockUntil(1)
		f.Advance(time.Hour)
	}
	r := <-done
	if r.err != nil || calls.Load() != 3 || len(r.tl.Attempts) != 3 {
		t.Fatalf("err %v, calls %d, records %d", r.err, calls.Load(), len(r.tl.Attempts))
	}
	for i, want := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond} {
		if b := r.tl.Attempts[i].Backoff; b < want/2 || b > want {
			t.Fatalf("backoff %d = %v, want in [%v, %v] (equal jitter)", i, b, want/2, want)
		}
	}
	if r.tl.Attributes[timeline.AttrPolicySource] != "static" || r.tl.Key != "svc.Op" {
		t.Fatalf("timeline = %+v", r.tl)
	}
}

func TestDoPermanentIsTriedOnce(t *testing.T) {
	var calls atomic.Int32
	root := errors.New("card declined")
	e := NewExecutor(WithPolicy("pay.Charge", policy.MaxAttempts(5), noWait()))
	err := e.Do(context.Background(), "pay.Charge", func(context.Context) error {
		calls.Add(1)
		return Permanent(root)
	})
	if calls.Load() != 1 || !errors.Is(err, root) {
		t.Fatalf("calls %d, err %v", calls.Load(), err)
	}
}

func TestPolicyTimeouts(t *testing.T) {
	e := NewExecutor(WithPolicy("slow.Op", policy.MaxAttempts(3), noWait(),
		policy.TimeoutPerAttempt(20*time.Millisecond), policy.OverallTimeout(5*time.Second)))
	var calls atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), "slow.Op", func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			<-ctx.Done() // the first try hangs until its own deadline
			return ctx.Err()
		}
		return nil
	})
	if err != nil || calls.Load() != 2 {
		t.Fatalf("err %v after %d calls", err, calls.Load())
	}
	if a := tl.Attempts[0]; a.Reason != timeline.ReasonTimeout || a.Outcome != timeline.OutcomeRetryable {
		t.Fatalf("first attempt %+v", a)
	}

	// The overall timeout bounds everything: tries that hang are cut at
	// 20ms each, and the call as a whole at 50ms.
	e = NewExecutor(WithPolicy("slow.Op", policy.MaxAttempts(10), policy.Backoff(10*time.Millisecond, 10*time.Millisecond, 1),
		policy.Jitter(policy.JitterNone), policy.TimeoutPerAttempt(20*time.Millisecond), policy.OverallTimeout(50*time.Millisecond)))
	start := time.Now()
	err = e.Do(context.Background(), "slow.Op", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if took := time.Since(start); took > 500*time.Millisecond || err == nil {
		t.Fatalf("err %v after %v; overall timeout is 50ms", err, took)
	}
}

func TestNormalizeClampsAndTimelineSaysSo(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Op", policy.MaxAttempts(99), policy.Backoff(time.Microsecond, time.Hour, 50)))
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	got := tl.Attributes[timeline.AttrPolicyClampedFields]
	for _, f := range []string{"retry.max_attempts", "retry.initial_backoff", "retry.max_backoff", "retry.multiplier"} {
		if !strings.Contains(got, f) {
			t.Fatalf("policy_clamped_fields = %q, lacks %s", got, f)
		}
	}
	if tl.Attributes[timeline.AttrPolicyNormalized] != "true" {
		t.Fatalf("attributes = %v", tl.Attributes)
	}
	c, err := e.Explain(context.Background(), "svc.Op")
	if err != nil || c.Policy.Retry.MaxAttempts != 10 /* the bound */ {
		t.Fatalf("compiled %+v, %v", c, err)
	}
}

func TestMissingPolicyModes(t *testing.T) {
	t.Run("fallback", func(t *testing.T) {
		var calls atomic.Int32
		e := NewExecutor(WithFallbackPolicy(policy.MaxAttempts(2), noWait()))
		tl, err := e.DoWithTimeline(context.Background(), "unknown.Op", failTimes(1, &calls))
		if err != nil || calls.Load() != 2 {
			t.Fatalf("err %v, calls %d", err, calls.Load())
		}
		if tl.Attributes[timeline.AttrMissingPolicyMode] != "fallback" || tl.Attributes[timeline.AttrPolicyError] == "" ||
			tl.Attributes[timeline.AttrPolicySource] != timeline.ReasonPolicyFallback {
			t.Fatalf("attributes %v", tl.Attributes)
		}
	})
	t.Run("allow", func(t *testing.T) {
		var calls atomic.Int32
		e := NewExecutor(WithMissingPolicyMode(FailureAllow))
		tl, err := e.DoWithTimeline(context.Background(), "unknown.Op", failTimes(5, &calls))
		if !errors.Is(err, errFlaky) || calls.Load() != 1 || len(tl.Attempts) != 1 {
			t.Fatalf("err %v, calls %d", err, calls.Load())
		}
		if tl.Attributes[timeline.AttrMissingPolicyMode] != "allow" {
			t.Fatalf("attributes %v", tl.Attributes)
		}
	})
	t.Run("deny", func(t *testing.T) {
		var calls atomic.Int32
		e := NewExecutor(WithMissingPolicyMode(FailureDeny))
		tl, err := e.DoWithTimeline(context.Background(), "unknown.Op", failTimes(0, &calls))
		var npe *NoPolicyError
		if !errors.Is(err, ErrNoPolicy) || !errors.As(err, &npe) || npe.Key != "unknown.Op" || calls.Load() != 0 {
			t.Fatalf("err %v, calls %d", err, calls.Load())
		}
		if len(tl.Attempts) != 1 || tl.Attempts[0].Reason != timeline.ReasonNoPolicy {
			t.Fatalf("timeline %v", tl)
		}
		if _, err := e.Explain(context.Background(), "unknown.Op"); !errors.Is(err, ErrNoPolicy) {
			t.Fatalf("Explain err = %v", err)
		}
	})
	t.Run("provider", func(t *testing.T) {
		prov := policy.NewStaticProvider(policy.New("known.Op", policy.MaxAttempts(1)))
		e := NewExecutor(WithProvider(prov), WithMissingPolicyMode(FailureDeny))
		tl, err := e.DoWithTimeline(context.Background(), "known.Op", func(context.Context) error { return nil })
		if err != nil || tl.Attributes[timeline.AttrPolicySource] != "static" {
			t.Fatalf("err %v attrs %v", err, tl.Attributes)
		}
		if err := e.Do(context.Background(), "other.Op", func(context.Context) error { return nil }); !errors.Is(err, ErrNoPolicy) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestProviderChangeRecompiles(t *testing.T) {
	prov := policy.NewStaticProvider(policy.New("svc.Op", policy.MaxAttempts(1)))
	e := NewExecutor(WithProvider(prov))
	var calls atomic.Int32
	_ = e.Do(context.Background(), "svc.Op", failTimes(10, &calls))
	prov.Set(policy.New("svc.Op", policy.MaxAttempts(3), noWait()))
	_ = e.Do(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 4 {
		t.Fatalf("calls = %d, want 1 then 3 after the policy changed", calls.Load())
	}
}

type panickingProvider struct{}

func (panickingProvider) Policy(context.Context, policy.Key) (policy.Policy, error) {
	panic("bad config")
}

func TestPanicsBecomeErrors(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Op", policy.MaxAttempts(3), noWait()))
	var calls atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", func(context.Context) error {
		calls.Add(1)
		panic("nil map")
	})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Component != "op" || pe.Key != "svc.Op" || pe.Value != "nil map" || len(pe.Stack) == 0 {
		t.Fatalf("err = %#v", err)
	}
	if calls.Load() != 1 || tl.Attempts[0].Reason != timeline.ReasonPanic {
		t.Fatalf("calls %d, timeline %v", calls.Load(), tl)
	}

	e = NewExecutor(WithProvider(panickingProvider{}))
	tl, err = e.DoWithTimeline(context.Background(), "svc.Op", func(context.Context) error { return nil })
	if err != nil || !strings.Contains(tl.Attributes[timeline.AttrPolicyError], "panic in provider") {
		t.Fatalf("err %v attrs %v", err, tl.Attributes)
	}

	e = NewExecutor(WithoutPanicRecovery())
	defer func() {
		if recover() == nil {
			t.Fatal("panic recovered although recovery is off")
		}
	}()
	_ = e.Do(context.Background(), "svc.Op", func(context.Context) error { panic("boom") })
}

func TestMissingClassifierModes(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Op", policy.WithClassifier("grpc")), WithMissingClassifierMode(FailureDeny))
	if err := e.Do(context.Background(), "svc.Op", func(context.Context) error { return nil }); !errors.Is(err, ErrNoClassifier) {
		t.Fatalf("err = %v", err)
	}
	e = NewExecutor(WithPolicy("svc.Op", policy.WithClassifier("grpc")))
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", func(context.Context) error { return nil })
	if err != nil || tl.Attributes["classifier_error"] == "" {
		t.Fatalf("err %v attrs %v", err, tl.Attributes)
	}
}

func TestGoKitEndpointAndMiddleware(t *testing.T) {
	e := NewExecutor(WithPolicy("kit.Op", policy.MaxAttempts(3), noWait()))
	var calls atomic.Int32
	var next kitep.Endpoint = func(ctx context.Context, req any) (any, error) {
		info, ok := endpoint.AttemptFromContext(ctx)
		if !ok || info.Key != "kit.Op" {
			t.Errorf("attempt info = %+v, %v", info, ok)
		}
		if calls.Add(1) < 2 {
			return nil, errFlaky
		}
		return req.(string) + "!", nil
	}
	ep := kitep.Chain(e.Middleware("kit.Op"))(next)
	resp, err := ep(context.Background(), "hi")
	if err != nil || resp != "hi!" || calls.Load() != 2 {
		t.Fatalf("resp %v err %v calls %d", resp, err, calls.Load())
	}
}

func TestDoValue(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Get", noWait()))
	var calls atomic.Int32
	v, tl, err := DoValueTimelineWith(context.Background(), e, "svc.Get", func(context.Context) (int, error) {
		if calls.Add(1) == 1 {
			return 0, errFlaky
		}
		return 7, nil
	})
	if v != 7 || err != nil || len(tl.Attempts) != 2 {
		t.Fatalf("v %d err %v tl %v", v, err, tl)
	}
}

func TestFacade(t *testing.T) {
	SetDefault(NewExecutor(WithPolicy("facade.Op", policy.MaxAttempts(2), noWait())))
	defer SetDefault(nil)
	var calls atomic.Int32
	if err := Do(context.Background(), "facade.Op", failTimes(1, &calls)); err != nil || calls.Load() != 2 {
		t.Fatalf("Do: %v after %d", err, calls.Load())
	}
	v, err := DoValue(context.Background(), "facade.Op", func(context.Context) (string, error) { return "x", nil })
	if v != "x" || err != nil {
		t.Fatalf("DoValue: %v %v", v, err)
	}
	tl, err := DoWithTimeline(context.Background(), "facade.Op", func(context.Context) error { return nil })
	if err != nil || tl.Key != "facade.Op" {
		t.Fatalf("DoWithTimeline: %v %v", tl, err)
	}
	_, tl, err = DoValueWithTimeline(context.Background(), "facade.Op", func(context.Context) (int, error) { return 1, nil })
	if err != nil || len(tl.Attempts) != 1 {
		t.Fatalf("DoValueWithTimeline: %v %v", tl, err)
	}
	if k := ParseKey("a.b.c"); k.Namespace != "a" || k.Name != "b.c" {
		t.Fatalf("ParseKey = %+v", k)
	}
}

func TestConcurrentCallersShareOneChainPerKey(t *testing.T) {
	e := NewExecutor(WithFallbackPolicy(noWait()))
	var wg sync.WaitGroup
	var calls atomic.Int32
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				key := fmt.Sprintf("svc.Op%d", i%8)
				if err := e.Do(context.Background(), key, func(context.Context) error { calls.Add(1); return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if calls.Load() != 32*50 || len(e.Keys()) != 8 {
		t.Fatalf("calls %d keys %v", calls.Load(), e.Keys())
	}
}

func TestDoSuccessPathAllocations(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Op", policy.MaxAttempts(3)))
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	_ = e.Do(ctx, "svc.Op", op)
	// One allocation: the attempt's context carrying endpoint.AttemptInfo.
	if n := testing.AllocsPerRun(200, func() { _ = e.Do(ctx, "svc.Op", op) }); n > 1 {
		t.Fatalf("allocs per call = %v, want ≤ 1", n)
	}
}

func TestInvalidPolicyIsReportedNotRun(t *testing.T) {
	e := NewExecutor(WithMissingPolicyMode(FailureDeny), WithPolicy("svc.Op", policy.Backoff(-time.Second, time.Second, 2)))
	err := e.Do(context.Background(), "svc.Op", func(context.Context) error { return nil })
	var fe *policy.FieldError
	if !errors.Is(err, ErrNoPolicy) || !errors.As(err, &fe) || fe.Key != "svc.Op" || fe.Field != "retry.initial_backoff" || fe.Value != "-1s" {
		t.Fatalf("err = %v", err)
	}
	// Fallback mode runs the call and says why in the timeline.
	e = NewExecutor(WithPolicy("svc.Op", policy.WithHedge(policy.HedgePolicy{Enabled: true, Quantile: 1.5})))
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", func(context.Context) error { return nil })
	if err != nil || !strings.Contains(tl.Attributes[timeline.AttrPolicyError], "hedge.quantile = 1.5") {
		t.Fatalf("err %v attrs %v", err, tl.Attributes)
	}
}

func TestZeroExecutorWorks(t *testing.T) {
	var e Executor
	var calls atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(1, &calls))
	if err != nil || calls.Load() != 2 || tl.Attributes[timeline.AttrPolicySource] != timeline.ReasonPolicyFallback {
		t.Fatalf("err %v calls %d attrs %v", err, calls.Load(), tl.Attributes)
	}
	c, err := e.Explain(context.Background(), "svc.Op")
	if err != nil || c.Policy.Retry.MaxAttempts != 3 /* the default */ || c.Policy.Retry.Jitter != policy.JitterFull {
		t.Fatalf("zero executor policy %+v, %v", c.Policy.Retry, err)
	}
}

func TestFullChainSuccessPathAllocations(t *testing.T) {
	e := NewExecutor(WithBudget("retries", middleware.NewTokenBucketBudget(100, 10)), WithPolicy("svc.Full",
		policy.OverallTimeout(5*time.Second), policy.TimeoutPerAttempt(time.Second),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true}),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Second}),
		policy.WithBudget("retries")))
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	_ = e.Do(ctx, "svc.Full", op)
	// DESIGN's budget: ≤ 8 with no timeline captured (4 measured: the
	// attempt's context, two lazy deadline contexts, the primary try's).
	if n := testing.AllocsPerRun(500, func() { _ = e.Do(ctx, "svc.Full", op) }); n > 8 {
		t.Fatalf("allocs per call = %v, want ≤ 8", n)
	}
}
