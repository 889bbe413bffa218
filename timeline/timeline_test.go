package timeline

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
)

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

func TestRecorderBuildsTimelineAndCapture(t *testing.T) {
	ctx, c := Record(context.Background())
	if c.Timeline() != nil {
		t.Fatal("timeline before any call")
	}
	r := NewRecorder("a.b", nil, fixedNow())
	ctx = ContextWithRecorder(ctx, r)
	if RecorderFromContext(ctx) != r {
		t.Fatal("recorder lost in context")
	}
	boom := errors.New("boom")
	r.Attempt(ctx, AttemptRecord{Attempt: 1, StartTime: r.Now(), EndTime: r.Now(), Outcome: OutcomeRetryable, Reason: ReasonRetryable, Err: boom})
	r.SetBackoff(1, 5*time.Millisecond)
	r.Attempt(ctx, AttemptRecord{Attempt: 2, HedgeIndex: 1, Outcome: OutcomeSuccess, Reason: ReasonSuccess})
	if !r.Update(2, 1, func(a *AttemptRecord) { a.Reason = ReasonHedgeWon }) || r.Update(9, 0, func(*AttemptRecord) {}) {
		t.Fatal("Update found the wrong records")
	}
	r.SetAttribute(AttrPolicySource, "static")
	tl := r.Finish(ctx, nil)
	CaptureFromContext(ctx).Set(tl)
	got := c.Timeline()
	if got.Key != "a.b" || len(got.Attempts) != 2 || got.Attempts[0].Backoff != 5*time.Millisecond ||
		!got.Attempts[1].Hedge || got.Attempts[1].Reason != ReasonHedgeWon || got.Attributes[AttrPolicySource] != "static" {
		t.Fatalf("timeline = %+v", got)
	}
	// The snapshot is the caller's: later writes do not show through.
	r.SetAttribute(AttrPolicySource, "changed")
	r.Attempt(ctx, AttemptRecord{Attempt: 3})
	if got.Attributes[AttrPolicySource] != "static" || len(got.Attempts) != 2 {
		t.Fatal("snapshot changed after Finish")
	}
	if !strings.Contains(got.String(), "hedge 1") {
		t.Fatalf("String() = %q", got.String())
	}
}

func TestNilRecorderIsSafe(t *testing.T) {
	var r *Recorder
	r.Attempt(context.Background(), AttemptRecord{})
	r.SetBackoff(1, time.Second)
	r.SetAttribute("a", "b")
	if r.Finish(context.Background(), nil) != nil || r.Len() != 0 || !IsNoop(r.Observer()) {
		t.Fatal("nil recorder misbehaved")
	}
}

type counting struct {
	BaseObserver
	n int
}

func (c *counting) OnAttempt(context.Context, string, AttemptRecord) { c.n++ }

func TestMultiObserverFansOut(t *testing.T) {
	a, b := &counting{}, &counting{}
	m := MultiObserver{a, b}
	m.OnAttempt(context.Background(), "k", AttemptRecord{})
	if a.n != 1 || b.n != 1 {
		t.Fatalf("a=%d b=%d", a.n, b.n)
	}
	if IsNoop(m) || !IsNoop(NoopObserver{}) || !IsNoop(nil) {
		t.Fatal("IsNoop wrong")
	}
}

func TestZerologObserverWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	obs := NewZerologObserver(zerolog.New(&buf))
	r := NewRecorder("payments.Charge", obs, fixedNow())
	ctx := context.Background()
	r.Start(ctx)
	r.Attempt(ctx, AttemptRecord{Attempt: 1, StartTime: r.Now(), EndTime: r.Now(), Outcome: OutcomeRetryable, Reason: ReasonTimeout, Err: errors.New("slow")})
	r.Attempt(ctx, AttemptRecord{Attempt: 2, StartTime: r.Now(), EndTime: r.Now(), Outcome: OutcomeSuccess, Reason: ReasonSuccess})
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
