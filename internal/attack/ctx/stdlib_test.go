package ctxattack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type key1 int
type key2 int

var (
	k1 = key1(1)
	k2 = key2(1) // same int as k1, different type
)

// callerKinds are the caller contexts handed to Do. Each returns the context
// and a cancel-with-cause function.
func callerKinds() []struct {
	name string
	mk   func() (context.Context, context.CancelCauseFunc)
} {
	return []struct {
		name string
		mk   func() (context.Context, context.CancelCauseFunc)
	}{
		{"WithCancelCause", func() (context.Context, context.CancelCauseFunc) {
			return context.WithCancelCause(context.Background())
		}},
		{"otherContext(WithCancelCause)", func() (context.Context, context.CancelCauseFunc) {
			c, cancel := context.WithCancelCause(context.Background())
			return otherContext{c}, cancel
		}},
		{"WithValue(WithCancelCause)", func() (context.Context, context.CancelCauseFunc) {
			c, cancel := context.WithCancelCause(context.Background())
			return context.WithValue(c, k1, "v"), cancel
		}},
		{"WithTimeout(hour)(WithCancelCause)", func() (context.Context, context.CancelCauseFunc) {
			c, cancel := context.WithCancelCause(context.Background())
			c2, cancel2 := context.WithTimeout(c, time.Hour)
			return c2, func(err error) { cancel(err); cancel2() }
		}},
	}
}

// TestAncestorCancelPropagatesSynchronously adapts TestWithCancel /
// TestCanceledTimeout: when the caller's context is cancelled, by the time
// its cancel returns the op's context and every descendant the op made are
// done, with the caller's cause.
func TestAncestorCancelPropagatesSynchronously(t *testing.T) {
	for _, p := range shapes(2 * time.Second) {
		for _, ck := range callerKinds() {
			for _, armed := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/armed=%v", p.name, ck.name, armed)
				t.Run(name, func(t *testing.T) {
					e, _ := newExec(p, 1)
					parent, cancel := ck.mk()
					defer cancel(nil)
					cause := errors.New("caller cause")
					runIn(t, e, parent, p, func(ctx context.Context) error {
						if ctx.Err() != nil {
							t.Fatalf("op ctx done at start: %v", ctx.Err())
						}
						if !armed {
							cancel(cause)
							// Err first, before anything calls Done.
							if err := ctx.Err(); err != context.Canceled {
								t.Errorf("unarmed: ctx.Err() = %v right after caller cancel, want Canceled", err)
							}
							if c := context.Cause(ctx); !hedgeCauseOK(p, c, cause) {
								t.Errorf("unarmed: Cause(ctx) = %v, want caller cause", c)
							}
							if !isDone(ctx) {
								t.Errorf("unarmed: ctx.Done() not closed right after caller cancel")
							}
							return nil
						}
						c1, cancel1 := context.WithCancel(ctx)
						defer cancel1()
						c2, cancel2 := context.WithTimeout(ctx, time.Hour)
						defer cancel2()
						c3 := context.WithoutCancel(ctx)
						o := otherContext{ctx}
						c4, cancel4 := context.WithCancel(o)
						defer cancel4()
						c5 := context.WithValue(ctx, k2, "v2")
						c6, cancel6 := context.WithCancelCause(c5)
						defer cancel6(nil)
						c7, cancel7 := context.WithDeadline(c6, time.Now().Add(time.Hour))
						defer cancel7()
						afc := make(chan struct{})
						stop := context.AfterFunc(ctx, func() { close(afc) })
						cancel(cause) // should propagate synchronously
						for i, c := range []context.Context{ctx, c1, c2, o, c4, c5, c6, c7} {
							if !isDone(c) {
								t.Errorf("c[%d] (%v) not done right after caller cancel returned", i, c)
							}
							if err := c.Err(); err != context.Canceled {
								t.Errorf("c[%d].Err() = %v want Canceled", i, err)
							}
							if got := context.Cause(c); !hedgeCauseOK(p, got, cause) {
								t.Errorf("Cause(c[%d]) = %v want caller cause", i, got)
							}
						}
						if isDone(c3) || c3.Err() != nil || context.Cause(c3) != nil {
							t.Errorf("WithoutCancel child done: err %v cause %v", c3.Err(), context.Cause(c3))
						}
						if c3.Value(k2) != nil || c5.Value(k2) != "v2" {
							t.Errorf("values wrong through children")
						}
						select {
						case <-afc:
						case <-time.After(time.Second):
							t.Errorf("AfterFunc not called after caller cancel")
						}
						if stop() {
							t.Errorf("AfterFunc stop() = true after it ran")
						}
						return nil
					})
				})
			}
		}
	}
}

// TestAncestorCancelFromOutside cancels the caller from another goroutine
// while the op is blocked on something other than its context, then checks
// the op's contexts before letting it return.
func TestAncestorCancelFromOutside(t *testing.T) {
	for _, p := range shapes(2 * time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			parent, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			cause := errors.New("outside")
			type got struct {
				ctx, child context.Context
			}
			ready := make(chan got, 1)
			release := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				runIn(t, e, parent, p, func(ctx context.Context) error {
					c, cc := context.WithCancel(ctx)
					defer cc()
					ready <- got{ctx, c}
					<-release
					return nil
				})
			}()
			g := <-ready
			cancel(cause)
			for i, c := range []context.Context{g.ctx, g.child} {
				if !isDone(c) {
					t.Errorf("c[%d] not done right after caller cancel returned", i)
				}
				if c.Err() != context.Canceled || !hedgeCauseOK(p, context.Cause(c), cause) {
					t.Errorf("c[%d]: Err %v Cause %v, want Canceled / caller cause", i, c.Err(), context.Cause(c))
				}
			}
			close(release)
			<-done
		})
	}
}

func perAttemptShapes(d time.Duration) []pol {
	var out []pol
	for _, p := range shapes(d) {
		if p.perAttempt > 0 && (p.overall == 0 || p.overall > p.perAttempt) {
			if p.overall > 0 {
				// Far enough past the try's deadline that timers running
				// late on a loaded machine still fire in order: two standard
				// contexts 5ms apart can be cancelled in either order then.
				p.overall = 100 * p.perAttempt
			}
			out = append(out, p)
		}
	}
	return out
}

// TestAttemptTimeoutCause: the cause of an expired per-attempt context, its
// children's, and that a later caller cancellation does not replace it
// (TestCause "parent cause after child", "WithTimeoutCause stacked").
func TestAttemptTimeoutCause(t *testing.T) {
	callers := append(callerKinds(), struct {
		name string
		mk   func() (context.Context, context.CancelCauseFunc)
	}{"Background", func() (context.Context, context.CancelCauseFunc) {
		return context.Background(), func(error) {}
	}})
	for _, p := range perAttemptShapes(5 * time.Millisecond) {
		for _, ck := range callers {
			for _, armed := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/armed=%v", p.name, ck.name, armed), func(t *testing.T) {
					e, _ := newExec(p, 1)
					parent, cancel := ck.mk()
					defer cancel(nil)
					later := errors.New("later caller cancel")
					runIn(t, e, parent, p, func(ctx context.Context) error {
						var c1 context.Context
						if armed {
							var cc context.CancelFunc
							c1, cc = context.WithCancel(ctx)
							defer cc()
							if !waitDone(ctx, time.Second) {
								t.Fatalf("per-attempt ctx never expired")
							}
						} else {
							dl, ok := ctx.Deadline()
							if !ok {
								t.Fatalf("no deadline")
							}
							time.Sleep(time.Until(dl) + 20*time.Millisecond) // the deadline's timer runs meanwhile, even late under load
						}
						check := func(when string) {
							if err := ctx.Err(); err != context.DeadlineExceeded {
								t.Errorf("%s: ctx.Err() = %v want DeadlineExceeded", when, err)
							}
							if c := context.Cause(ctx); c != errAT {
								t.Errorf("%s: Cause(ctx) = %v want ErrAttemptTimeout", when, c)
							}
							if !isDone(ctx) {
								t.Errorf("%s: Done not closed although Err = %v", when, ctx.Err())
							}
							if c1 != nil {
								if c1.Err() != context.DeadlineExceeded || context.Cause(c1) != errAT {
									t.Errorf("%s: child: Err %v Cause %v, want DeadlineExceeded / ErrAttemptTimeout", when, c1.Err(), context.Cause(c1))
								}
							}
							v := context.WithValue(ctx, k2, 1)
							if context.Cause(v) != errAT {
								t.Errorf("%s: Cause(WithValue(ctx)) = %v", when, context.Cause(v))
							}
							// TestWithCancelCanceledParent: a child made now is done at once with the cause.
							c7, cc7 := context.WithCancel(ctx)
							defer cc7()
							if !isDone(c7) || c7.Err() != context.DeadlineExceeded || context.Cause(c7) != errAT {
								t.Errorf("%s: new child: done %v Err %v Cause %v", when, isDone(c7), c7.Err(), context.Cause(c7))
							}
							w := context.WithoutCancel(ctx)
							if w.Err() != nil || context.Cause(w) != nil {
								t.Errorf("%s: WithoutCancel: Err %v Cause %v", when, w.Err(), context.Cause(w))
							}
						}
						check("after expiry")
						cancel(later)
						check("after later caller cancel")
						return ctx.Err()
					})
				})
			}
		}
	}
}

// TestOverallTimeoutCause: an expired overall deadline is not an attempt
// timeout, and its Cause is never nil while Err is set.
func TestOverallTimeoutCause(t *testing.T) {
	for _, p := range []pol{
		{name: "overall", overall: 50 * time.Millisecond},
		{name: "bothOverallFirst", overall: 50 * time.Millisecond, perAttempt: time.Second},
		{name: "hedgedOverall", overall: 50 * time.Millisecond, hedged: true},
	} {
		for _, armed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/armed=%v", p.name, armed), func(t *testing.T) {
				e, obs := newExec(p, 3)
				parent, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				runIn(t, e, parent, p, func(ctx context.Context) error {
					if armed {
						waitDone(ctx, time.Second)
					} else {
						dl, _ := ctx.Deadline()
						time.Sleep(time.Until(dl) + 20*time.Millisecond) // the deadline's timer runs meanwhile, even late under load
					}
					if ctx.Err() != context.DeadlineExceeded {
						t.Errorf("Err = %v", ctx.Err())
					}
					c := context.Cause(ctx)
					if c == nil || errors.Is(c, errAT) {
						t.Errorf("Cause(ctx) = %v: want non-nil and not ErrAttemptTimeout", c)
					}
					cancel(errors.New("later"))
					if c2 := context.Cause(ctx); c2 != c {
						t.Errorf("later caller cancel replaced the cause: %v -> %v", c, c2)
					}
					return ctx.Err()
				})
				for _, r := range obs.get(testKey) {
					if r.Reason == "timeout" && r.Outcome == 2 /*retryable*/ {
						t.Errorf("overall deadline classified as a retryable try timeout: %s", fmtRecs(obs.get(testKey)))
					}
				}
			})
		}
	}
}

// TestErrImpliesDone adapts TestContextErrDoneRace (#75533): once Err is
// non-nil, Done is closed and Cause is non-nil.
func TestErrImpliesDone(t *testing.T) {
	for _, p := range perAttemptShapes(2 * time.Millisecond) {
		if p.overall > 0 {
			p.overall = 200 * time.Millisecond // keep the overall deadline out of the way
		}
		for _, mode := range []string{"armedExpire", "unarmedExpire", "armedCancel", "unarmedCancel"} {
			t.Run(p.name+"/"+mode, func(t *testing.T) {
				for i := 0; i < 10; i++ {
					e, _ := newExec(p, 1)
					parent, cancel := context.WithCancelCause(context.Background())
					cause := errors.New("c")
					runIn(t, e, parent, p, func(ctx context.Context) error {
						var donec <-chan struct{}
						if strings.HasPrefix(mode, "armed") {
							donec = ctx.Done()
						}
						if strings.HasSuffix(mode, "Cancel") {
							go cancel(cause)
						}
						deadline := time.Now().Add(time.Second)
						for ctx.Err() == nil {
							if time.Now().After(deadline) {
								t.Fatalf("Err never set")
							}
						}
						c := context.Cause(ctx)
						if donec == nil {
							donec = ctx.Done()
						}
						select {
						case <-donec:
						default:
							t.Fatalf("iteration %d: ctx.Err is %v but ctx.Done is not closed", i, ctx.Err())
						}
						if c == nil {
							t.Fatalf("iteration %d: Err %v but Cause nil", i, ctx.Err())
						}
						if ctx.Err() == context.DeadlineExceeded && c != errAT {
							t.Errorf("Err DeadlineExceeded with Cause %v", c)
						}
						if ctx.Err() == context.Canceled && !hedgeCauseOK(p, c, cause) {
							t.Errorf("Err Canceled with Cause %v", c)
						}
						return nil
					})
					cancel(nil)
				}
			})
		}
	}
}

// TestDeadlineIsRight: Deadline() is the earliest of the caller's, the
// overall and the per-attempt deadlines.
func TestDeadlineIsRight(t *testing.T) {
	for _, p := range shapes(300 * time.Millisecond) {
		for _, callerDL := range []time.Duration{0, 50 * time.Millisecond, time.Hour} {
			t.Run(fmt.Sprintf("%s/caller=%v", p.name, callerDL), func(t *testing.T) {
				e, _ := newExec(p, 1)
				parent := context.Background()
				var pdl time.Time
				if callerDL > 0 {
					var cancel context.CancelFunc
					parent, cancel = context.WithTimeout(parent, callerDL)
					defer cancel()
					pdl, _ = parent.Deadline()
				}
				before := time.Now()
				runIn(t, e, parent, p, func(ctx context.Context) error {
					now := time.Now()
					dl, ok := ctx.Deadline()
					lo, hi := time.Time{}, time.Time{}
					set := func(l, h time.Time) {
						if lo.IsZero() || h.Before(hi) || (h.Equal(hi) && l.Before(lo)) {
							lo, hi = l, h
						}
					}
					if !pdl.IsZero() {
						set(pdl, pdl)
					}
					if p.overall > 0 {
						set(before.Add(p.overall), now.Add(p.overall))
					}
					if p.perAttempt > 0 {
						set(before.Add(p.perAttempt), now.Add(p.perAttempt))
					}
					if lo.IsZero() {
						if ok {
							t.Errorf("Deadline() = %v, true; want none", dl)
						}
						return nil
					}
					if !ok {
						t.Fatalf("no deadline, want in [%v, %v]", lo, hi)
					}
					if dl.Before(lo) || dl.After(hi) {
						t.Errorf("Deadline() = %v, want in [%v, %v] (caller %v)", dl, lo, hi, pdl)
					}
					if !pdl.IsZero() && !pdl.After(hi) && !dl.Equal(pdl) {
						t.Errorf("caller deadline earliest: Deadline() = %v, want exactly %v", dl, pdl)
					}
					return nil
				})
			})
		}
	}
}

// TestValuesFlow adapts TestValues / TestWithoutCancel.
func TestValuesFlow(t *testing.T) {
	for _, p := range shapes(time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			parent := context.WithValue(context.Background(), k1, "c1k1")
			parent = context.WithValue(parent, k2, "c1k2")
			parent, cancel := context.WithCancel(parent)
			defer cancel()
			runIn(t, e, parent, p, func(ctx context.Context) error {
				if ctx.Value(k1) != "c1k1" || ctx.Value(k2) != "c1k2" || ctx.Value(key1(2)) != nil {
					t.Errorf("values: %v %v %v", ctx.Value(k1), ctx.Value(k2), ctx.Value(key1(2)))
				}
				w := context.WithoutCancel(ctx)
				if w.Value(k1) != "c1k1" || w.Done() != nil || w.Err() != nil {
					t.Errorf("WithoutCancel: %v %v %v", w.Value(k1), w.Done(), w.Err())
				}
				if d, ok := w.Deadline(); ok || !d.IsZero() {
					t.Errorf("WithoutCancel deadline %v %v", d, ok)
				}
				_ = fmt.Sprint(ctx) // String must not panic
				return nil
			})
		})
	}
}
