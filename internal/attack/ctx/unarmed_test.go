package ctxattack

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// An op that does not look at its context while it works (blocking I/O
// without a context, a CPU loop) and only checks it — or just returns an
// error — after its per-attempt deadline has passed. The caller cancelled
// earlier, before that deadline. With context.WithTimeout the caller's
// cancellation reaches the try's context at once: Err is Canceled with the
// caller's cause, and the try is the caller's cancellation (abort
// "canceled", not counted by the breaker).

// TestUnarmedCallerCancelBeforeOwnDeadline: what the op sees.
func TestUnarmedCallerCancelBeforeOwnDeadline(t *testing.T) {
	for _, p := range []pol{
		{name: "perAttempt", perAttempt: 10 * time.Millisecond},
		{name: "both", perAttempt: 10 * time.Millisecond, overall: time.Second},
		{name: "overall", overall: 10 * time.Millisecond},
	} {
		for _, look := range []string{"Err", "Cause", "Done"} {
			t.Run(p.name+"/"+look, func(t *testing.T) {
				e, _ := newExec(p, 1)
				parent, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				cause := errors.New("caller gave up")
				late := false
				defer func() {
					if late {
						t.Skip("machine too loaded: the caller's cancel came after the try's deadline")
					}
				}()
				runIn(t, e, parent, p, func(ctx context.Context) error {
					time.Sleep(2 * time.Millisecond)
					cancel(cause) // before the try's 10ms deadline
					if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
						late = true
						return nil
					}
					time.Sleep(12 * time.Millisecond) // work that ignores ctx, past the deadline
					var err, c error
					switch look {
					case "Err":
						err, c = ctx.Err(), context.Cause(ctx)
					case "Cause":
						c, err = context.Cause(ctx), ctx.Err()
					case "Done":
						<-ctx.Done()
						err, c = ctx.Err(), context.Cause(ctx)
					}
					if err != context.Canceled || c != cause {
						t.Errorf("after the caller cancelled at 2ms (deadline 10ms), looked at 14ms: Err %v Cause %v; context.WithTimeout gives Canceled / %v", err, c, cause)
					}
					return err
				})
			})
		}
	}
}

// TestUnarmedCallerCancelVerdict: the same try's verdict and breaker.
func TestUnarmedCallerCancelVerdict(t *testing.T) {
	for _, c := range []struct {
		retErr string
		opt    policy.Option
	}{
		{"ownError", policy.TimeoutPerAttempt(10 * time.Millisecond)},
		{"ctxErr", policy.TimeoutPerAttempt(10 * time.Millisecond)},
		{"ownError/overall", policy.OverallTimeout(10 * time.Millisecond)},
	} {
		retErr := c.retErr
		t.Run(retErr, func(t *testing.T) {
			obs := newRecObs()
			e := recourse.NewExecutor(
				recourse.WithPolicy(testKey, basePol(3, c.opt, breakerOpt(1))...),
				recourse.WithObserver(obs),
			)
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			var runs atomic.Int32
			_ = e.Do(parent, testKey, func(ctx context.Context) error {
				runs.Add(1)
				time.Sleep(2 * time.Millisecond)
				cancel()
				time.Sleep(12 * time.Millisecond) // ignores ctx
				if retErr == "ctxErr" {
					return ctx.Err()
				}
				return errors.New("blocking call failed")
			})
			for _, r := range obs.get(testKey) {
				if r.Outcome != timeline.OutcomeAbort || r.Reason != "canceled" {
					t.Errorf("record %s, want abort \"canceled\" (the caller cancelled at 2ms, deadline 10ms)", fmtRecs([]timeline.AttemptRecord{r}))
				}
			}
			if s := e.Breaker(testKey).State(); s != endpoint.BreakerClosed {
				t.Errorf("breaker %v: the caller's cancellation was counted as a failure", s)
			}
			if runs.Load() != 1 {
				t.Errorf("runs %d", runs.Load())
			}
		})
	}
}

// TestNestedUnarmedOuterCancel: B inside A's try; A's caller cancels before
// B's own per-attempt deadline; B's op ignores its ctx until after that
// deadline. For B it is the caller's cancellation.
func TestNestedUnarmedOuterCancel(t *testing.T) {
	for _, aOpts := range [][]policy.Option{{policy.TimeoutPerAttempt(time.Second)}, {policy.OverallTimeout(time.Second)}} {
		t.Run(fmt.Sprint(aOpts != nil), func(t *testing.T) {
			obs := newRecObs()
			e := recourse.NewExecutor(
				recourse.WithPolicy("n.A", basePol(1, aOpts...)...),
				recourse.WithPolicy("n.B", basePol(3, policy.TimeoutPerAttempt(10*time.Millisecond), breakerOpt(1))...),
				recourse.WithObserver(obs),
			)
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			_ = e.Do(parent, "n.A", func(ctx context.Context) error {
				return e.Do(ctx, "n.B", func(ctx context.Context) error {
					time.Sleep(2 * time.Millisecond)
					cancel()
					time.Sleep(12 * time.Millisecond)
					return errors.New("blocking call failed")
				})
			})
			expectAllAbort(t, obs, "n.B", "canceled", 1)
			expectBreakerClosed(t, e, "n.B")
		})
	}
}

// TestUnarmedOuterDeadlineFirst: the outer deadline (earlier) and the
// try's own both passed while the op did not look: the earlier one wins
// (this is what the lazy context claims to handle).
func TestUnarmedOuterDeadlineFirst(t *testing.T) {
	obs := newRecObs()
	e := recourse.NewExecutor(
		recourse.WithPolicy("n.A", basePol(1, policy.TimeoutPerAttempt(8*time.Millisecond))...),
		recourse.WithPolicy("n.B", basePol(3, policy.TimeoutPerAttempt(12*time.Millisecond), breakerOpt(1))...),
		recourse.WithObserver(obs),
	)
	_ = e.Do(context.Background(), "n.A", func(ctx context.Context) error {
		return e.Do(ctx, "n.B", func(ctx context.Context) error {
			time.Sleep(16 * time.Millisecond)
			if c := context.Cause(ctx); c != errAT || ctx.Err() != context.DeadlineExceeded {
				t.Errorf("B ctx: Err %v Cause %v", ctx.Err(), c)
			}
			return errors.New("slow")
		})
	})
	expectAllAbort(t, obs, "n.B", "timeout", 1)
	expectBreakerClosed(t, e, "n.B")
	for _, r := range obs.get("n.A") {
		if r.Outcome != timeline.OutcomeRetryable || r.Reason != "timeout" {
			t.Errorf("A record %s", fmtRecs(obs.get("n.A")))
		}
	}
}
