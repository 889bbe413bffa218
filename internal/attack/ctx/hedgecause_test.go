package ctxattack

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestHedgeTryKeepsCallerCause: the caller cancels with a cause while a
// hedge race runs. With the standard library, every descendant of the
// caller's context reports that cause. Here the primary try aborts on the
// same cancellation and the race may cancel the other tries first with a
// bare cancel, so a hedge try can report context.Canceled instead.
func TestHedgeTryKeepsCallerCause(t *testing.T) {
	for _, p := range []pol{
		{name: "hedgedOnly", hedged: true},
		{name: "hedgedPerAttempt", perAttempt: time.Second, hedged: true},
		{name: "hedgedBoth", perAttempt: time.Second, overall: 2 * time.Second, hedged: true},
	} {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			bad := 0
			const n = 200
			for i := 0; i < n; i++ {
				parent, cancel := context.WithCancelCause(context.Background())
				cause := errors.New("caller cause")
				var got error
				runIn(t, e, parent, p, func(ctx context.Context) error {
					c1, cc1 := context.WithCancel(ctx)
					defer cc1()
					stop := context.AfterFunc(ctx, func() {})
					defer stop()
					_ = c1
					cancel(cause)
					<-ctx.Done()
					got = context.Cause(ctx)
					return ctx.Err()
				})
				if got != cause {
					bad++
					t.Logf("iteration %d: Cause(hedge try ctx) = %v", i, got)
				}
				cancel(nil)
			}
			if bad > 0 {
				t.Errorf("%d/%d hedge tries lost the caller's cause", bad, n)
			}
		})
	}
}

// hedgeCauseOK accepts the caller's cause, or (for hedged shapes only) the
// bare Canceled of TestHedgeTryKeepsCallerCause's defect, so that the other
// tests stay deterministic.
func hedgeCauseOK(p pol, got, want error) bool {
	return got == want || (p.hedged && got == context.Canceled)
}
