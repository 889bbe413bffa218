//lint:file-ignore ST1008 table constructors return (ctx, cancel, the cause to expect, cleanup)

package ctxattack

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestAfterFuncOnOpContext adapts the AfterFunc tests.
func TestAfterFuncOnOpContext(t *testing.T) {
	for _, p := range perAttemptShapes(5 * time.Millisecond) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			runIn(t, e, context.Background(), p, func(ctx context.Context) error {
				// Called after timeout.
				called := make(chan struct{})
				context.AfterFunc(ctx, func() { close(called) })
				// Not called after stop.
				stopped := make(chan struct{})
				stop := context.AfterFunc(ctx, func() { close(stopped) })
				if !stop() {
					t.Errorf("stop() = false before expiry")
				}
				select {
				case <-called:
					t.Errorf("AfterFunc called before ctx done")
				default:
				}
				select {
				case <-called:
				case <-time.After(time.Second):
					t.Fatalf("AfterFunc not called after per-attempt timeout")
				}
				if !isDone(ctx) {
					t.Errorf("AfterFunc ran but ctx not done")
				}
				// Called immediately on a done ctx.
				imm := make(chan struct{})
				stop2 := context.AfterFunc(ctx, func() { close(imm) })
				select {
				case <-imm:
				case <-time.After(time.Second):
					t.Fatalf("AfterFunc not called for already-done ctx")
				}
				if stop2() {
					t.Errorf("stop() true after call")
				}
				select {
				case <-stopped:
					t.Errorf("stopped AfterFunc was called")
				case <-time.After(5 * time.Millisecond):
				}
				// Called asynchronously: a blocking f must not block expiry
				// of the context for others (checked above by Done).
				return ctx.Err()
			})
		})
	}
	// On caller cancel, with an f that blocks until read (TestAfterFuncCalledAsynchronously).
	for _, p := range shapes(time.Second) {
		t.Run(p.name+"/async", func(t *testing.T) {
			e, _ := newExec(p, 1)
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			runIn(t, e, parent, p, func(ctx context.Context) error {
				donec := make(chan struct{})
				stop := context.AfterFunc(ctx, func() { donec <- struct{}{} })
				defer stop()
				cancel()
				select {
				case <-donec:
				case <-time.After(time.Second):
					t.Fatalf("AfterFunc not called after caller cancel")
				}
				return nil
			})
		})
	}
}

func goroutines() int { return runtime.NumGoroutine() }

// minDelta measures f's effect on the goroutine count, taking the least of a
// few runs to tolerate unrelated goroutines ending or starting.
func minDelta(f func() func()) int {
	best := 1 << 30
	for i := 0; i < 5; i++ {
		n0 := goroutines()
		undo := f()
		n1 := goroutines()
		undo()
		if d := n1 - n0; d < best {
			best = d
		}
	}
	return best
}

// TestArmingStartsNoGoroutine: calling Done (and, as with the standard
// library, WithCancel / AfterFunc on the op's context) starts no goroutine.
func TestArmingStartsNoGoroutine(t *testing.T) {
	for _, p := range shapes(time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			runIn(t, e, context.Background(), p, func(ctx context.Context) error {
				n0 := goroutines()
				_ = ctx.Done()
				if d := goroutines() - n0; d > 0 {
					// Re-measure once to filter noise.
					n0 = goroutines()
					_ = ctx.Done()
					if d2 := goroutines() - n0; d2 > 0 || d > 0 {
						t.Logf("Done(): goroutine delta %d then %d", d, d2)
					}
				}
				if d := minDelta(func() func() {
					_, c := context.WithCancel(ctx)
					return c
				}); d > 0 {
					t.Errorf("context.WithCancel(opCtx) starts %d goroutine(s); the standard library's contexts start none", d)
				}
				if d := minDelta(func() func() {
					_, c := context.WithTimeout(ctx, time.Hour)
					return c
				}); d > 0 {
					t.Errorf("context.WithTimeout(opCtx) starts %d goroutine(s)", d)
				}
				if d := minDelta(func() func() {
					stop := context.AfterFunc(ctx, func() {})
					return func() { stop() }
				}); d > 0 {
					t.Errorf("context.AfterFunc(opCtx) starts %d goroutine(s) before ctx is done", d)
				}
				return nil
			})
		})
	}
	// A fresh per-attempt ctx: Done on it first thing.
	for _, p := range perAttemptShapes(time.Second) {
		if p.hedged {
			continue
		}
		t.Run(p.name+"/firstDone", func(t *testing.T) {
			e, _ := newExec(p, 1)
			worst := 1 << 30
			for i := 0; i < 5; i++ {
				_ = e.Do(context.Background(), testKey, func(ctx context.Context) error {
					n0 := goroutines()
					_ = ctx.Done()
					if d := goroutines() - n0; d < worst {
						worst = d
					}
					return nil
				})
			}
			if worst > 0 {
				t.Errorf("arming the per-attempt ctx (Done) started %d goroutine(s)", worst)
			}
		})
	}
}

// TestSimultaneousCancelsInOp adapts TestSimultaneousCancels: a tree of 100
// contexts under the op's, all cancelled at once with the caller.
func TestSimultaneousCancelsInOp(t *testing.T) {
	for _, p := range shapes(time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			parent, pcancel := context.WithCancel(context.Background())
			defer pcancel()
			runIn(t, e, parent, p, func(root context.Context) error {
				m := map[context.Context]context.CancelFunc{root: pcancel}
				q := []context.Context{root}
				for len(q) != 0 && len(m) < 100 {
					par := q[0]
					q = q[1:]
					for i := 0; i < 4; i++ {
						c, cancel := context.WithCancel(par)
						m[c] = cancel
						q = append(q, c)
					}
				}
				var wg sync.WaitGroup
				wg.Add(len(m))
				for _, cancel := range m {
					go func(cancel context.CancelFunc) { cancel(); wg.Done() }(cancel)
				}
				stuck := time.After(2 * time.Second)
				for c := range m {
					select {
					case <-c.Done():
					case <-stuck:
						t.Fatalf("stuck waiting for a context")
					}
				}
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-stuck:
					t.Fatalf("stuck waiting for cancel functions")
				}
				return nil
			})
		})
	}
}

// TestInterlockedCancelsInOp adapts TestInterlockedCancels.
func TestInterlockedCancelsInOp(t *testing.T) {
	for _, p := range shapes(time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			parent, pcancel := context.WithCancel(context.Background())
			defer pcancel()
			runIn(t, e, parent, p, func(ctx context.Context) error {
				child, cancelChild := context.WithCancel(ctx)
				go func() { <-ctx.Done(); cancelChild() }()
				pcancel()
				if !waitDone(child, time.Second) {
					t.Fatalf("child never done")
				}
				return nil
			})
		})
	}
}

// TestLayersOnOpContext adapts testLayers: random layers of values, cancels
// and timeouts on the op's context.
func TestLayersOnOpContext(t *testing.T) {
	for _, p := range shapes(time.Second) {
		for _, timeout := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/timeout=%v", p.name, timeout), func(t *testing.T) {
				seed := time.Now().UnixNano()
				r := rand.New(rand.NewSource(seed))
				e, _ := newExec(p, 1)
				parent, pcancel := context.WithCancel(context.Background())
				defer pcancel()
				runIn(t, e, parent, p, func(ctx context.Context) error {
					type value int
					var vals []*value
					cancels := []context.CancelFunc{pcancel}
					numTimers := 0
					for i := 0; i < 30 || numTimers == 0 || len(vals) == 0; i++ {
						switch r.Intn(3) {
						case 0:
							v := new(value)
							ctx = context.WithValue(ctx, v, v)
							vals = append(vals, v)
						case 1:
							var c context.CancelFunc
							ctx, c = context.WithCancel(ctx)
							cancels = append(cancels, c)
						case 2:
							d := time.Hour
							if timeout {
								d = 2 * time.Millisecond
							}
							var c context.CancelFunc
							ctx, c = context.WithTimeout(ctx, d)
							cancels = append(cancels, c)
							numTimers++
						}
					}
					defer func() {
						for _, c := range cancels {
							c()
						}
					}()
					for _, v := range vals {
						if ctx.Value(v) != v {
							t.Errorf("seed %d: value lost", seed)
						}
					}
					if timeout {
						if !waitDone(ctx, time.Second) {
							t.Errorf("seed %d: not timed out", seed)
						}
					} else {
						if isDone(ctx) {
							t.Errorf("seed %d: done before cancel", seed)
						}
						cancels[r.Intn(len(cancels))]()
						if !isDone(ctx) {
							t.Errorf("seed %d: not done right after a cancel returned", seed)
						}
					}
					return nil
				})
			})
		}
	}
}

// TestSimultaneouslyCanceledCaller adapts
// TestWithCancelSimultaneouslyCanceledParent and TestCauseRace.
func TestSimultaneouslyCanceledCaller(t *testing.T) {
	for _, p := range shapes(time.Second) {
		t.Run(p.name, func(t *testing.T) {
			e, _ := newExec(p, 1)
			for i := 0; i < 30; i++ {
				parent, pcancel := context.WithCancelCause(context.Background())
				cause := fmt.Errorf("because %d", i)
				runIn(t, e, parent, p, func(ctx context.Context) error {
					if i%2 == 0 {
						go pcancel(cause)
						c, cc := context.WithCancel(ctx)
						defer cc()
						<-c.Done()
						if c.Err() != context.Canceled || !hedgeCauseOK(p, context.Cause(c), cause) {
							t.Errorf("child: Err %v Cause %v want Canceled / %v", c.Err(), context.Cause(c), cause)
						}
					} else {
						go pcancel(cause)
						for {
							if err := context.Cause(ctx); err != nil {
								if !hedgeCauseOK(p, err, cause) {
									t.Errorf("Cause returned %v, want %v", err, cause)
								}
								break
							}
							runtime.Gosched()
						}
					}
					return nil
				})
				pcancel(nil)
			}
		})
	}
}

// Custom caller contexts (TestCustomContextPropagation, customContext,
// customCauseContext from the context tests).
type customDoneContext struct {
	context.Context
	donec chan struct{}
}

func (c *customDoneContext) Done() <-chan struct{} { return c.donec }

type customContext struct {
	parent   context.Context
	doneOnce sync.Once
	mu       sync.Mutex
	donec    chan struct{}
	err      error
}

func newCustomContext(parent context.Context) (context.Context, context.CancelFunc) {
	c := &customContext{parent: parent, donec: make(chan struct{})}
	context.AfterFunc(parent, func() {
		c.doneOnce.Do(func() {
			c.mu.Lock()
			c.err = parent.Err()
			c.mu.Unlock()
			close(c.donec)
		})
	})
	return c, func() {
		c.doneOnce.Do(func() {
			c.mu.Lock()
			c.err = context.Canceled
			c.mu.Unlock()
			close(c.donec)
		})
	}
}

func (c *customContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *customContext) Done() <-chan struct{}       { return c.donec }
func (c *customContext) Err() error {
	select {
	case <-c.donec:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err
	default:
		return nil
	}
}
func (c *customContext) Value(key any) any { return c.parent.Value(key) }

type customCauseContext struct {
	mu   sync.Mutex
	done chan struct{}
	err  error
}

func (c *customCauseContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *customCauseContext) Done() <-chan struct{}       { return c.done }
func (c *customCauseContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
func (c *customCauseContext) Value(any) any { return nil }
func (c *customCauseContext) cancel() {
	c.mu.Lock()
	c.err = context.Canceled
	close(c.done)
	c.mu.Unlock()
}

func TestCustomCallerContexts(t *testing.T) {
	type kind struct {
		name string
		// mk returns the caller ctx, the function that cancels it, the
		// cause the op's ctx should report and a cleanup.
		mk func() (context.Context, func(), error, func())
	}
	kinds := []kind{
		{"customDone", func() (context.Context, func(), error, func()) {
			cause := errors.New("TestCustomContextPropagation")
			donec := make(chan struct{})
			ctx1, cancel1 := context.WithCancelCause(context.Background())
			ctx2 := &customDoneContext{Context: ctx1, donec: donec}
			return ctx2, func() { cancel1(cause); close(donec) }, cause, func() { cancel1(nil) }
		}},
		{"customAfterFunc", func() (context.Context, func(), error, func()) {
			p, pc := context.WithCancel(context.Background())
			c, cancel := newCustomContext(p)
			return c, cancel, context.Canceled, pc
		}},
		{"customCause", func() (context.Context, func(), error, func()) {
			c := &customCauseContext{done: make(chan struct{})}
			return c, c.cancel, context.Canceled, func() {}
		}},
	}
	for _, p := range shapes(time.Second) {
		for _, k := range kinds {
			t.Run(p.name+"/"+k.name, func(t *testing.T) {
				e, _ := newExec(p, 1)
				parent, cancel, cause, cleanup := k.mk()
				defer cleanup()
				start := time.Now()
				err := runIn(t, e, parent, p, func(ctx context.Context) error {
					child, cc := context.WithCancel(ctx)
					defer cc()
					cancel()
					if !waitDone(ctx, time.Second) || !waitDone(child, time.Second) {
						t.Fatalf("op ctx not done after custom caller ctx cancelled")
					}
					if ctx.Err() != context.Canceled {
						t.Errorf("Err = %v", ctx.Err())
					}
					// A hedge race may cancel its tries itself (plain Canceled)
					// before the asynchronous propagation from a custom caller
					// context arrives; the standard library would do the same.
					okCause := func(c error) bool { return c == cause || (p.hedged && c == context.Canceled) }
					if c := context.Cause(ctx); !okCause(c) {
						t.Errorf("Cause(ctx) = %v, want %v", c, cause)
					}
					if c := context.Cause(child); !okCause(c) {
						t.Errorf("Cause(child) = %v, want %v", c, cause)
					}
					return ctx.Err()
				})
				if time.Since(start) > 500*time.Millisecond {
					t.Errorf("call took %v", time.Since(start))
				}
				_ = err
			})
		}
	}
}
