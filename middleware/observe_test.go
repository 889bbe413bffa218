package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

type eventLog struct {
	timeline.BaseObserver
	mu     sync.Mutex
	events []string
	last   *timeline.Timeline
}

func (e *eventLog) add(s string)                               { e.mu.Lock(); e.events = append(e.events, s); e.mu.Unlock() }
func (e *eventLog) OnStart(context.Context, string, time.Time) { e.add("start") }
func (e *eventLog) OnAttempt(_ context.Context, _ string, r timeline.AttemptRecord) {
	e.add("attempt:" + r.Outcome.String())
}
func (e *eventLog) OnFinish(_ context.Context, tl *timeline.Timeline) { e.add("finish"); e.last = tl }

func TestObserveAloneRecordsTheCallAsOneAttempt(t *testing.T) {
	log := &eventLog{}
	boom := errors.New("boom")
	ep := Observe("a.b", WithObserver(log), withAttributes(map[string]string{"x": "y"}), withPolicyID("p1"))(
		func(context.Context, any) (any, error) { return nil, boom })
	_, err := ep(context.Background(), nil)
	if err != boom {
		t.Fatalf("err = %v", err)
	}
	want := []string{"start", "attempt:retryable", "finish"}
	if len(log.events) != 3 || log.events[0] != want[0] || log.events[1] != want[1] || log.events[2] != want[2] {
		t.Fatalf("events = %v, want %v", log.events, want)
	}
	tl := log.last
	if tl.Key != "a.b" || tl.PolicyID != "p1" || tl.Attributes["x"] != "y" || tl.Err != boom || tl.End.Before(tl.Start) {
		t.Fatalf("timeline = %+v", tl)
	}
}

func TestObserveFillsOneRecordPerTry(t *testing.T) {
	log := &eventLog{}
	var n int
	ep := endpoint.Chain(Observe("k", WithObserver(log)), Retry(MaxAttempts(3), WithBackoff(BackoffConfig{Initial: time.Microsecond, Max: time.Microsecond, Multiplier: 1})), Classify(nil))(
		func(context.Context, any) (any, error) {
			n++
			if n < 3 {
				return nil, errFlaky
			}
			return "ok", nil
		})
	if _, err := ep(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := len(log.last.Attempts); got != 3 {
		t.Fatalf("records = %d, want 3", got)
	}
	for _, a := range log.last.Attempts {
		if a.EndTime.Before(a.StartTime) || a.StartTime.Before(log.last.Start) || a.EndTime.After(log.last.End) {
			t.Fatalf("record outside its call: %+v", a)
		}
	}
	if log.last.Attempts[0].Backoff != time.Microsecond {
		t.Fatalf("backoff = %v", log.last.Attempts[0].Backoff)
	}
}

func TestObserveWithoutCaptureOrObserverAllocatesNothing(t *testing.T) {
	ep := endpoint.Chain(Observe("k"), Classify(nil))(func(context.Context, any) (any, error) { return nil, nil })
	ctx := context.Background()
	if n := testing.AllocsPerRun(200, func() { _, _ = ep(ctx, nil) }); n != 0 {
		t.Fatalf("allocs = %v, want 0", n)
	}
}

func TestNestedCallDoesNotWriteIntoOuterTimeline(t *testing.T) {
	inner := endpoint.Chain(Observe("inner"), Retry(MaxAttempts(1)), Classify(nil))(endpoint.Nop)
	outer := endpoint.Chain(Observe("outer", WithObserver(&eventLog{})), Retry(MaxAttempts(1)), Classify(nil))(
		func(ctx context.Context, req any) (any, error) { return inner(ctx, req) })
	ctx, c := recordCall(context.Background())
	if _, err := outer(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tl := c.Timeline()
	if tl.Key != "outer" || len(tl.Attempts) != 1 {
		t.Fatalf("outer timeline = %v", tl)
	}
}

type spanKey struct{}

// ctxObserver is a ContextObserver putting its mark in the call's context
// and noting which events saw it.
type ctxObserver struct {
	eventLog
	ret    func(ctx context.Context) context.Context // what CallContext returns; nil: ctx with the mark
	starts []time.Time
	marked []string
}

func (o *ctxObserver) CallContext(ctx context.Context, key string, start time.Time) context.Context {
	o.mu.Lock()
	o.starts = append(o.starts, start)
	o.mu.Unlock()
	if o.ret != nil {
		return o.ret(ctx)
	}
	return context.WithValue(ctx, spanKey{}, "span:"+key)
}

func (o *ctxObserver) saw(ctx context.Context, ev string) {
	if v, _ := ctx.Value(spanKey{}).(string); v != "" {
		o.mu.Lock()
		o.marked = append(o.marked, ev)
		o.mu.Unlock()
	}
}

func (o *ctxObserver) OnStart(ctx context.Context, k string, s time.Time) {
	o.saw(ctx, "start")
	o.eventLog.OnStart(ctx, k, s)
}
func (o *ctxObserver) OnAttempt(ctx context.Context, k string, r timeline.AttemptRecord) {
	o.saw(ctx, "attempt")
	o.eventLog.OnAttempt(ctx, k, r)
}
func (o *ctxObserver) OnFinish(ctx context.Context, tl *timeline.Timeline) {
	o.saw(ctx, "finish")
	o.eventLog.OnFinish(ctx, tl)
}

// The context a ContextObserver makes is the call's: every try runs in it
// and the observer's events of the call get it; CallContext is told the
// timeline's start.
func TestObserveCallContextReachesTriesAndEvents(t *testing.T) {
	obs := &ctxObserver{}
	fake := clock.NewFake(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	var inTries []string
	ep := endpoint.Chain(Observe("a.B", WithObserver(obs), WithClock(fake)),
		Retry(MaxAttempts(2), WithBackoff(BackoffConfig{Initial: time.Microsecond, Max: time.Microsecond, Multiplier: 1})), Classify(nil))(
		func(ctx context.Context, _ any) (any, error) {
			v, _ := ctx.Value(spanKey{}).(string)
			inTries = append(inTries, v)
			fake.Advance(time.Millisecond)
			if len(inTries) == 1 {
				return nil, errFlaky
			}
			return nil, nil
		})
	if _, err := ep(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if len(inTries) != 2 || inTries[0] != "span:a.B" || inTries[1] != "span:a.B" {
		t.Errorf("tries saw %q, want the mark in both", inTries)
	}
	if want := []string{"start", "attempt", "attempt", "finish"}; fmt.Sprint(obs.marked) != fmt.Sprint(want) {
		t.Errorf("events with the mark: %v, want %v", obs.marked, want)
	}
	if len(obs.starts) != 1 || !obs.starts[0].Equal(obs.last.Start) {
		t.Errorf("CallContext starts %v, want once, the timeline's %v", obs.starts, obs.last.Start)
	}
	if len(obs.last.Attempts) != 2 {
		t.Errorf("timeline has %d attempts, want 2", len(obs.last.Attempts))
	}
}

// A CallContext returning nil or a context not derived from the call's is
// ignored: the call still runs in its own context (its deadline, values
// and recorder kept) and is recorded.
func TestObserveIgnoresForeignCallContext(t *testing.T) {
	for name, ret := range map[string]func(context.Context) context.Context{
		"nil":        func(context.Context) context.Context { return nil },
		"background": func(context.Context) context.Context { return context.Background() },
	} {
		t.Run(name, func(t *testing.T) {
			obs := &ctxObserver{ret: ret}
			type callerKey struct{}
			var sawCaller bool
			ep := endpoint.Chain(Observe("a.B", WithObserver(obs)), Classify(nil))(
				func(ctx context.Context, _ any) (any, error) {
					sawCaller = ctx.Value(callerKey{}) == "v"
					return nil, nil
				})
			ctx, c := recordCall(context.WithValue(context.Background(), callerKey{}, "v"))
			if _, err := ep(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if !sawCaller {
				t.Error("the try lost the caller's context")
			}
			if tl := c.Timeline(); tl == nil || len(tl.Attempts) != 1 {
				t.Errorf("timeline = %v, want one attempt", tl)
			}
		})
	}
}
