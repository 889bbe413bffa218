package ctxattack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// TestConcurrentArming: many goroutines arm and read the op's context at
// once, around its expiry: one Done channel, consistent Err/Cause.
func TestConcurrentArming(t *testing.T) {
	for _, p := range perAttemptShapes(2 * time.Millisecond) {
		if p.overall > 0 {
			p.overall = 500 * time.Millisecond
		}
		t.Run(p.name, func(t *testing.T) {
			for iter := 0; iter < 10; iter++ {
				e, _ := newExec(p, 1)
				runIn(t, e, context.Background(), p, func(ctx context.Context) error {
					const n = 8
					chans := make([]<-chan struct{}, n)
					var wg sync.WaitGroup
					start := make(chan struct{})
					for i := 0; i < n; i++ {
						wg.Add(1)
						go func(i int) {
							defer wg.Done()
							<-start
							switch i % 4 {
							case 0:
								chans[i] = ctx.Done()
							case 1:
								c, cc := context.WithCancel(ctx)
								defer cc()
								chans[i] = ctx.Done()
								<-c.Done()
							case 2:
								for ctx.Err() == nil {
								}
								chans[i] = ctx.Done()
								if context.Cause(ctx) == nil {
									t.Errorf("Err %v Cause nil", ctx.Err())
								}
							case 3:
								fired := make(chan struct{})
								context.AfterFunc(ctx, func() { close(fired) })
								chans[i] = ctx.Done()
								<-fired
							}
						}(i)
					}
					close(start)
					wg.Wait()
					for i := 1; i < n; i++ {
						if chans[i] != chans[0] {
							t.Fatalf("Done() returned different channels to concurrent callers (%d vs 0)", i)
						}
					}
					if d1, d2 := ctx.Done(), ctx.Done(); d1 != d2 {
						t.Errorf("Done() not stable")
					}
					if !isDone(ctx) || context.Cause(ctx) != errAT {
						t.Errorf("after expiry: done %v cause %v", isDone(ctx), context.Cause(ctx))
					}
					return ctx.Err()
				})
			}
		})
	}
}

// TestEqualTimeouts: per-attempt == overall. The per-attempt deadline starts
// later, so the overall deadline cuts the try: an abort, not retried.
// Near-ties are checked against each try's actual deadline.
func TestEqualAndNearTimeouts(t *testing.T) {
	for i := 0; i < 24; i++ {
		pa := time.Duration(8+i%5) * time.Millisecond // 8..12ms vs overall 10ms
		ov := 10 * time.Millisecond
		obs := newRecObs()
		e := recourse.NewExecutor(
			recourse.WithPolicy(testKey, basePol(3, policy.TimeoutPerAttempt(pa), policy.OverallTimeout(ov), breakerOpt(100))...),
			recourse.WithObserver(obs),
		)
		_ = e.Do(context.Background(), testKey, func(context.Context) error { return nil }) // compile the key first
		var dls []time.Time
		var causes []error
		var ovDL time.Time
		start := time.Now()
		_ = e.Do(context.Background(), testKey, func(ctx context.Context) error {
			dl, _ := ctx.Deadline()
			dls = append(dls, dl)
			<-ctx.Done()
			causes = append(causes, context.Cause(ctx))
			return ctx.Err()
		})
		ovDL = start.Add(ov)
		rs := obs.get(testKey)[1:] // after the warm-up's record
		if len(rs) != len(dls) {
			t.Fatalf("pa=%v: %d records, %d tries", pa, len(rs), len(dls))
		}
		for j, r := range rs {
			gap := ovDL.Sub(dls[j]) // >0: the try's deadline is before the overall one
			if pa >= ov && dls[j].After(ovDL.Add(2*time.Millisecond)) {
				t.Errorf("pa=%v try %d: deadline %v after the overall deadline %v", pa, j+1, dls[j], ovDL)
			}
			switch {
			case pa >= ov:
				if r.Outcome != timeline.OutcomeAbort || causes[j] == errAT {
					t.Errorf("pa=%v try %d: overall deadline cut it, record %s cause %v", pa, j+1, fmtRecs(rs), causes[j])
				}
			case gap > 2*time.Millisecond:
				if r.Outcome != timeline.OutcomeRetryable || causes[j] != errAT {
					t.Errorf("pa=%v try %d: own deadline %v earlier, record %s cause %v", pa, j+1, gap, fmtRecs(rs), causes[j])
				}
			}
		}
	}
}

// TestCallerTimeoutCause: a caller deadline with a custom cause, earlier than
// the per-attempt one: the op sees the caller's cause, the try aborts.
func TestCallerTimeoutCause(t *testing.T) {
	for _, p := range shapes(time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, obs := newExec(p, 3)
			myCause := errors.New("caller budget spent")
			parent, cancel := context.WithTimeoutCause(context.Background(), 15*time.Millisecond, myCause)
			defer cancel()
			_, ran := tryRunIn(e, parent, p, func(ctx context.Context) error {
				<-ctx.Done()
				if ctx.Err() != context.DeadlineExceeded {
					t.Errorf("Err %v", ctx.Err())
				}
				if c := context.Cause(ctx); !hedgeCauseOK(p, c, myCause) {
					t.Errorf("Cause %v, want the caller's %v", c, myCause)
				}
				return ctx.Err()
			})
			if !ran && !p.hedged { // a hedge may not start before a loaded machine reaches the deadline
				t.Errorf("op never ran")
			}
			for _, r := range obs.get(testKey) {
				if r.Outcome == timeline.OutcomeRetryable {
					t.Errorf("caller deadline classified retryable: %s", fmtRecs(obs.get(testKey)))
				}
			}
		})
	}
}

// TestNestedCutDuringInnerBackoff: B fails fast and would back off past A's
// per-attempt deadline: no B try starts after A's deadline.
func TestNestedCutDuringInnerBackoff(t *testing.T) {
	for _, bPA := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint(bPA), func(t *testing.T) {
			opts := []policy.Option{policy.MaxAttempts(5), policy.Backoff(4*time.Millisecond, 4*time.Millisecond, 1), policy.Jitter(policy.JitterNone), breakerOpt(100)}
			if bPA > 0 {
				opts = append(opts, policy.TimeoutPerAttempt(bPA))
			}
			obs := newRecObs()
			e := recourse.NewExecutor(
				recourse.WithPolicy("n.A", basePol(1, policy.TimeoutPerAttempt(10*time.Millisecond))...),
				recourse.WithPolicy("n.B", opts...),
				recourse.WithObserver(obs),
			)
			var late atomic.Int32
			var aDL time.Time
			start := time.Now()
			_ = e.Do(context.Background(), "n.A", func(ctx context.Context) error {
				aDL, _ = ctx.Deadline()
				return e.Do(ctx, "n.B", func(ctx context.Context) error {
					// A backoff timer may wake a little late (timer slack on a
					// loaded machine) and the armed deadline's timer likewise,
					// exactly as with context.WithDeadline: tolerate 3ms.
					if time.Since(aDL) > 3*time.Millisecond {
						late.Add(1)
					}
					return errors.New("fast failure")
				})
			})
			if late.Load() > 0 {
				t.Errorf("%d B tries started after A's deadline: %s", late.Load(), fmtRecs(obs.get("n.B")))
			}
			if el := time.Since(start); el > 60*time.Millisecond {
				t.Errorf("call took %v with A's 10ms per-attempt deadline", el)
			}
		})
	}
}
