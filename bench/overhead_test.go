package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

var errDown = errors.New("dependency down")

// The operation under test does nothing: what is measured is the toolkit.
func ok(context.Context) error   { return nil }
func fail(context.Context) error { return errDown }

// waits is an operation that looks at its context the way a network call
// does (it selects on Done), which arms every deadline above it.
func waits(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

// Policies: the same envelope expressed in both libraries.
const (
	attempts       = 3
	breakerTrip    = 1 << 20 // never trips during a benchmark
	hedgeDelay     = time.Second
	attemptTimeout = time.Second
	overallTimeout = 5 * time.Second
)

func recourseExec(opts ...policy.Option) *recourse.Executor {
	return recourse.NewExecutor(
		recourse.WithBudget("retries", middleware.NewTokenBucketBudget(1000, 100)),
		recourse.WithPolicy("bench.Op", opts...))
}

var (
	retryOnly           = []policy.Option{policy.MaxAttempts(attempts)}
	retryBreakerTimeout = []policy.Option{policy.MaxAttempts(attempts),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: breakerTrip}),
		policy.TimeoutPerAttempt(attemptTimeout)}
	fullChain = []policy.Option{policy.MaxAttempts(attempts),
		policy.OverallTimeout(overallTimeout),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: breakerTrip}),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: hedgeDelay}),
		policy.WithBudget("retries"),
		policy.TimeoutPerAttempt(attemptTimeout)}
)

func fsRetry() retrypolicy.RetryPolicy[any] {
	return retrypolicy.NewBuilder[any]().WithMaxAttempts(attempts).WithDelay(0).Build()
}

func fsBreaker() circuitbreaker.CircuitBreaker[any] {
	return circuitbreaker.NewBuilder[any]().WithFailureThreshold(breakerTrip).Build()
}

func failsafeExec(kind string) failsafe.Executor[any] {
	switch kind {
	case "retry":
		return failsafe.With[any](fsRetry())
	case "retry_breaker_timeout":
		return failsafe.With[any](fsRetry(), fsBreaker(), timeout.New[any](attemptTimeout))
	default: // full
		return failsafe.With[any](timeout.New[any](overallTimeout), fsRetry(), fsBreaker(),
			hedgepolicy.NewWithDelay[any](hedgeDelay), timeout.New[any](attemptTimeout))
	}
}

// runFailsafe makes one call the way a failsafe-go user passes a context
// and an operation that honours the per-attempt context.
func runFailsafe(ex failsafe.Executor[any], ctx context.Context, op func(context.Context) error) error {
	return ex.WithContext(ctx).RunWithExecution(func(e failsafe.Execution[any]) error { return op(e.Context()) })
}

func benchRecourse(b *testing.B, e *recourse.Executor, op func(context.Context) error, capture bool) {
	benchRecourseCtx(b, context.Background(), e, op, capture)
}

func benchRecourseCtx(b *testing.B, ctx context.Context, e *recourse.Executor, op func(context.Context) error, capture bool) {
	_ = e.Do(ctx, "bench.Op", op) // compile the key's chain outside the loop
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := ctx
		if capture {
			c, _ = timeline.Record(ctx)
		}
		_ = e.Do(c, "bench.Op", op)
	}
}

func benchFailsafe(b *testing.B, ex failsafe.Executor[any], op func(context.Context) error) {
	benchFailsafeCtx(b, context.Background(), ex, op)
}

func benchFailsafeCtx(b *testing.B, ctx context.Context, ex failsafe.Executor[any], op func(context.Context) error) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = runFailsafe(ex, ctx, op)
	}
}

// BenchmarkSuccess is the success path: the operation succeeds at once.
func BenchmarkSuccess(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = ok(ctx)
		}
	})
	for _, c := range []struct {
		name string
		opts []policy.Option
	}{
		{"retry", retryOnly},
		{"retry_breaker_timeout", retryBreakerTimeout},
		{"full", fullChain},
	} {
		b.Run(c.name+"/recourse", func(b *testing.B) { benchRecourse(b, recourseExec(c.opts...), ok, false) })
		b.Run(c.name+"/failsafe", func(b *testing.B) { benchFailsafe(b, failsafeExec(c.name), ok) })
	}
	b.Run("full_timeline/recourse", func(b *testing.B) { benchRecourse(b, recourseExec(fullChain...), ok, true) })
	// A caller whose context can end (a request's) makes each deadline keep
	// a bare timer; an operation that waits on its context (any network
	// call) arms every deadline into a standard context.
	caller, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run("full_cancellable_caller/recourse", func(b *testing.B) { benchRecourseCtx(b, caller, recourseExec(fullChain...), ok, false) })
	b.Run("full_cancellable_caller/failsafe", func(b *testing.B) { benchFailsafeCtx(b, caller, failsafeExec("full"), ok) })
	b.Run("full_op_waits/recourse", func(b *testing.B) { benchRecourseCtx(b, caller, recourseExec(fullChain...), waits, false) })
	b.Run("full_op_waits/failsafe", func(b *testing.B) { benchFailsafeCtx(b, caller, failsafeExec("full"), waits) })
}

// BenchmarkFailure is the failing path: 3 attempts that all fail, no wait
// between them. Policies clamp backoff to ≥ 1ms, so recourse's side is
// built from its decorators with a zero backoff, as failsafe's is.
func BenchmarkFailure(b *testing.B) {
	b.Run("retry/recourse", func(b *testing.B) {
		ep := endpoint.Chain(
			middleware.Observe("bench.Op"),
			middleware.Retry(middleware.MaxAttempts(attempts), middleware.WithBackoff(middleware.BackoffConfig{Multiplier: 1})),
			middleware.Classify(nil),
		)(endpoint.FromErrFunc(fail))
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = ep(ctx, nil)
		}
	})
	b.Run("retry/failsafe", func(b *testing.B) { benchFailsafe(b, failsafeExec("retry"), fail) })
}

// BenchmarkParallel runs the full chain from every P at once, on one key:
// the per-key cache and the breaker and budget state must not serialise
// callers.
func BenchmarkParallel(b *testing.B) {
	b.Run("full/recourse", func(b *testing.B) { parallelRecourse(b, recourseExec(fullChain...)) })
	b.Run("full/failsafe", func(b *testing.B) {
		ex := failsafeExec("full")
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = runFailsafe(ex, ctx, ok)
			}
		})
	})
	b.Run("retry/recourse", func(b *testing.B) { parallelRecourse(b, recourseExec(retryOnly...)) })
}

func parallelRecourse(b *testing.B, e *recourse.Executor) {
	ctx := context.Background()
	_ = e.Do(ctx, "bench.Op", ok) // compile the key's chain first
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = e.Do(ctx, "bench.Op", ok)
		}
	})
}
