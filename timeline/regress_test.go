package timeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

type countingObserver struct {
	BaseObserver
	n atomic.Int32
}

func (c *countingObserver) OnStart(context.Context, string, time.Time)       { c.n.Add(1) }
func (c *countingObserver) OnAttempt(context.Context, string, AttemptRecord) { c.n.Add(1) }
func (c *countingObserver) OnFinish(context.Context, *Timeline)              { c.n.Add(1) }
func (c *countingObserver) OnBudgetDecision(context.Context, BudgetDecision) { c.n.Add(1) }
func (c *countingObserver) OnHedge(context.Context, HedgeEvent)              { c.n.Add(1) }
func (c *countingObserver) OnBreakerState(BreakerStateChange)                { c.n.Add(1) }
func (c *countingObserver) OnPolicyReload(PolicyReload)                      { c.n.Add(1) }

// derefObserver dereferences its receiver, as most pointer observers do.
type derefObserver struct {
	BaseObserver
	n int
}

func (d *derefObserver) OnStart(context.Context, string, time.Time) { d.n++ }

func fireAll(o Observer) {
	ctx := context.Background()
	o.OnStart(ctx, "k", time.Time{})
	o.OnAttempt(ctx, "k", AttemptRecord{})
	o.OnFinish(ctx, &Timeline{})
	o.OnBudgetDecision(ctx, BudgetDecision{})
	o.OnHedge(ctx, HedgeEvent{})
	o.OnBreakerState(BreakerStateChange{})
	o.OnPolicyReload(PolicyReload{})
}

// A multiObserver with nil and typed-nil entries forwards to the others
// and does not panic.
func TestRegressMultiObserverToleratesNilEntries(t *testing.T) {
	var typedNil *derefObserver
	var nilMulti multiObserver
	c := &countingObserver{}
	m := multiObserver{nil, typedNil, c, nilMulti, multiObserver{nil, c}}
	fireAll(m)
	if got := c.n.Load(); got != 14 {
		t.Fatalf("events delivered = %d, want 14", got)
	}
}

// IsNoop sees through nil pointers and multi-observers of nothing, so
// decorators skip timeline work for them.
func TestRegressIsNoopTypedNil(t *testing.T) {
	var typedNil *derefObserver
	var nilNoop *NoopObserver
	for i, o := range []Observer{nil, typedNil, nilNoop, NoopObserver{}, multiObserver{}, multiObserver{nil, typedNil}, multiObserver{NoopObserver{}}} {
		if !IsNoop(o) {
			t.Errorf("%d: IsNoop(%#v) = false", i, o)
		}
	}
	if IsNoop(&derefObserver{}) || IsNoop(multiObserver{nil, &derefObserver{}}) {
		t.Error("IsNoop true for a real observer")
	}
}

// Multi drops nils, flattens and returns the observer itself when only
// one remains.
func TestRegressMulti(t *testing.T) {
	var typedNil *derefObserver
	c := &countingObserver{}
	if o := Multi(); !IsNoop(o) {
		t.Fatalf("Multi() = %#v", o)
	}
	if o := Multi(nil, typedNil, NoopObserver{}); o != (NoopObserver{}) {
		t.Fatalf("Multi of nothing = %#v", o)
	}
	if o := Multi(nil, c, typedNil); o != Observer(c) {
		t.Fatalf("Multi of one = %#v", o)
	}
	d := &derefObserver{}
	o := Multi(multiObserver{c, nil}, typedNil, d)
	m, ok := o.(multiObserver)
	if !ok || len(m) != 2 {
		t.Fatalf("Multi = %#v", o)
	}
	fireAll(o)
	if c.n.Load() != 7 || d.n != 1 {
		t.Fatalf("delivered %d, %d", c.n.Load(), d.n)
	}
}
