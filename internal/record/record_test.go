package record_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/timeline"
)

// derefObserver dereferences its receiver, as most pointer observers do.
type derefObserver struct {
	timeline.BaseObserver
	n int
}

func (d *derefObserver) OnStart(context.Context, string, time.Time) { d.n++ }

func noPanicT(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panicked: %v", r)
		}
	}()
	f()
}

func TestRecorderBuildsTimelineAndCapture(t *testing.T) {
	ctx, c := timeline.Record(context.Background())
	if c.Timeline() != nil {
		t.Fatal("timeline before any call")
	}
	r := record.New("a.b", nil, fixedNow())
	ctx = record.NewContext(ctx, r)
	if record.FromContext(ctx) != r {
		t.Fatal("recorder lost in context")
	}
	boom := errors.New("boom")
	r.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, StartTime: r.Now(), EndTime: r.Now(), Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonRetryable, Err: boom})
	r.SetBackoff(1, 5*time.Millisecond)
	r.Attempt(ctx, timeline.AttemptRecord{Attempt: 2, HedgeIndex: 1, Outcome: timeline.OutcomeSuccess, Reason: timeline.ReasonSuccess})
	if !r.Update(2, 1, func(a *timeline.AttemptRecord) { a.Reason = timeline.ReasonHedgeWon }) || r.Update(9, 0, func(*timeline.AttemptRecord) {}) {
		t.Fatal("Update found the wrong records")
	}
	r.SetAttribute(timeline.AttrPolicySource, "static")
	tl := r.Finish(ctx, nil)
	record.CaptureFromContext(ctx).Set(tl)
	got := c.Timeline()
	if got.Key != "a.b" || len(got.Attempts) != 2 || got.Attempts[0].Backoff != 5*time.Millisecond ||
		!got.Attempts[1].Hedge || got.Attempts[1].Reason != timeline.ReasonHedgeWon || got.Attributes[timeline.AttrPolicySource] != "static" {
		t.Fatalf("timeline = %+v", got)
	}
	// The snapshot is the caller's: later writes do not show through.
	r.SetAttribute(timeline.AttrPolicySource, "changed")
	r.Attempt(ctx, timeline.AttemptRecord{Attempt: 3})
	if got.Attributes[timeline.AttrPolicySource] != "static" || len(got.Attempts) != 2 {
		t.Fatal("snapshot changed after Finish")
	}
	if !strings.Contains(got.String(), "hedge 1") {
		t.Fatalf("String() = %q", got.String())
	}
}

func TestNilRecorderIsSafe(t *testing.T) {
	var r *record.Recorder
	r.Attempt(context.Background(), timeline.AttemptRecord{})
	r.SetBackoff(1, time.Second)
	r.SetAttribute("a", "b")
	if r.Finish(context.Background(), nil) != nil || r.Len() != 0 || !timeline.IsNoop(r.Observer()) {
		t.Fatal("nil recorder misbehaved")
	}
}

func TestZerologObserverWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	obs := timeline.NewZerologObserver(zerolog.New(&buf))
	r := record.New("payments.Charge", obs, fixedNow())
	ctx := context.Background()
	r.Start(ctx)
	r.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, StartTime: r.Now(), EndTime: r.Now(), Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonTimeout, Err: errors.New("slow")})
	r.Attempt(ctx, timeline.AttemptRecord{Attempt: 2, StartTime: r.Now(), EndTime: r.Now(), Outcome: timeline.OutcomeSuccess, Reason: timeline.ReasonSuccess})
	r.Finish(ctx, nil)

	var lines []map[string]any
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 2 attempts + 1 call", len(lines))
	}
	first := lines[0]
	for _, f := range []string{"key", "attempt", "outcome", "reason", "duration_ms", "error"} {
		if _, ok := first[f]; !ok {
			t.Fatalf("attempt line lacks %q: %v", f, first)
		}
	}
	if first["key"] != "payments.Charge" || first["reason"] != "timeout" || first["attempt"] != float64(1) || first["error"] != "slow" {
		t.Fatalf("attempt line = %v", first)
	}
	call := lines[2]
	if call["event"] != "call" || call["attempts"] != float64(2) || call["outcome"] != "success" {
		t.Fatalf("call line = %v", call)
	}
	if _, ok := call["duration_ms"]; !ok {
		t.Fatalf("call line lacks duration_ms: %v", call)
	}
}

func fixedNow() func() time.Time {
	var mu sync.Mutex
	t := time.Unix(100, 0)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

// A recorder given a typed-nil observer treats it as none: its events do
// not call methods on the nil pointer, and the timeline is still kept.
func TestRegressRecorderTypedNilObserver(t *testing.T) {
	var typedNil *derefObserver
	for i, o := range []timeline.Observer{typedNil, timeline.Multi(nil, typedNil)} {
		var tl *timeline.Timeline
		noPanicT(t, func() {
			ctx, c := timeline.Record(context.Background())
			r := record.New("k", o, nil)
			r.Start(ctx)
			r.Attempt(ctx, timeline.AttemptRecord{Attempt: 1})
			r.Hedge(ctx, timeline.HedgeEvent{})
			r.BudgetDecision(ctx, timeline.BudgetDecision{})
			h := r.Hold()
			h.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, HedgeIndex: 1})
			h.Release(ctx, nil)
			record.CaptureFromContext(ctx).Set(r.Finish(ctx, nil))
			tl = c.Timeline()
		})
		if tl == nil || len(tl.Attempts) != 2 {
			t.Fatalf("%d: timeline %+v", i, tl)
		}
		if !timeline.IsNoop(record.New("k", o, nil).Observer()) {
			t.Fatalf("%d: the recorder's observer is not the no-op one", i)
		}
	}
}
