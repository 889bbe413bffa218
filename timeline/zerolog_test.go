package timeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/timeline"
)

// The tests below pin the JSON lines NewZerologObserver writes, byte for
// byte except for call ids (random per process): every call id is
// replaced by C1, C2, … in order of first appearance, so the golden lines
// also show which lines share a call and that different calls differ.

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// at returns t0 plus ms milliseconds.
func at(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }

// testClock is a settable clock for recorders.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

var callIDRe = regexp.MustCompile(`"call_id":"([^"]*)"`)

// zlog gives fn a zerolog observer over a buffer and returns the lines it
// wrote, call ids normalised, each checked against the schema rules.
func zlog(t *testing.T, fn func(obs timeline.Observer)) []string {
	t.Helper()
	var buf bytes.Buffer
	fn(timeline.NewZerologObserver(zerolog.New(&buf)))
	ids := map[string]string{}
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		checkSchema(t, line)
		line = callIDRe.ReplaceAllStringFunc(line, func(m string) string {
			id := callIDRe.FindStringSubmatch(m)[1]
			if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
				t.Errorf("call_id %q is not 16 hex digits", id)
			}
			if _, ok := ids[id]; !ok {
				ids[id] = fmt.Sprintf("C%d", len(ids)+1)
			}
			return `"call_id":"` + ids[id] + `"`
		})
		lines = append(lines, line)
	}
	return lines
}

// checkSchema applies the rules every line obeys: valid JSON; a known
// event; no empty strings, nulls or zero times; durations only in *_ms
// number fields; reason never repeats outcome.
func checkSchema(t *testing.T, line string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("not JSON: %s: %v", line, err)
	}
	switch m["event"] {
	case "attempt", "call", "budget", "hedge", "breaker", "policy_reload", "policy_problem":
	default:
		t.Errorf("unknown event %v: %s", m["event"], line)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case nil:
			t.Errorf("%s is null: %s", path, line)
		case string:
			if v == "" {
				t.Errorf("%s is empty: %s", path, line)
			}
			if strings.HasPrefix(v, "0001-01-01") {
				t.Errorf("%s is a zero time: %s", path, line)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		case map[string]any:
			if r, ok := v["reason"]; ok && r == v["outcome"] {
				t.Errorf("%s: reason repeats outcome %v: %s", path, r, line)
			}
			for k, x := range v {
				switch k {
				case "duration", "backoff", "after", "err", "elapsed", "delay":
					t.Errorf("%s.%s: a duration without its unit: %s", path, k, line)
				}
				if strings.HasSuffix(k, "_ms") {
					if _, ok := x.(float64); !ok {
						t.Errorf("%s.%s is not a number: %s", path, k, line)
					}
				}
				walk(path+"."+k, x)
			}
		}
	}
	walk("", m)
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, got[i], want[i])
		}
	}
}

func TestZerologGoldenRetries(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		c := &testClock{t: t0}
		r := record.New("inventory.Get", obs, c.now)
		r.SetAttribute(timeline.AttrPolicySource, "static")
		r.SetAttribute(timeline.AttrPolicyError, "") // empty: left out
		ctx := record.NewContext(context.Background(), r)
		r.Start(ctx)
		r.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, StartTime: at(0), EndTime: at(1.5), Outcome: timeline.OutcomeRetryable,
			Reason: timeline.ReasonRetryable, Status: "503", Err: errors.New("server error: 503")})
		r.SetBackoff(1, 20*time.Millisecond)
		r.Attempt(ctx, timeline.AttemptRecord{Attempt: 2, StartTime: at(21.5), EndTime: at(121.5), Outcome: timeline.OutcomeRetryable,
			Reason: timeline.ReasonTimeout, Err: errors.New("attempt timed out")})
		r.SetBackoff(2, 40*time.Millisecond+1234*time.Nanosecond) // rounded to the microsecond
		r.Attempt(ctx, timeline.AttemptRecord{Attempt: 3, StartTime: at(161.5), EndTime: at(162.25), Outcome: timeline.OutcomeSuccess,
			Reason: timeline.ReasonSuccess, Status: "200"})
		c.t = at(162.5)
		r.Finish(ctx, nil)

		// A second call, with a policy id, that fails at once.
		c.t = at(200)
		r = record.New("inventory.Get", obs, c.now)
		r.SetPolicyID("v7")
		ctx = record.NewContext(context.Background(), r)
		r.Start(ctx)
		r.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, StartTime: at(200.001), EndTime: at(200.5), Outcome: timeline.OutcomeNonRetryable,
			Reason: timeline.ReasonNonRetryable, Status: "400", Err: errors.New("client error: 400")})
		c.t = at(200.75)
		r.Finish(ctx, errors.New("client error: 400"))
	})
	wantLines(t, lines,
		`{"level":"warn","event":"attempt","key":"inventory.Get","call_id":"C1","attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":1.5,"outcome":"retryable","status":"503","error":"server error: 503","message":"recourse attempt"}`,
		`{"level":"warn","event":"attempt","key":"inventory.Get","call_id":"C1","attempt":2,"hedge_index":0,"start_ms":21.5,"duration_ms":100,"outcome":"retryable","reason":"timeout","error":"attempt timed out","message":"recourse attempt"}`,
		`{"level":"info","event":"attempt","key":"inventory.Get","call_id":"C1","attempt":3,"hedge_index":0,"start_ms":161.5,"duration_ms":0.75,"outcome":"success","status":"200","message":"recourse attempt"}`,
		`{"level":"info","event":"call","key":"inventory.Get","call_id":"C1","start":"2026-11-25T09:00:00Z","duration_ms":162.5,"outcome":"success","attempts":3,"attributes":{"policy_source":"static"},"timeline":[`+
			`{"attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":1.5,"outcome":"retryable","status":"503","error":"server error: 503","backoff_ms":20},`+
			`{"attempt":2,"hedge_index":0,"start_ms":21.5,"duration_ms":100,"outcome":"retryable","reason":"timeout","error":"attempt timed out","backoff_ms":40.001},`+
			`{"attempt":3,"hedge_index":0,"start_ms":161.5,"duration_ms":0.75,"outcome":"success","status":"200"}],"message":"recourse call"}`,
		`{"level":"warn","event":"attempt","key":"inventory.Get","call_id":"C2","attempt":1,"hedge_index":0,"start_ms":0.001,"duration_ms":0.499,"outcome":"non_retryable","status":"400","error":"client error: 400","message":"recourse attempt"}`,
		`{"level":"error","event":"call","key":"inventory.Get","call_id":"C2","start":"2026-11-25T09:00:00.2Z","duration_ms":0.75,"outcome":"failure","attempts":1,"policy_id":"v7","error":"client error: 400","timeline":[`+
			`{"attempt":1,"hedge_index":0,"start_ms":0.001,"duration_ms":0.499,"outcome":"non_retryable","status":"400","error":"client error: 400"}],"message":"recourse call"}`,
	)
}

func TestZerologGoldenHedgeRace(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		c := &testClock{t: t0}
		r := record.New("pricing.Get", obs, c.now)
		ctx := record.NewContext(context.Background(), r)
		r.Start(ctx)
		// As the hedge decorator does: the race's tries record into a
		// held recorder, released once the race is decided.
		held := r.Hold()
		hctx := record.NewContext(ctx, held)
		c.t = at(10)
		held.Hedge(hctx, timeline.HedgeEvent{Attempt: 1, HedgeIndex: 1, After: 10 * time.Millisecond, Trigger: "fixed"})
		held.Attempt(hctx, timeline.AttemptRecord{Attempt: 1, HedgeIndex: 1, StartTime: at(10), EndTime: at(14), Outcome: timeline.OutcomeSuccess,
			Reason: timeline.ReasonSuccess})
		held.Attempt(hctx, timeline.AttemptRecord{Attempt: 1, StartTime: at(0), EndTime: at(14.2), Outcome: timeline.OutcomeAbort,
			Reason: timeline.ReasonCanceled, Err: context.Canceled})
		held.Release(hctx, func(a *timeline.AttemptRecord) {
			if a.HedgeIndex == 1 {
				a.Reason = timeline.ReasonHedgeWon
			} else {
				a.Reason = timeline.ReasonHedgeLost
			}
		})
		c.t = at(14.5)
		r.Finish(ctx, nil)
	})
	wantLines(t, lines,
		`{"level":"info","event":"hedge","key":"pricing.Get","call_id":"C1","attempt":1,"hedge_index":1,"after_ms":10,"trigger":"fixed","message":"recourse hedge"}`,
		`{"level":"info","event":"attempt","key":"pricing.Get","call_id":"C1","attempt":1,"hedge_index":1,"start_ms":10,"duration_ms":4,"outcome":"success","reason":"hedge_won","message":"recourse attempt"}`,
		`{"level":"info","event":"attempt","key":"pricing.Get","call_id":"C1","attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":14.2,"outcome":"abort","reason":"hedge_lost","error":"context canceled","message":"recourse attempt"}`,
		`{"level":"info","event":"call","key":"pricing.Get","call_id":"C1","start":"2026-11-25T09:00:00Z","duration_ms":14.5,"outcome":"success","attempts":2,"timeline":[`+
			`{"attempt":1,"hedge_index":1,"start_ms":10,"duration_ms":4,"outcome":"success","reason":"hedge_won"},`+
			`{"attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":14.2,"outcome":"abort","reason":"hedge_lost","error":"context canceled"}],"message":"recourse call"}`,
	)
}

func TestZerologGoldenBudgetDenial(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		c := &testClock{t: t0}
		r := record.New("inventory.Get", obs, c.now)
		ctx := record.NewContext(context.Background(), r)
		r.Start(ctx)
		r.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, StartTime: at(0), EndTime: at(2), Outcome: timeline.OutcomeRetryable,
			Reason: timeline.ReasonRetryable, Err: errors.New("server error: 503")})
		r.SetBackoff(1, 10*time.Millisecond)
		// An allowed decision is logged at debug, a refused one at warn.
		r.BudgetDecision(ctx, timeline.BudgetDecision{Attempt: 2, Hedge: true, Allowed: true, Reason: "unlimited"})
		r.BudgetDecision(ctx, timeline.BudgetDecision{Budget: "inventory", Attempt: 2, Allowed: false, Reason: "ratio_exceeded"})
		r.Attempt(ctx, timeline.AttemptRecord{Attempt: 2, StartTime: at(12), EndTime: at(12), Outcome: timeline.OutcomeAbort,
			Reason: timeline.ReasonBudgetDenied, Err: errors.New("recourse: retry budget exhausted")})
		c.t = at(12.5)
		r.Finish(ctx, errors.New("server error: 503"))
	})
	wantLines(t, lines,
		`{"level":"warn","event":"attempt","key":"inventory.Get","call_id":"C1","attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":2,"outcome":"retryable","error":"server error: 503","message":"recourse attempt"}`,
		`{"level":"debug","event":"budget","key":"inventory.Get","call_id":"C1","attempt":2,"hedge":true,"allowed":true,"reason":"unlimited","message":"recourse budget allowed"}`,
		`{"level":"warn","event":"budget","key":"inventory.Get","call_id":"C1","budget":"inventory","attempt":2,"allowed":false,"reason":"ratio_exceeded","message":"recourse budget denied"}`,
		`{"level":"warn","event":"attempt","key":"inventory.Get","call_id":"C1","attempt":2,"hedge_index":0,"start_ms":12,"duration_ms":0,"outcome":"abort","reason":"budget_denied","error":"recourse: retry budget exhausted","message":"recourse attempt"}`,
		`{"level":"error","event":"call","key":"inventory.Get","call_id":"C1","start":"2026-11-25T09:00:00Z","duration_ms":12.5,"outcome":"failure","attempts":2,"error":"server error: 503","timeline":[`+
			`{"attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":2,"outcome":"retryable","error":"server error: 503","backoff_ms":10},`+
			`{"attempt":2,"hedge_index":0,"start_ms":12,"duration_ms":0,"outcome":"abort","reason":"budget_denied","error":"recourse: retry budget exhausted"}],"message":"recourse call"}`,
	)
}

func TestZerologGoldenBreakerCycle(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "warehouse.Stock", From: "closed", To: "open", At: at(5)})
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "warehouse.Stock", From: "open", To: "half_open", At: at(205)})
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "warehouse.Stock", From: "half_open", To: "open", At: at(206.5)})
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "warehouse.Stock", From: "open", To: "half_open", At: at(406.5)})
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "warehouse.Stock", From: "half_open", To: "closed", At: at(407)})
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "warehouse.Stock", From: "open", To: "closed"}) // no time: left out
	})
	wantLines(t, lines,
		`{"level":"warn","event":"breaker","key":"warehouse.Stock","from":"closed","to":"open","at":"2026-11-25T09:00:00.005Z","message":"recourse breaker opened"}`,
		`{"level":"info","event":"breaker","key":"warehouse.Stock","from":"open","to":"half_open","at":"2026-11-25T09:00:00.205Z","message":"recourse breaker half-open: probing"}`,
		`{"level":"warn","event":"breaker","key":"warehouse.Stock","from":"half_open","to":"open","at":"2026-11-25T09:00:00.2065Z","message":"recourse breaker opened"}`,
		`{"level":"info","event":"breaker","key":"warehouse.Stock","from":"open","to":"half_open","at":"2026-11-25T09:00:00.4065Z","message":"recourse breaker half-open: probing"}`,
		`{"level":"info","event":"breaker","key":"warehouse.Stock","from":"half_open","to":"closed","at":"2026-11-25T09:00:00.407Z","message":"recourse breaker closed"}`,
		`{"level":"info","event":"breaker","key":"warehouse.Stock","from":"open","to":"closed","message":"recourse breaker closed"}`,
	)
}

func TestZerologGoldenPolicyReload(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		obs.OnPolicyReload(timeline.PolicyReload{Source: "file:policies.yaml", Version: 3})
		obs.OnPolicyReload(timeline.PolicyReload{Source: "file:policies.yaml", Version: 4, Err: errors.New("policies.yaml: line 3: bad duration")})
		obs.OnPolicyReload(timeline.PolicyReload{}) // nothing known: only the event
	})
	wantLines(t, lines,
		`{"level":"info","event":"policy_reload","source":"file:policies.yaml","version":3,"message":"recourse policies reloaded"}`,
		`{"level":"error","event":"policy_reload","source":"file:policies.yaml","version":4,"error":"policies.yaml: line 3: bad duration","message":"recourse policy reload failed; keeping the last good policies"}`,
		`{"level":"info","event":"policy_reload","message":"recourse policies reloaded"}`,
	)
}

func TestZerologGoldenPolicyProblem(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		po, ok := obs.(timeline.PolicyProblemObserver)
		if !ok {
			t.Fatal("the zerolog observer does not hear of policy problems")
		}
		po.OnPolicyProblem(timeline.PolicyProblem{Key: "payments.Charge", Field: "budget", Name: "payments", Mode: "deny",
			Err: errors.New(`recourse: key "payments.Charge": budget "payments" is not registered`)})
		po.OnPolicyProblem(timeline.PolicyProblem{Key: "pricing.Get", Field: "hedge.trigger", Name: "p99x", Mode: "fallback"})
	})
	wantLines(t, lines,
		`{"level":"error","event":"policy_problem","key":"payments.Charge","field":"budget","name":"payments","mode":"deny","error":"recourse: key \"payments.Charge\": budget \"payments\" is not registered","message":"recourse policy names what the executor cannot resolve"}`,
		`{"level":"warn","event":"policy_problem","key":"pricing.Get","field":"hedge.trigger","name":"p99x","mode":"fallback","message":"recourse policy names what the executor cannot resolve"}`,
	)
}

// Events reported outside a recourse call (no recorder in the context)
// have no call id and no offsets, and nothing empty.
func TestZerologOutsideACall(t *testing.T) {
	lines := zlog(t, func(obs timeline.Observer) {
		ctx := context.Background()
		obs.OnStart(ctx, "k.Op", t0)
		obs.OnAttempt(ctx, "k.Op", timeline.AttemptRecord{Attempt: 1, StartTime: at(0), EndTime: at(3), Outcome: timeline.OutcomeRetryable,
			Reason: timeline.ReasonTimeout})
		obs.OnHedge(ctx, timeline.HedgeEvent{Key: "k.Op", Attempt: 1, HedgeIndex: 2, After: 30 * time.Millisecond})
		obs.OnBudgetDecision(ctx, timeline.BudgetDecision{Key: "k.Op", Attempt: 0})
		obs.OnFinish(ctx, &timeline.Timeline{Key: "k.Op", Attributes: map[string]string{"a": "", "b": "x"}})
	})
	wantLines(t, lines,
		`{"level":"warn","event":"attempt","key":"k.Op","attempt":1,"hedge_index":0,"duration_ms":3,"outcome":"retryable","reason":"timeout","message":"recourse attempt"}`,
		`{"level":"info","event":"hedge","key":"k.Op","attempt":1,"hedge_index":2,"after_ms":30,"message":"recourse hedge"}`,
		`{"level":"warn","event":"budget","key":"k.Op","attempt":1,"allowed":false,"message":"recourse budget denied"}`,
		`{"level":"info","event":"call","key":"k.Op","duration_ms":0,"outcome":"success","attempts":0,"attributes":{"b":"x"},"message":"recourse call"}`,
	)
}

// The schema does not move with zerolog's global settings: durations,
// times and errors are written by the observer itself.
func TestZerologIgnoresZerologGlobals(t *testing.T) {
	prec, unit, tf, errMarshal := zerolog.FloatingPointPrecision, zerolog.DurationFieldUnit, zerolog.TimeFieldFormat, zerolog.ErrorMarshalFunc
	zerolog.FloatingPointPrecision, zerolog.DurationFieldUnit, zerolog.TimeFieldFormat = 0, time.Second, zerolog.TimeFormatUnix
	zerolog.ErrorMarshalFunc = func(error) interface{} { return "redacted" }
	defer func() {
		zerolog.FloatingPointPrecision, zerolog.DurationFieldUnit, zerolog.TimeFieldFormat, zerolog.ErrorMarshalFunc = prec, unit, tf, errMarshal
	}()
	lines := zlog(t, func(obs timeline.Observer) {
		obs.OnAttempt(context.Background(), "k.Op", timeline.AttemptRecord{Attempt: 1, StartTime: at(0), EndTime: at(1.25),
			Outcome: timeline.OutcomeRetryable, Err: errors.New("boom")})
		obs.OnBreakerState(timeline.BreakerStateChange{Key: "k.Op", From: "closed", To: "open", At: at(5)})
	})
	wantLines(t, lines,
		`{"level":"warn","event":"attempt","key":"k.Op","attempt":1,"hedge_index":0,"duration_ms":1.25,"outcome":"retryable","error":"boom","message":"recourse attempt"}`,
		`{"level":"warn","event":"breaker","key":"k.Op","from":"closed","to":"open","at":"2026-11-25T09:00:00.005Z","message":"recourse breaker opened"}`,
	)
}

// Concurrent calls through one observer get distinct call ids, and every
// line of a call carries its own.
func TestZerologCallIDsGroupConcurrentCalls(t *testing.T) {
	var buf bytes.Buffer
	obs := timeline.NewZerologObserver(zerolog.New(&buf))
	c := &testClock{t: t0} // same start for every call
	var recs []*record.Recorder
	var ctxs []context.Context
	for i := 0; i < 3; i++ {
		r := record.New("k.Op", obs, c.now)
		ctx := record.NewContext(context.Background(), r)
		r.Start(ctx)
		recs, ctxs = append(recs, r), append(ctxs, ctx)
	}
	for i, r := range recs {
		r.Attempt(ctxs[i], timeline.AttemptRecord{Attempt: 1, StartTime: t0, EndTime: t0, Outcome: timeline.OutcomeSuccess, Err: nil,
			Status: fmt.Sprint(i)})
	}
	for i, r := range recs {
		r.Finish(ctxs[i], nil)
	}
	byStatus := map[string]string{}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		id, _ := m["call_id"].(string)
		if id == "" {
			t.Fatalf("no call_id: %s", line)
		}
		switch m["event"] {
		case "attempt":
			byStatus[m["status"].(string)] = id
			seen[id] = true
		case "call":
			status := m["timeline"].([]any)[0].(map[string]any)["status"].(string)
			if byStatus[status] != id {
				t.Errorf("call line %s: its attempt had call_id %s", line, byStatus[status])
			}
		}
	}
	if len(seen) != 3 {
		t.Fatalf("want 3 distinct call ids, got %v", byStatus)
	}
}
