package clock

import (
	"context"
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

func TestSleepReturnsOnCancel(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, f, time.Hour) }()
	f.BlockUntil(1)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
	if f.Waiters() != 0 {
		t.Fatal("cancelled sleep left its timer armed")
	}
}

func TestSleepWakesOnAdvance(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan error, 1)
	go func() { done <- Sleep(context.Background(), f, time.Second) }()
	f.BlockUntil(1)
	f.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Sleep = %v", err)
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
