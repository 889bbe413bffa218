package recourse

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

type markKey struct{}

// marker is a timeline.ContextObserver: it marks the call's context, or
// panics in CallContext when boom is set, and notes whether OnFinish saw
// the mark.
type marker struct {
	timeline.BaseObserver
	boom     bool
	finished chan bool
}

func (m *marker) CallContext(ctx context.Context, key string, _ time.Time) context.Context {
	if m.boom {
		panic("CallContext boom")
	}
	return context.WithValue(ctx, markKey{}, key)
}

func (m *marker) OnFinish(ctx context.Context, _ *timeline.Timeline) {
	m.finished <- ctx.Value(markKey{}) != nil
}

// The executor's chain hands every try the context its observer made,
// through the full chain, with recovery on and off, alone and in a Multi.
func TestCallContextThroughTheExecutor(t *testing.T) {
	full := []policy.Option{policy.MaxAttempts(2), policy.Backoff(time.Microsecond, time.Microsecond, 1),
		policy.OverallTimeout(time.Second), policy.TimeoutPerAttempt(time.Second),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 100}),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Second})}
	for _, tc := range []struct {
		name string
		opts []Option
		obs  func(*marker) timeline.Observer
	}{
		{"guarded", nil, func(m *marker) timeline.Observer { return m }},
		{"unguarded", []Option{WithoutPanicRecovery()}, func(m *marker) timeline.Observer { return m }},
		{"multi", nil, func(m *marker) timeline.Observer {
			return timeline.Multi(timeline.NoopObserver{}, &marker{finished: make(chan bool, 1)}, m)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &marker{finished: make(chan bool, 1)}
			e := NewExecutor(append(tc.opts, WithObserver(tc.obs(m)), WithPolicy("svc.Op", full...))...)
			var marks []any
			err := e.Do(context.Background(), "svc.Op", func(ctx context.Context) error {
				marks = append(marks, ctx.Value(markKey{}))
				if len(marks) == 1 {
					return errors.New("flaky")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(marks) != 2 || marks[0] != "svc.Op" || marks[1] != "svc.Op" {
				t.Errorf("tries saw marks %v, want svc.Op twice", marks)
			}
			if !<-m.finished {
				t.Error("OnFinish did not get the call's context")
			}
		})
	}
}

// A panic in CallContext is an observer panic like the others: recovered,
// returned as a *PanicError with the call's result, and the call runs in
// the context it had.
func TestCallContextPanicIsRecovered(t *testing.T) {
	m := &marker{boom: true, finished: make(chan bool, 1)}
	e := NewExecutor(WithObserver(timeline.Multi(m)), WithPolicy("svc.Op", policy.MaxAttempts(1)))
	type callerKey struct{}
	ctx := context.WithValue(context.Background(), callerKey{}, 1)
	runs := 0
	tl, err := e.DoWithTimeline(ctx, "svc.Op", func(ctx context.Context) error {
		if ctx.Value(callerKey{}) == 1 {
			runs++
		}
		return nil
	})
	if pe := observerPanic(err); pe == nil || runs != 1 {
		t.Fatalf("err %v, op ran %d times in the caller's context: want the observer's *PanicError and one run", err, runs)
	}
	if tl == nil || len(tl.Attempts) != 1 || observerPanic(tl.Err) == nil {
		t.Errorf("timeline %+v: want one attempt and the panic", tl)
	}
	if <-m.finished {
		t.Error("OnFinish saw a mark CallContext never made")
	}
	// Recovery off: the panic is the caller's.
	e = NewExecutor(WithoutPanicRecovery(), WithObserver(m))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("recovery off: CallContext's panic did not reach the caller")
			}
		}()
		_ = e.Do(context.Background(), "svc.Op", func(context.Context) error { return nil })
	}()
}

// An observer without the hook is guarded without it, so calls do not pay
// for it.
func TestGuardOnlyAddsTheHookWhenImplemented(t *testing.T) {
	if _, ok := guard(panicsIn{}).(timeline.ContextObserver); ok {
		t.Error("guard of a plain observer implements ContextObserver")
	}
	if _, ok := guard(&marker{}).(timeline.ContextObserver); !ok {
		t.Error("guard of a ContextObserver hides the hook")
	}
}
