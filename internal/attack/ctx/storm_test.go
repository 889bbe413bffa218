package ctxattack

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

// TestCancelWhenTimerFires: the caller is cancelled (or its deadline
// passes) at the moment the per-attempt timer fires. Whoever wins, Err and
// Cause agree, and neither changes afterwards.
func TestCancelWhenTimerFires(t *testing.T) {
	for _, p := range perAttemptShapes(2 * time.Millisecond) {
		if p.overall > 0 {
			p.overall = 500 * time.Millisecond
		}
		for _, mode := range []string{"cancel", "deadline"} {
			t.Run(p.name+"/"+mode, func(t *testing.T) {
				var wins [2]int
				for i := 0; i < 25; i++ {
					e, obs := newExec(p, 3)
					cause := errors.New("caller")
					var parent context.Context
					var stop func()
					// The op's timer starts a little after Do; offset the
					// caller's by a varying amount around it.
					off := time.Duration(rand.Intn(1500)) * time.Microsecond
					if mode == "cancel" {
						c, cancel := context.WithCancelCause(context.Background())
						tm := time.AfterFunc(p.perAttempt+off, func() { cancel(cause) })
						parent, stop = c, func() { tm.Stop(); cancel(nil) }
					} else {
						c, cancel := context.WithTimeout(context.Background(), p.perAttempt+off)
						parent, stop, cause = c, cancel, context.DeadlineExceeded
					}
					start := time.Now()
					var first error
					_, ran := tryRunIn(e, parent, p, func(ctx context.Context) error {
						<-ctx.Done()
						err1, c1 := ctx.Err(), context.Cause(ctx)
						first = c1
						switch c1 {
						case errAT:
							wins[0]++
							if err1 != context.DeadlineExceeded {
								t.Errorf("cause ErrAttemptTimeout with Err %v", err1)
							}
						case cause:
							wins[1]++
							if mode == "cancel" && err1 != context.Canceled {
								t.Errorf("caller cause with Err %v", err1)
							}
						default:
							if p.hedged && c1 == context.Canceled { // see TestHedgeTryKeepsCallerCause
								wins[1]++
								break
							}
							t.Errorf("Cause %v (Err %v): neither the attempt timeout nor the caller's", c1, err1)
						}
						<-parent.Done()
						time.Sleep(time.Millisecond)
						if c2 := context.Cause(ctx); c2 != c1 || ctx.Err() != err1 {
							t.Errorf("cause/err changed after the other fired: %v/%v -> %v/%v", c1, err1, c2, ctx.Err())
						}
						return ctx.Err()
					})
					if el := time.Since(start); el > 300*time.Millisecond {
						t.Errorf("call took %v", el)
					}
					if !ran { // hedged: the caller's deadline came before the hedge
						stop()
						continue
					}
					rs := obs.get(testKey)
					if len(rs) == 0 {
						t.Fatalf("no records")
					}
					if first == cause {
						// The caller won: the try must not be retried.
						for _, r := range rs {
							if r.Attempt > 1 {
								t.Errorf("retried after the caller's %s: %s", mode, fmtRecs(rs))
							}
						}
					}
					stop()
				}
				t.Logf("attempt timer won %d, caller won %d", wins[0], wins[1])
			})
		}
	}
}

// TestCancelStorm: many concurrent calls on one key, callers cancelled at
// random moments by several goroutines at once; ops build children and
// spawn goroutines waiting on their context.
func TestCancelStorm(t *testing.T) {
	for _, p := range []pol{
		{name: "breakerHedgedBoth", perAttempt: 3 * time.Millisecond, overall: 10 * time.Millisecond, hedged: true, breaker: true},
		{name: "both", perAttempt: 2 * time.Millisecond, overall: 8 * time.Millisecond},
		{name: "hedgedOnly", hedged: true},
	} {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 3)
			var wg, spawned sync.WaitGroup
			var stuck atomic.Int32
			for i := 0; i < 150; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					parent, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					r := rand.New(rand.NewSource(int64(i)))
					for j := 0; j < 3; j++ {
						d := time.Duration(r.Intn(4000)) * time.Microsecond
						tm := time.AfterFunc(d, func() { cancel(fmt.Errorf("storm %d", j)) })
						defer tm.Stop()
					}
					start := time.Now()
					_ = e.Do(parent, testKey, func(ctx context.Context) error {
						c, cc := context.WithCancel(ctx)
						defer cc()
						spawned.Add(1)
						go func() { defer spawned.Done(); <-c.Done() }()
						w := context.WithoutCancel(ctx)
						_ = w
						select {
						case <-ctx.Done():
							if ctx.Err() != nil && context.Cause(ctx) == nil {
								t.Errorf("Err %v with nil Cause", ctx.Err())
							}
							return ctx.Err()
						case <-time.After(time.Duration(rand.Intn(3)) * time.Millisecond): // global rand: hedged tries run concurrently
							if rand.Intn(2) == 0 {
								return nil
							}
							return errors.New("flaky")
						}
					})
					if time.Since(start) > time.Second {
						stuck.Add(1)
					}
				}(i)
			}
			wg.Wait()
			spawned.Wait()
			if stuck.Load() > 0 {
				t.Errorf("%d calls took over a second", stuck.Load())
			}
		})
	}
}

// TestStoredContextAfterReturn: an op keeps its context (and children made
// from it) and uses them after the call returned.
func TestStoredContextAfterReturn(t *testing.T) {
	for _, p := range shapes(time.Second) {
		for _, armed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/armed=%v", p.name, armed), func(t *testing.T) {
				e, _ := newExec(p, 1)
				var stored, child context.Context
				afc := make(chan struct{})
				runIn(t, e, context.Background(), p, func(ctx context.Context) error {
					stored = ctx
					if armed {
						_ = ctx.Done()
						var cc context.CancelFunc
						child, cc = context.WithCancel(ctx)
						_ = cc // deliberately never called: the call's end must cancel it
						context.AfterFunc(ctx, func() { close(afc) })
					}
					return nil
				})
				if err := stored.Err(); err == nil {
					t.Errorf("stored ctx Err nil after the call returned (the try's context was not cancelled)")
				} else {
					if c := context.Cause(stored); c == nil || c == errAT {
						t.Errorf("stored ctx: Err %v Cause %v (want non-nil, not an attempt timeout)", err, c)
					}
					if !isDone(stored) {
						t.Errorf("stored ctx Err %v but Done not closed", err)
					}
				}
				if armed {
					if !waitDone(child, 100*time.Millisecond) {
						t.Errorf("child of stored ctx not done after the call")
					}
					select {
					case <-afc:
					case <-time.After(100 * time.Millisecond):
						t.Errorf("AfterFunc on stored ctx not called after the call")
					}
				}
				// New derivations after return.
				c2, cc2 := context.WithCancel(stored)
				defer cc2()
				if stored.Err() != nil && !isDone(c2) {
					t.Errorf("child made after return from a done ctx is not done")
				}
				imm := make(chan struct{})
				context.AfterFunc(stored, func() { close(imm) })
				if stored.Err() != nil {
					select {
					case <-imm:
					case <-time.After(100 * time.Millisecond):
						t.Errorf("AfterFunc on done stored ctx not called")
					}
				}
			})
		}
	}
}

// TestStoredContextOfRetriedTry: the context of a failed try is done once
// the next try runs.
func TestStoredContextOfRetriedTry(t *testing.T) {
	for _, p := range shapes(time.Second) {
		if p.hedged {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 3)
			var ctxs []context.Context
			_ = e.Do(context.Background(), testKey, func(ctx context.Context) error {
				ctxs = append(ctxs, ctx)
				if len(ctxs) == 2 {
					if p.perAttempt > 0 && ctxs[0].Err() == nil {
						t.Errorf("first try's per-attempt context still live during the second try")
					}
					return nil
				}
				return errors.New("retry me")
			})
			if len(ctxs) != 2 {
				t.Fatalf("%d tries", len(ctxs))
			}
		})
	}
}

// TestSpawnedGoroutinesEnd: an op spawns goroutines waiting on its context
// and returns (success, error, panic-free) without waiting: they must end
// once the call is over (goleak checks the rest).
func TestSpawnedGoroutinesEnd(t *testing.T) {
	for _, p := range shapes(time.Second) {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fail=%v", p.name, fail), func(t *testing.T) {
				e, _ := newExec(p, 2)
				var wg sync.WaitGroup
				_ = e.Do(context.Background(), testKey, func(ctx context.Context) error {
					wg.Add(2)
					go func() { defer wg.Done(); <-ctx.Done() }()
					c, cc := context.WithTimeout(ctx, time.Hour)
					_ = cc // deliberately not called: the call's end must cancel c
					go func() { defer wg.Done(); <-c.Done() }()
					if info, _ := endpoint.AttemptFromContext(ctx); info.HedgeIndex > 0 {
						return nil
					}
					if fail {
						return errors.New("fail")
					}
					return nil
				})
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(200 * time.Millisecond):
					if p.perAttempt == 0 && p.overall == 0 && !p.hedged {
						t.Skip("no recourse context")
					}
					t.Errorf("goroutines waiting on the op's ctx still running after the call returned")
					<-done // they end at the deadline; keep goleak quiet
				}
			})
		}
	}
}

var _ = timeline.OutcomeAbort
