package lazyctx

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errMine = errors.New("mine")

func TestDeadlinePassesWithoutAnyoneWaiting(t *testing.T) {
	c := WithTimeout(context.Background(), 5*time.Millisecond, errMine)
	defer c.Cancel()
	if c.Err() != nil {
		t.Fatal("ended early")
	}
	time.Sleep(10 * time.Millisecond) // real deadline: nothing to synchronise with
	if !errors.Is(c.Err(), context.DeadlineExceeded) || Cause(c) != errMine {
		t.Fatalf("err %v cause %v", c.Err(), Cause(c))
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after the deadline")
	}
}

func TestDoneClosesAtTheDeadline(t *testing.T) {
	c := WithTimeout(context.Background(), 10*time.Millisecond, errMine)
	defer c.Cancel()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done never closed")
	}
	if Cause(c) != errMine {
		t.Fatalf("cause %v", Cause(c))
	}
}

func TestParentEndPropagates(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	lazy := WithTimeout(parent, time.Hour, errMine)
	defer lazy.Cancel()
	done := lazy.Done()
	parentErr := errors.New("caller gave up")
	cancel(parentErr)
	<-done
	if !errors.Is(lazy.Err(), context.Canceled) || Cause(lazy) != parentErr {
		t.Fatalf("err %v cause %v", lazy.Err(), Cause(lazy))
	}
	// Without a waiter, Err notices too.
	parent2, cancel2 := context.WithCancel(context.Background())
	lazy2 := WithCancel(parent2)
	cancel2()
	if lazy2.Err() != context.Canceled {
		t.Fatalf("err %v", lazy2.Err())
	}
}

func TestNestedLazyContexts(t *testing.T) {
	outer := WithTimeout(context.Background(), 10*time.Millisecond, context.DeadlineExceeded)
	inner := WithTimeout(outer, time.Hour, errMine)
	defer outer.Cancel()
	defer inner.Cancel()
	if dl, _ := inner.Deadline(); dl.After(time.Now().Add(time.Second)) {
		t.Fatalf("deadline %v: the parent's earlier one must win", dl)
	}
	<-inner.Done()
	if Cause(inner) == errMine || !errors.Is(inner.Err(), context.DeadlineExceeded) {
		t.Fatalf("the outer deadline ended it: err %v cause %v", inner.Err(), Cause(inner))
	}
}

func TestStandardChildrenFollowWithoutGoroutines(t *testing.T) {
	lazy := WithCancel(context.Background())
	child, cancelChild := context.WithCancel(lazy)
	defer cancelChild()
	lazy.Cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not cancelled")
	}
	// And AfterFunc's stop works before the end.
	l2 := WithCancel(context.Background())
	stop := context.AfterFunc(l2, func() { t.Error("stopped func ran") })
	if !stop() {
		t.Fatal("stop reported the func already ran")
	}
	l2.Cancel()
}

func TestCancelReleases(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := WithTimeout(parent, time.Hour, errMine)
	_ = c.Done() // arms the timer and registers with the parent
	c.Cancel()
	if c.Err() != context.Canceled || context.Cause(c) != context.Canceled {
		t.Fatalf("err %v cause %v", c.Err(), context.Cause(c))
	}
	// goleak (TestMain) verifies nothing was left running.
}

func TestUnwatchedContextAllocations(t *testing.T) {
	// Under a parent that can end, a deadline needs a bare timer (the
	// Timer and its callback) to know which end came first; under one that
	// cannot, the struct is all.
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name   string
		parent context.Context
		want   float64
	}{{"parent may end", parent, 3}, {"parent never ends", context.Background(), 1}} {
		n := testing.AllocsPerRun(200, func() {
			c := WithTimeout(tc.parent, time.Second, errMine)
			_, _ = c.Deadline()
			_ = c.Err()
			c.Cancel()
		})
		if n != tc.want {
			t.Errorf("%s: allocs = %v, want %v", tc.name, n, tc.want)
		}
	}
	if n := testing.AllocsPerRun(200, func() { WithCancel(parent).Cancel() }); n != 1 {
		t.Errorf("WithCancel: allocs = %v, want 1", n)
	}
}
