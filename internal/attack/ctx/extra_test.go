package ctxattack

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// TestCallerAlreadyDone: the caller's context is done before the call (a
// deadline in the past, now, or cancelled with a cause). If the op runs, its
// context is done with the caller's Err and Cause — never an attempt timeout —
// and nothing is retried.
func TestCallerAlreadyDone(t *testing.T) {
	cause := errors.New("gone")
	mk := map[string]func() (context.Context, func(), error, error){
		"deadlinePast": func() (context.Context, func(), error, error) {
			c, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
			return c, cancel, context.DeadlineExceeded, context.DeadlineExceeded
		},
		"deadlineNow": func() (context.Context, func(), error, error) {
			c, cancel := context.WithDeadline(context.Background(), time.Now())
			return c, cancel, context.DeadlineExceeded, context.DeadlineExceeded
		},
		"cancelCause": func() (context.Context, func(), error, error) {
			c, cancel := context.WithCancelCause(context.Background())
			cancel(cause)
			return c, func() {}, context.Canceled, cause
		},
		"timeoutCause": func() (context.Context, func(), error, error) {
			c, cancel := context.WithTimeoutCause(context.Background(), 0, cause)
			return c, cancel, context.DeadlineExceeded, cause
		},
	}
	for _, p := range shapes(time.Millisecond) {
		for name, f := range mk {
			t.Run(p.name+"/"+name, func(t *testing.T) {
				e, obs := newExec(p, 3)
				parent, cleanup, wantErr, wantCause := f()
				defer cleanup()
				var runs atomic.Int32
				_ = e.Do(parent, testKey, func(ctx context.Context) error {
					runs.Add(1)
					if ctx.Err() != wantErr || context.Cause(ctx) != wantCause || !isDone(ctx) {
						t.Errorf("op ctx: Err %v Cause %v done %v; want %v / %v", ctx.Err(), context.Cause(ctx), isDone(ctx), wantErr, wantCause)
					}
					return ctx.Err()
				})
				if runs.Load() > 1 {
					t.Errorf("op ran %d times with a done caller: %s", runs.Load(), fmtRecs(obs.get(testKey)))
				}
				for _, r := range obs.get(testKey) {
					if r.Outcome == timeline.OutcomeRetryable {
						t.Errorf("retryable record with a done caller: %s", fmtRecs(obs.get(testKey)))
					}
				}
			})
		}
	}
}

// TestNestedOuterExpiredBeforeInnerStarts: A's per-attempt deadline passes
// while A's op does not look at its context; then it calls B with it. B must
// not count this as its own timeout.
func TestNestedOuterExpiredBeforeInnerStarts(t *testing.T) {
	for _, bOpts := range [][]policy.Option{nil, {policy.TimeoutPerAttempt(time.Second)}, {policy.TimeoutPerAttempt(time.Millisecond)}, {hedgeOpt(), policy.OverallTimeout(time.Second)}} {
		obs := newRecObs()
		e := recourse.NewExecutor(
			recourse.WithPolicy("n.A", basePol(1, policy.TimeoutPerAttempt(3*time.Millisecond))...),
			recourse.WithPolicy("n.B", basePol(3, append(bOpts, breakerOpt(1))...)...),
			recourse.WithObserver(obs),
		)
		var bRuns atomic.Int32
		_ = e.Do(context.Background(), "n.A", func(ctx context.Context) error {
			dl, _ := ctx.Deadline()
			time.Sleep(time.Until(dl) + 2*time.Millisecond) // expire unarmed
			return e.Do(ctx, "n.B", func(ctx context.Context) error {
				bRuns.Add(1)
				if context.Cause(ctx) != errAT || ctx.Err() != context.DeadlineExceeded {
					t.Errorf("B op ctx: Err %v Cause %v", ctx.Err(), context.Cause(ctx))
				}
				return ctx.Err()
			})
		})
		if bRuns.Load() > 1 {
			t.Errorf("B ran %d times under an expired caller", bRuns.Load())
		}
		for _, r := range obs.get("n.B") {
			if r.Outcome == timeline.OutcomeRetryable {
				t.Errorf("B record retryable: %s", fmtRecs(obs.get("n.B")))
			}
		}
		expectBreakerClosed(t, e, "n.B")
	}
}

// TestNestedWithStoredContext: a context kept from A's try is used for B
// after A returned: B must see a done caller (abort, no retry, no breaker).
func TestNestedWithStoredContext(t *testing.T) {
	for _, aOpts := range [][]policy.Option{{policy.TimeoutPerAttempt(time.Second)}, {policy.OverallTimeout(time.Second)}, {hedgeOpt(), policy.TimeoutPerAttempt(time.Second)}} {
		obs := newRecObs()
		e := recourse.NewExecutor(
			recourse.WithPolicy("n.A", basePol(1, aOpts...)...),
			recourse.WithPolicy("n.B", basePol(3, policy.TimeoutPerAttempt(time.Second), breakerOpt(1))...),
			recourse.WithObserver(obs),
		)
		var stored context.Context
		_ = e.Do(context.Background(), "n.A", func(ctx context.Context) error { stored = ctx; return nil })
		var bRuns atomic.Int32
		_ = e.Do(stored, "n.B", func(ctx context.Context) error {
			bRuns.Add(1)
			return ctx.Err()
		})
		if bRuns.Load() > 1 {
			t.Errorf("B ran %d times with A's finished try context", bRuns.Load())
		}
		for _, r := range obs.get("n.B") {
			if r.Outcome == timeline.OutcomeRetryable || r.Outcome == timeline.OutcomeSuccess {
				t.Errorf("B record %s with a done caller", fmtRecs(obs.get("n.B")))
			}
		}
		expectBreakerClosed(t, e, "n.B")
	}
}

// TestOpOwnDeadlineErrorIsNotAbort: an op that returns context.DeadlineExceeded
// from a deadline of its own (its try context still live) failed like any
// other error: the default classifier calls it retryable.
func TestOpOwnDeadlineErrorIsNotAbort(t *testing.T) {
	for _, p := range shapes(time.Second) {
		if p.hedged {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			e, obs := newExec(p, 3)
			var runs atomic.Int32
			_ = e.Do(context.Background(), testKey, func(ctx context.Context) error {
				runs.Add(1)
				c, cancel := context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
				<-c.Done()
				if ctx.Err() != nil {
					t.Fatalf("try ctx done")
				}
				return c.Err()
			})
			if runs.Load() != 3 {
				t.Errorf("op's own DeadlineExceeded (try ctx live) not retried: %d runs %s", runs.Load(), fmtRecs(obs.get(testKey)))
			}
			for _, r := range obs.get(testKey) {
				if r.Outcome != timeline.OutcomeRetryable {
					t.Errorf("record %s, want retryable", fmtRecs([]timeline.AttemptRecord{r}))
				}
			}
		})
	}
}

// TestCallReturnsNearDeadline: ops that honour their context end the call
// within a little of its deadline, for every shape.
func TestCallReturnsNearDeadline(t *testing.T) {
	for _, p := range shapes(10 * time.Millisecond) {
		if p.perAttempt == 0 && p.overall == 0 {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 3)
			parent, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
			defer cancel()
			start := time.Now()
			_ = e.Do(parent, testKey, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
			if el := time.Since(start); el > 25*time.Millisecond+50*time.Millisecond {
				t.Errorf("call took %v with a 25ms caller deadline", el)
			}
		})
	}
}
