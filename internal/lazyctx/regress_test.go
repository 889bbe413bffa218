package lazyctx

// Regression tests: each failed against the first lazyctx, whose
// cancellation reached its descendants through AfterFunc goroutines and
// whose cause context.Cause could not read. The cases follow those of Go's
// own context tests (src/context/x_test.go, afterfunc_test.go), with a Ctx
// in place of the standard contexts.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// isDone reports whether ctx is done right now, without waiting.
func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return ctx.Err() != nil
	default:
		return false
	}
}

// chain builds caller -> overall (Ctx) -> hedge try (Ctx) -> per-attempt
// (Ctx) -> the operation's own standard children, as the compiled chain
// and an operation would.
type chain struct {
	caller       context.Context
	cancelCaller context.CancelCauseFunc
	overall      *Ctx
	try          *Ctx
	attempt      *Ctx
	opCancel     context.Context
	opTimeout    context.Context
	stops        []func()
}

func newChain(t *testing.T) *chain {
	t.Helper()
	c := &chain{}
	c.caller, c.cancelCaller = context.WithCancelCause(context.Background())
	c.overall = WithTimeout(c.caller, time.Hour, nil)
	c.try = WithCancel(c.overall)
	c.attempt = WithTimeout(c.try, time.Hour, errMine)
	var cancel context.CancelFunc
	c.opCancel, cancel = context.WithCancel(c.attempt)
	c.stops = append(c.stops, cancel)
	c.opTimeout, cancel = context.WithTimeout(c.attempt, time.Hour)
	c.stops = append(c.stops, cancel)
	t.Cleanup(func() {
		for _, s := range c.stops {
			s()
		}
		c.attempt.Cancel()
		c.try.Cancel()
		c.overall.Cancel()
		c.cancelCaller(nil)
	})
	return c
}

func (c *chain) all() map[string]context.Context {
	return map[string]context.Context{
		"overall": c.overall, "try": c.try, "attempt": c.attempt,
		"op WithCancel": c.opCancel, "op WithTimeout": c.opTimeout,
	}
}

func TestRegressCancelReachesDescendantsBeforeCancelReturns(t *testing.T) {
	for _, watch := range []string{"leaf", "every level"} {
		t.Run(watch, func(t *testing.T) {
			c := newChain(t)
			if watch == "every level" {
				for _, ctx := range c.all() {
					_ = ctx.Done()
				}
			}
			_ = c.opTimeout.Done()
			cause := errors.New("caller gave up")
			c.cancelCaller(cause)
			// No waiting: by the time cancel returned, everything is done.
			for name, ctx := range c.all() {
				if !isDone(ctx) {
					t.Errorf("%s: not done when the caller's cancel returned", name)
				}
				if got := context.Cause(ctx); got != cause {
					t.Errorf("%s: cause %v, want the caller's", name, got)
				}
			}
		})
	}
}

func TestRegressCancelOfACtxReachesStandardChildrenAtOnce(t *testing.T) {
	c := newChain(t)
	_ = c.opCancel.Done()
	c.try.Cancel()
	for _, ctx := range []context.Context{c.attempt, c.opCancel, c.opTimeout} {
		if !isDone(ctx) || ctx.Err() != context.Canceled {
			t.Fatalf("%v not cancelled at once (err %v)", ctx, ctx.Err())
		}
	}
	if isDone(c.overall) {
		t.Fatal("a child's cancellation reached its parent")
	}
}

func TestRegressDerivedFromCancelledParentIsDoneAtOnce(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("gone")
	cancel(cause)
	for name, ctx := range map[string]*Ctx{
		"WithCancel":  WithCancel(parent),
		"WithTimeout": WithTimeout(parent, time.Hour, errMine),
	} {
		if ctx.Err() != context.Canceled || context.Cause(ctx) != cause {
			t.Errorf("%s: err %v cause %v", name, ctx.Err(), context.Cause(ctx))
		}
		if !isDone(ctx) {
			t.Errorf("%s: Done not closed at once", name)
		}
		child, stop := context.WithCancel(ctx)
		if !isDone(child) || context.Cause(child) != cause {
			t.Errorf("%s: standard child not done at once (cause %v)", name, context.Cause(child))
		}
		stop()
		ctx.Cancel()
	}
}

// expired returns a per-attempt context whose deadline has passed under a
// live standard parent. armed says whether somebody waited on it first.
func expired(t *testing.T, parent context.Context, armed bool) *Ctx {
	t.Helper()
	c := WithTimeout(parent, time.Millisecond, errMine)
	t.Cleanup(c.Cancel)
	if armed {
		<-c.Done()
	} else {
		time.Sleep(20 * time.Millisecond) // the deadline's timer runs meanwhile, however late
	}
	return c
}

func TestRegressCauseOfExpiredContext(t *testing.T) {
	// A live standard parent is what the context package's lookup finds
	// first when the Ctx does not answer for itself: before Go 1.25 it then
	// returned the parent's nil cause, later the bare DeadlineExceeded.
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, armed := range []bool{false, true} {
		c := expired(t, parent, armed)
		if c.Err() != context.DeadlineExceeded {
			t.Fatalf("armed=%v: err %v", armed, c.Err())
		}
		if got := context.Cause(c); got != errMine {
			t.Errorf("armed=%v: context.Cause = %v, want %v", armed, got, errMine)
		}
		if got := Cause(c); got != errMine {
			t.Errorf("armed=%v: lazyctx.Cause = %v", armed, got)
		}
		child, stop := context.WithCancel(c)
		if got := context.Cause(child); got != errMine || child.Err() != context.DeadlineExceeded {
			t.Errorf("armed=%v: standard child err %v cause %v", armed, child.Err(), got)
		}
		stop()
		if !c.ExpiredOwn() {
			t.Errorf("armed=%v: ExpiredOwn false", armed)
		}
	}
}

func TestRegressCauseNeverNilWhileErrSet(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	contexts := []context.Context{expired(t, parent, false), expired(t, parent, true)}
	wc := WithCancel(parent)
	wc.Cancel()
	contexts = append(contexts, wc)
	for i, ctx := range contexts {
		if ctx.Err() != nil && context.Cause(ctx) == nil {
			t.Errorf("context %d: Err %v but Cause nil", i, ctx.Err())
		}
	}
}

func TestRegressLaterAncestorCancelKeepsOwnCause(t *testing.T) {
	for _, armed := range []bool{false, true} {
		parent, cancel := context.WithCancelCause(context.Background())
		c := expired(t, parent, armed)
		cancel(errors.New("caller gave up later"))
		if c.Err() != context.DeadlineExceeded || context.Cause(c) != errMine || Cause(c) != errMine {
			t.Errorf("armed=%v: err %v cause %v: a later cancel replaced the own cause",
				armed, c.Err(), context.Cause(c))
		}
		if !c.ExpiredOwn() {
			t.Errorf("armed=%v: ExpiredOwn false after a later parent cancel", armed)
		}
	}
}

func TestRegressAncestorDeadlineFirstWins(t *testing.T) {
	// The standard library gives a child whose parent's deadline comes
	// first the parent's end; so does a Ctx, armed or not.
	for _, armed := range []bool{false, true} {
		outer := WithTimeout(context.Background(), time.Millisecond, errOuter)
		inner := WithTimeout(outer, 2*time.Millisecond, errMine)
		if armed {
			<-inner.Done()
		} else {
			time.Sleep(5 * time.Millisecond)
		}
		if Cause(inner) != errOuter || context.Cause(inner) != errOuter {
			t.Errorf("armed=%v: cause %v, want the outer deadline's", armed, Cause(inner))
		}
		if inner.ExpiredOwn() {
			t.Errorf("armed=%v: ExpiredOwn for an ancestor's deadline", armed)
		}
		if !outer.ExpiredOwn() {
			t.Errorf("armed=%v: outer did not expire on its own", armed)
		}
		inner.Cancel()
		outer.Cancel()
	}
}

var errOuter = errors.New("outer attempt timed out")

func TestRegressArmingStartsNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	c := newChain(t)
	_ = c.opCancel.Done()
	_ = c.opTimeout.Done()
	stop := context.AfterFunc(c.attempt, func() {})
	defer stop()
	if after := runtime.NumGoroutine(); after != before {
		t.Fatalf("goroutines %d -> %d after arming", before, after)
	}
}

func TestRegressCancelledAndExpiredAreNotOwn(t *testing.T) {
	c := WithTimeout(context.Background(), time.Hour, errMine)
	c.Cancel()
	if c.ExpiredOwn() || context.Cause(c) != context.Canceled {
		t.Fatalf("cancelled: ExpiredOwn %v cause %v", c.ExpiredOwn(), context.Cause(c))
	}
	parent, cancel := context.WithCancel(context.Background())
	child := WithTimeout(parent, time.Hour, errMine)
	cancel()
	if child.ExpiredOwn() || child.Err() != context.Canceled {
		t.Fatalf("parent cancelled: ExpiredOwn %v err %v", child.ExpiredOwn(), child.Err())
	}
	child.Cancel()
}

func TestRegressAfterFuncOnCtx(t *testing.T) {
	// afterfunc_test.go: called once after cancel, not after stop, at once
	// for an ended context.
	c := WithCancel(context.Background())
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	c.Cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc not called after Cancel")
	}

	c2 := WithCancel(context.Background())
	stop := context.AfterFunc(c2, func() { t.Error("stopped func ran") })
	if !stop() {
		t.Fatal("stop before cancel reported false")
	}
	c2.Cancel()

	c3 := WithTimeout(context.Background(), time.Nanosecond, errMine)
	time.Sleep(time.Millisecond)
	ran3 := make(chan struct{})
	context.AfterFunc(c3, func() { close(ran3) })
	select {
	case <-ran3:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc on an ended Ctx not called")
	}
	c3.Cancel()
}

func TestRegressValuesAndWithoutCancel(t *testing.T) {
	type k struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), k{}, "v"))
	c := WithTimeout(parent, time.Hour, errMine)
	_ = c.Done()
	wc := context.WithoutCancel(c)
	cancel()
	if !isDone(c) {
		t.Fatal("not done after parent cancel")
	}
	if wc.Err() != nil || wc.Done() != nil {
		t.Fatal("WithoutCancel child followed the cancellation")
	}
	for _, ctx := range []context.Context{c, wc} {
		if ctx.Value(k{}) != "v" {
			t.Fatalf("value lost through %v", ctx)
		}
	}
	c.Cancel()
}

func TestRegressConcurrentUseIsRaceFree(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 50; i++ {
		c := WithTimeout(parent, time.Duration(i%3)*time.Microsecond, errMine)
		var wg sync.WaitGroup
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				switch j {
				case 0:
					<-c.Done()
				case 1:
					_ = context.Cause(c)
					_ = c.ExpiredOwn()
				case 2:
					child, stop := context.WithCancel(c)
					<-child.Done()
					stop()
				case 3:
					c.Cancel()
				}
			}(j)
		}
		wg.Wait()
		if c.Err() == nil || context.Cause(c) == nil {
			t.Fatalf("ended without err/cause: %v %v", c.Err(), context.Cause(c))
		}
	}
}

func TestRegressEarlierParentCancelWinsWhenLookedAtLate(t *testing.T) {
	// Found by a black-box attack: the caller cancels before the try's own
	// deadline; the try first looks at its context after that deadline.
	// The standard library says Canceled with the caller's cause.
	for _, armedParent := range []bool{false, true} {
		parent, cancel := context.WithCancelCause(context.Background())
		var mid context.Context = parent
		if armedParent {
			m := WithTimeout(parent, time.Hour, nil)
			_ = m.Done()
			defer m.Cancel()
			mid = m
		}
		c := WithTimeout(mid, 10*time.Millisecond, errMine)
		cause := errors.New("caller gave up first")
		time.Sleep(time.Millisecond)
		cancel(cause)
		time.Sleep(25 * time.Millisecond) // past c's deadline, nobody looking
		if c.Err() != context.Canceled || context.Cause(c) != cause || c.ExpiredOwn() {
			t.Errorf("armedParent=%v: err %v cause %v own %v, want the caller's earlier cancel",
				armedParent, c.Err(), context.Cause(c), c.ExpiredOwn())
		}
		c.Cancel()
	}
}

// On a loaded machine a try's deadline timer can run after the enclosing
// call's (later) deadline has passed too. The try still expired on its
// own: its cause is its own, whoever looks first and however late.
func TestRegressLateTimerKeepsOwnCause(t *testing.T) {
	errOwn := errors.New("own deadline")
	for _, look := range []string{"expire", "Err", "Cause", "Cancel"} {
		t.Run(look, func(t *testing.T) {
			parent := WithTimeout(context.Background(), 20*time.Millisecond, nil)
			defer parent.Cancel()
			c := WithTimeout(parent, 5*time.Millisecond, errOwn)
			if c.timer == nil {
				t.Fatal("no timer under a parent that can end")
			}
			c.timer.Stop()                    // the timer is late…
			time.Sleep(30 * time.Millisecond) // …past the parent's deadline too
			switch look {
			case "expire":
				c.expire() // it runs at last
			case "Err":
				_ = c.Err()
			case "Cause":
				_ = context.Cause(c)
			case "Cancel":
				c.Cancel()
			}
			if err, cause := c.Err(), context.Cause(c); err != context.DeadlineExceeded || cause != errOwn {
				t.Fatalf("Err %v Cause %v, want DeadlineExceeded / the try's own cause", err, cause)
			}
			if !c.ExpiredOwn() {
				t.Fatal("ExpiredOwn = false for a try whose own, earlier deadline passed")
			}
		})
	}
}

// A parent cancelled (at an unknown time) still wins over a late timer:
// a caller's cancellation never passes for the try's own timeout.
func TestRegressLateTimerParentCancelWins(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	c := WithTimeout(parent, 5*time.Millisecond, errors.New("own"))
	c.timer.Stop()
	time.Sleep(10 * time.Millisecond)
	cancel()
	c.expire()
	if err := c.Err(); err != context.Canceled {
		t.Fatalf("Err %v, want the caller's Canceled", err)
	}
}
