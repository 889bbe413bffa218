package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderOnlyWhenAdvanced(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	a := f.NewTimer(10 * time.Millisecond)
	b := f.NewTimer(20 * time.Millisecond)
	f.Advance(5 * time.Millisecond)
	select {
	case <-a.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	f.Advance(5 * time.Millisecond)
	if got := <-a.C(); !got.Equal(time.Unix(0, 0).Add(10 * time.Millisecond)) {
		t.Fatalf("fired at %v", got)
	}
	if f.Waiters() != 1 {
		t.Fatalf("waiters = %d, want 1", f.Waiters())
	}
	if !b.Stop() {
		t.Fatal("Stop on an armed timer reported inactive")
	}
	if f.Waiters() != 0 {
		t.Fatalf("waiters after stop = %d", f.Waiters())
	}
}

func TestFakeAfterFunc(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	fired := make(chan struct{})
	f.AfterFunc(time.Second, func() { close(fired) })
	stopped := f.AfterFunc(time.Second, func() { t.Error("stopped timer fired") })
	stopped.Stop()
	f.Advance(time.Second)
	<-fired
}
