package middleware

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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
