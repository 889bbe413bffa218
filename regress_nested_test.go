package recourse

// Regression tests for nested calls: a call (key B) made inside another
// call's try (key A). Whatever ends A's try is, for B, the caller's doing.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func TestRegressNestedCallCutByOuterAttemptDeadline(t *testing.T) {
	innerTimeouts := map[string]time.Duration{
		"inner has its own per-attempt timeout": time.Hour,
		"inner has none":                        0,
	}
	for name, innerTimeout := range innerTimeouts {
		t.Run(name, func(t *testing.T) {
			breaker := policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Hour, HalfOpenProbes: 1}
			e := NewExecutor(
				WithPolicy("svc.A", policy.MaxAttempts(2), noWait(), policy.TimeoutPerAttempt(20*time.Millisecond)),
				WithPolicy("svc.B", policy.MaxAttempts(3), noWait(), policy.TimeoutPerAttempt(innerTimeout),
					policy.WithCircuitBreaker(breaker)),
			)
			var innerTries atomic.Int32
			var inner []*timeline.Timeline
			outer, err := e.DoWithTimeline(context.Background(), "svc.A", func(ctx context.Context) error {
				tl, err := e.DoWithTimeline(ctx, "svc.B", func(ctx context.Context) error {
					innerTries.Add(1)
					<-ctx.Done() // hangs until A's try is cut
					return context.Cause(ctx)
				})
				inner = append(inner, tl)
				return err
			})
			if err == nil {
				t.Fatal("outer call succeeded")
			}
			// A: two tries, both its own timeouts (retryable).
			if len(outer.Attempts) != 2 {
				t.Fatalf("outer attempts %d, want 2", len(outer.Attempts))
			}
			for _, a := range outer.Attempts {
				if a.Outcome != timeline.OutcomeRetryable || a.Reason != timeline.ReasonTimeout {
					t.Errorf("outer try %d: %v/%s, want retryable/timeout", a.Attempt, a.Outcome, a.Reason)
				}
			}
			// B: one try per A try, each an abort: the caller's deadline.
			if n := innerTries.Load(); n != 2 {
				t.Errorf("inner tries %d, want 2 (one per outer try, no inner retries)", n)
			}
			for i, tl := range inner {
				if len(tl.Attempts) != 1 {
					t.Errorf("inner call %d: %d attempts, want 1", i, len(tl.Attempts))
					continue
				}
				if a := tl.Attempts[0]; a.Outcome != timeline.OutcomeAbort {
					t.Errorf("inner call %d: %v/%s, want abort", i, a.Outcome, a.Reason)
				}
			}
			// B's breaker did not count it: still closed with a one-failure trip.
			if s := e.Breaker("svc.B").State(); s != endpoint.BreakerClosed {
				t.Errorf("inner breaker %v, want closed", s)
			}
		})
	}
}

func TestRegressNestedCallOwnAttemptDeadlineIsItsTimeout(t *testing.T) {
	// Only B's own per-attempt deadline is a B timeout (retryable).
	e := NewExecutor(
		WithPolicy("svc.A", policy.MaxAttempts(1), policy.TimeoutPerAttempt(time.Hour)),
		WithPolicy("svc.B", policy.MaxAttempts(2), noWait(), policy.TimeoutPerAttempt(5*time.Millisecond)),
	)
	var inner *timeline.Timeline
	_, _ = e.DoWithTimeline(context.Background(), "svc.A", func(ctx context.Context) error {
		var err error
		inner, err = e.DoWithTimeline(ctx, "svc.B", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		return err
	})
	if len(inner.Attempts) != 2 {
		t.Fatalf("inner attempts %d, want 2", len(inner.Attempts))
	}
	for _, a := range inner.Attempts {
		if a.Outcome != timeline.OutcomeRetryable || a.Reason != timeline.ReasonTimeout {
			t.Errorf("inner try %d: %v/%s, want retryable/timeout", a.Attempt, a.Outcome, a.Reason)
		}
		if !errors.Is(a.Err, middleware.ErrAttemptTimeout) {
			t.Errorf("inner try %d: err %v does not wrap ErrAttemptTimeout", a.Attempt, a.Err)
		}
	}
}
