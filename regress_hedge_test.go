package recourse

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// hedgedExecutor runs key "k" with one attempt hedged after 1ms of the
// fake clock.
func hedgedExecutor(f *clock.Fake, opts ...Option) *Executor {
	return NewExecutor(append([]Option{WithClock(f), WithPolicy("k", policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1}))}, opts...)...)
}

// runHedged calls op on e under key "k" on its own goroutine, fires the
// hedge, and returns the call's error or the value it panicked with.
func runHedged(t *testing.T, f *clock.Fake, e *Executor, op func(context.Context) error) (panicked any, err error) {
	t.Helper()
	type result struct {
		err      error
		panicked any
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			r.panicked = recover()
			done <- r
		}()
		r.err = e.Do(context.Background(), "k", op)
	}()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	select {
	case r := <-done:
		return r.panicked, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not return")
	}
	return nil, nil
}

// hedgePanics blocks its primary try until cancelled and panics in its hedge.
func hedgePanics(ctx context.Context) error {
	if info, _ := endpoint.AttemptFromContext(ctx); info.IsHedge() {
		panic("hedge boom")
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestRegressHedgePanicWithoutRecoveryReachesTheCaller(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	p, err := runHedged(t, f, hedgedExecutor(f, WithoutPanicRecovery()), hedgePanics)
	if p != "hedge boom" {
		t.Fatalf("err %v, panicked %v: the hedge's panic must be raised on the caller's goroutine", err, p)
	}
}

func TestRegressHedgePanicWithRecoveryIsAPanicError(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	p, err := runHedged(t, f, hedgedExecutor(f), hedgePanics)
	var pe *PanicError
	if p != nil || !errors.As(err, &pe) || pe.Value != "hedge boom" {
		t.Fatalf("err %v, panicked %v: want a *PanicError", err, p)
	}
}

// hedgeObserverPanics panics when a hedge is spawned.
type hedgeObserverPanics struct{ timeline.BaseObserver }

func (hedgeObserverPanics) OnHedge(context.Context, timeline.HedgeEvent) { panic("observer boom") }

func TestRegressHedgeObserverPanicWithoutRecoveryReachesTheCaller(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	e := hedgedExecutor(f, WithoutPanicRecovery(), WithObserver(hedgeObserverPanics{}))
	if p, err := runHedged(t, f, e, hedgePanics); p != "observer boom" {
		t.Fatalf("err %v, panicked %v", err, p)
	}
}

func TestRegressHedgeObserverPanicWithRecoveryIsAPanicError(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	e := hedgedExecutor(f, WithObserver(hedgeObserverPanics{}))
	p, err := runHedged(t, f, e, hedgePanics)
	// The observer's panic is recovered where it happens, without cutting
	// the hedge short, and the call returns it beside the operation's own.
	pe := observerPanic(err)
	if p != nil || pe == nil || pe.Value != "observer boom" || pe.Key != "k" {
		t.Fatalf("err %v, panicked %v: want the observer's *PanicError", err, p)
	}
}

// observerPanic returns the *PanicError of component "observer" in err's
// tree, or nil.
func observerPanic(err error) *PanicError {
	var pe *PanicError
	if errors.As(err, &pe) && pe.Component == "observer" {
		return pe
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if pe := observerPanic(e); pe != nil {
				return pe
			}
		}
	}
	if u := errors.Unwrap(err); u != nil {
		return observerPanic(u)
	}
	return nil
}
