package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/recourse-go/recourse/timeline"
)

// derefObserver dereferences its receiver in every event, as most pointer
// observers do.
type derefObserver struct{ n int }

func (d *derefObserver) OnStart(context.Context, string, time.Time)                { d.n++ }
func (d *derefObserver) OnAttempt(context.Context, string, timeline.AttemptRecord) { d.n++ }
func (d *derefObserver) OnFinish(context.Context, *timeline.Timeline)              { d.n++ }
func (d *derefObserver) OnBudgetDecision(context.Context, timeline.BudgetDecision) { d.n++ }
func (d *derefObserver) OnHedge(context.Context, timeline.HedgeEvent)              { d.n++ }
func (d *derefObserver) OnBreakerState(timeline.BreakerStateChange)                { d.n++ }
func (d *derefObserver) OnPolicyReload(timeline.PolicyReload)                      { d.n++ }

// A typed-nil observer given to Observe, used outside the executor with a
// Capture from timeline.Record, is treated as none: no panic, and the
// capture still gets the timeline.
func TestRegressObserveTypedNilObserverWithCapture(t *testing.T) {
	var typedNil *derefObserver
	for i, o := range []timeline.Observer{typedNil, timeline.Multi(typedNil, nil)} {
		ep := Observe("k", WithObserver(o))(func(context.Context, any) (any, error) { return "ok", nil })
		ctx, c := timeline.Record(context.Background())
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%d: panicked: %v", i, r)
				}
			}()
			if _, err := ep(ctx, nil); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
		}()
		if tl := c.Timeline(); tl == nil || len(tl.Attempts) != 1 || tl.Key != "k" {
			t.Fatalf("%d: timeline %+v", i, tl)
		}
	}
	// A real observer still gets the events.
	d := &derefObserver{}
	ep := Observe("k", WithObserver(timeline.Multi(nil, d)))(func(context.Context, any) (any, error) { return nil, nil })
	if _, err := ep(context.Background(), nil); err != nil || d.n != 3 {
		t.Fatalf("err %v, events %d, want 3", err, d.n)
	}
}
