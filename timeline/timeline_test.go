package timeline

import (
	"context"
	"testing"
)

type counting struct {
	BaseObserver
	n int
}

func (c *counting) OnAttempt(context.Context, string, AttemptRecord) { c.n++ }

func TestMultiObserverFansOut(t *testing.T) {
	a, b := &counting{}, &counting{}
	m := multiObserver{a, b}
	m.OnAttempt(context.Background(), "k", AttemptRecord{})
	if a.n != 1 || b.n != 1 {
		t.Fatalf("a=%d b=%d", a.n, b.n)
	}
	if IsNoop(m) || !IsNoop(NoopObserver{}) || !IsNoop(nil) {
		t.Fatal("IsNoop wrong")
	}
}
