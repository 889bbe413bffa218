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

func TestRefused(t *testing.T) {
	for _, r := range []string{ReasonBudgetDenied, ReasonCircuitOpen, ReasonBulkheadFull} {
		if !Refused(r) {
			t.Errorf("Refused(%q) = false", r)
		}
	}
	for _, r := range []string{ReasonSuccess, ReasonRetryable, ReasonTimeout, ReasonCanceled, ReasonHedgeLost, ReasonFallback, ""} {
		if Refused(r) {
			t.Errorf("Refused(%q) = true", r)
		}
	}
}
