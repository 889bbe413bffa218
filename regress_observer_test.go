package recourse

// Regression tests: with panic recovery on, an observer that panics on the
// caller's goroutine neither takes the caller down nor vanishes.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

type panicsIn struct {
	timeline.BaseObserver
	where string
}

func (o panicsIn) boom(w string) {
	if o.where == w {
		panic("observer boom in " + w)
	}
}
func (o panicsIn) OnStart(context.Context, string, time.Time)                { o.boom("start") }
func (o panicsIn) OnAttempt(context.Context, string, timeline.AttemptRecord) { o.boom("attempt") }
func (o panicsIn) OnFinish(context.Context, *timeline.Timeline)              { o.boom("finish") }
func (o panicsIn) OnBreakerState(timeline.BreakerStateChange)                { o.boom("breaker") }

func TestRegressObserverPanicOnCallerGoroutineIsReported(t *testing.T) {
	for _, where := range []string{"start", "attempt", "finish"} {
		e := NewExecutor(WithObserver(panicsIn{where: where}), WithPolicy("svc.O", policy.MaxAttempts(1)))
		runs := 0
		tl, err := e.DoWithTimeline(context.Background(), "svc.O", func(context.Context) error { runs++; return nil })
		pe := observerPanic(err)
		if pe == nil || runs != 1 {
			t.Errorf("%s: err %v, op ran %d times: want the observer's *PanicError and one run", where, err, runs)
		}
		if tl == nil || observerPanic(tl.Err) == nil {
			t.Errorf("%s: the timeline does not carry the observer's panic", where)
		}
	}
	// Recovery off: the panic is the caller's.
	e := NewExecutor(WithoutPanicRecovery(), WithObserver(panicsIn{where: "attempt"}))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("recovery off: the observer's panic did not reach the caller")
			}
		}()
		_ = e.Do(context.Background(), "svc.O", func(context.Context) error { return nil })
	}()
}

func TestRegressBreakerObserverPanicFromStateIsReportedByTheNextCall(t *testing.T) {
	e := NewExecutor(WithObserver(panicsIn{where: "breaker"}), WithPolicy("svc.B", policy.MaxAttempts(1),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: 5 * time.Millisecond})))
	err := e.Do(context.Background(), "svc.B", func(context.Context) error { return errors.New("down") })
	if observerPanic(err) == nil {
		t.Fatalf("the trip's transition panic is not in the call's error: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	_ = e.Breaker("svc.B").State() // open -> half-open, delivered here: must not panic
	err = e.Do(context.Background(), "svc.B", func(context.Context) error { return nil })
	if observerPanic(err) == nil {
		t.Fatalf("a panic delivered by State is lost: next call's err %v", err)
	}
}
