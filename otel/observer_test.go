package rotel_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	rotel "github.com/recourse-go/recourse/otel"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

var errDown = errors.New("dependency down: host 10.0.0.7 refused")

// harness is an Observer on in-memory SDK providers.
type harness struct {
	obs    *rotel.Observer
	tp     *sdktrace.TracerProvider
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		_ = h.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	h.obs = rotel.NewObserver(rotel.WithTracerProvider(h.tp), rotel.WithMeterProvider(mp))
	return h
}

// span returns the one ended span named name.
func (h *harness) span(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended spans named %q, want 1 (all: %v)", len(found), name, names(h.spans.Ended()))
	}
	return found[0]
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// metrics collects every metric, by name.
func (h *harness) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != rotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, rotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func attr(kvs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, what string, kvs []attribute.KeyValue, key string, want any) {
	t.Helper()
	v, ok := attr(kvs, key)
	if !ok {
		t.Errorf("%s: no attribute %s in %v", what, key, kvs)
		return
	}
	if got := v.AsInterface(); got != want {
		t.Errorf("%s: %s = %v (%T), want %v (%T)", what, key, got, got, want, want)
	}
}

// failTimes returns an operation failing its first n tries.
func failTimes(n int32) func(context.Context) error {
	var tries atomic.Int32
	return func(context.Context) error {
		if tries.Add(1) <= n {
			return errDown
		}
		return nil
	}
}

func TestSpanOfThreeAttemptCall(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3),
			policy.Backoff(time.Millisecond, time.Millisecond, 1), policy.WithID("payments-v3")))

	parentCtx, parent := h.tp.Tracer("test").Start(context.Background(), "handler")
	if err := exec.Do(parentCtx, "payments.Charge", failTimes(2)); err != nil {
		t.Fatal(err)
	}
	parent.End()

	s := h.span(t, "payments.Charge")
	if s.SpanKind() != trace.SpanKindInternal {
		t.Errorf("kind %v, want internal", s.SpanKind())
	}
	if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("call span's parent %v, want the handler's span %v", s.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	wantAttr(t, "span", s.Attributes(), rotel.AttrKey, "payments.Charge")
	wantAttr(t, "span", s.Attributes(), rotel.AttrAttempts, int64(3))
	wantAttr(t, "span", s.Attributes(), rotel.AttrPolicyID, "payments-v3")
	if _, ok := attr(s.Attributes(), rotel.AttrErrorType); ok {
		t.Errorf("error.type set on a successful call")
	}
	if s.Status().Code == codes.Error {
		t.Errorf("status %v on a successful call", s.Status())
	}
	evs := s.Events()
	wantNames := []string{"retryable", "retryable", "success"}
	if len(evs) != len(wantNames) {
		t.Fatalf("%d events, want %d: %v", len(evs), len(wantNames), evs)
	}
	for i, ev := range evs {
		if ev.Name != wantNames[i] {
			t.Errorf("event %d named %q, want %q", i, ev.Name, wantNames[i])
		}
		wantAttr(t, ev.Name, ev.Attributes, rotel.AttrAttempt, int64(i+1))
		wantAttr(t, ev.Name, ev.Attributes, rotel.AttrHedgeIndex, int64(0))
		v, _ := attr(ev.Attributes, rotel.AttrBackoff)
		if backoff := v.AsFloat64(); (i < 2) != (backoff > 0) || backoff > 1 {
			t.Errorf("event %d: backoff %vs", i, backoff)
		}
	}
	if s.StartTime().After(evs[0].Time) || s.EndTime().Before(evs[2].Time) {
		t.Errorf("events outside the span: %v..%v", s.StartTime(), s.EndTime())
	}
}

func TestSpanOfFailedCall(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("inventory.Get", policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	if err := exec.Do(context.Background(), "inventory.Get", failTimes(100)); !errors.Is(err, errDown) {
		t.Fatalf("err %v, want %v", err, errDown)
	}
	s := h.span(t, "inventory.Get")
	wantAttr(t, "span", s.Attributes(), rotel.AttrErrorType, "retryable")
	wantAttr(t, "span", s.Attributes(), rotel.AttrAttempts, int64(2))
	if _, ok := attr(s.Attributes(), rotel.AttrPolicyID); ok {
		t.Errorf("recourse.policy.id set for a policy without an ID")
	}
	if s.Status().Code != codes.Error {
		t.Errorf("status %v, want Error", s.Status())
	}
	for _, kv := range s.Attributes() {
		if kv.Value.Type() == attribute.STRING && kv.Value.AsString() == errDown.Error() {
			t.Errorf("attribute %s holds the error's text", kv.Key)
		}
	}
}

func TestHedge(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("pricing.Get", policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 5 * time.Millisecond, MaxHedges: 1})))
	var tries atomic.Int32
	op := func(ctx context.Context) error {
		if tries.Add(1) == 1 { // the primary try hangs until the hedge wins
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Second):
			}
		}
		return nil
	}
	if err := exec.Do(context.Background(), "pricing.Get", op); err != nil {
		t.Fatal(err)
	}
	s := h.span(t, "pricing.Get")
	var won bool
	for _, ev := range s.Events() {
		if ev.Name == "hedge_won" {
			won = true
			wantAttr(t, ev.Name, ev.Attributes, rotel.AttrHedgeIndex, int64(1))
			wantAttr(t, ev.Name, ev.Attributes, rotel.AttrAttempt, int64(1))
		}
	}
	if !won {
		t.Errorf("no hedge_won event in %v", s.Events())
	}
	m := h.metrics(t)
	wantHistCount(t, m, rotel.MetricCallHedges, "{hedge}", map[string]any{rotel.AttrKey: "pricing.Get"}, 1, 1)
	wantHistCount(t, m, rotel.MetricAttemptDuration, "s",
		map[string]any{rotel.AttrKey: "pricing.Get", rotel.AttrAttemptKind: "hedge", rotel.AttrReason: "hedge_won"}, 1, -1)
}

func TestBudgetDenial(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithBudget("none", middleware.NewTokenBucketBudget(0, 0)),
		recourse.WithPolicy("orders.Put", policy.MaxAttempts(3), policy.WithBudget("none"),
			policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	if err := exec.Do(context.Background(), "orders.Put", failTimes(100)); err == nil {
		t.Fatal("call succeeded; want the budget to refuse the retry")
	}
	s := h.span(t, "orders.Put")
	wantAttr(t, "span", s.Attributes(), rotel.AttrErrorType, "budget_denied")
	var denied bool
	for _, ev := range s.Events() {
		denied = denied || ev.Name == "budget_denied"
	}
	if !denied {
		t.Errorf("no budget_denied event in %v", s.Events())
	}
	m := h.metrics(t)
	wantSum(t, m, rotel.MetricBudgetDecisions, "{decision}",
		map[string]any{rotel.AttrKey: "orders.Put", rotel.AttrBudget: "none", rotel.AttrAllowed: false}, 1)
	// The refused retry did not run.
	wantHistCount(t, m, rotel.MetricCallRetries, "{retry}", map[string]any{rotel.AttrKey: "orders.Put"}, 1, 0)
}

func TestBreakerTransition(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("search.Query", policy.MaxAttempts(1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 2, Cooldown: time.Minute})))
	for i := 0; i < 3; i++ {
		_ = exec.Do(context.Background(), "search.Query", failTimes(100))
	}
	m := h.metrics(t)
	wantSum(t, m, rotel.MetricBreakerTransitions, "{transition}",
		map[string]any{rotel.AttrKey: "search.Query", rotel.AttrFrom: "closed", rotel.AttrTo: "open"}, 1)
	var open int
	for _, s := range h.spans.Ended() {
		if v, _ := attr(s.Attributes(), rotel.AttrErrorType); v.AsString() == "circuit_open" {
			open++
		}
	}
	if open != 1 {
		t.Errorf("%d spans with error.type circuit_open, want 1", open)
	}
}

// wantGauge checks the last value of an int64 gauge for the key.
func wantGauge(t *testing.T, m map[string]metricdata.Metrics, name, key string, want int64) {
	t.Helper()
	g, ok := m[name].Data.(metricdata.Gauge[int64])
	if !ok {
		t.Fatalf("%s: data %T, want an int64 gauge", name, m[name].Data)
	}
	for _, dp := range g.DataPoints {
		if v, _ := dp.Attributes.Value(rotel.AttrKey); v.AsString() == key {
			if dp.Value != want {
				t.Errorf("%s{%s} = %d, want %d", name, key, dp.Value, want)
			}
			return
		}
	}
	t.Errorf("%s: no point for %s in %v", name, key, g.DataPoints)
}

// The open gauge is 1 while a key's breaker is open and 0 once it leaves
// the open state, whichever state it goes to; keys are apart.
func TestBreakerOpenGauge(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("search.Query", policy.MaxAttempts(1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 2, Cooldown: time.Minute})))
	for i := 0; i < 3; i++ {
		_ = exec.Do(context.Background(), "search.Query", failTimes(100))
	}
	wantGauge(t, h.metrics(t), rotel.MetricBreakerOpen, "search.Query", 1)

	ev := func(key, from, to string) {
		h.obs.OnBreakerState(timeline.BreakerStateChange{Key: key, From: from, To: to})
	}
	ev("a.B", "closed", "open")
	ev("c.D", "closed", "open")
	ev("a.B", "open", "half_open")
	m := h.metrics(t)
	wantGauge(t, m, rotel.MetricBreakerOpen, "a.B", 0)
	wantGauge(t, m, rotel.MetricBreakerOpen, "c.D", 1)
	ev("a.B", "half_open", "open")
	ev("c.D", "open", "closed") // Reset
	m = h.metrics(t)
	wantGauge(t, m, rotel.MetricBreakerOpen, "a.B", 1)
	wantGauge(t, m, rotel.MetricBreakerOpen, "c.D", 0)
	ev("a.B", "open", "half_open")
	ev("a.B", "half_open", "closed")
	wantGauge(t, h.metrics(t), rotel.MetricBreakerOpen, "a.B", 0)
}

func TestPolicyReloads(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "policies.json")
	good := func(n int) string {
		return `{"policies": {"users.Get": {"retry": {"max_attempts": ` + string(rune('0'+n)) + `}}}}`
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good(2))
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs), recourse.WithProvider(fp))
	if err := exec.Do(context.Background(), "users.Get", failTimes(1)); err != nil {
		t.Fatal(err)
	}
	write(`{"policies": {`)
	if err := fp.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	write(good(3))
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	m := h.metrics(t)
	wantSum(t, m, rotel.MetricPolicyReloads, "{reload}", map[string]any{rotel.AttrResult: "error"}, 1)
	wantSum(t, m, rotel.MetricPolicyReloads, "{reload}", map[string]any{rotel.AttrResult: "ok"}, 1)
}

// TestMetricsAfterCalls checks every call metric's name, unit and counts
// after n calls of 2 tries each.
func TestMetricsAfterCalls(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithBudget("retries", middleware.NewTokenBucketBudget(1000, 100)),
		recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3), policy.WithBudget("retries"),
			policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	const n = 5
	for i := 0; i < n; i++ {
		if err := exec.Do(context.Background(), "payments.Charge", failTimes(1)); err != nil {
			t.Fatal(err)
		}
	}
	_ = exec.Do(context.Background(), "payments.Charge", func(context.Context) error { return errDown })
	key := map[string]any{rotel.AttrKey: "payments.Charge"}
	m := h.metrics(t)
	wantHistCount(t, m, rotel.MetricCallDuration, "s", with(key, rotel.AttrOutcome, "success"), n, -1)
	wantHistCount(t, m, rotel.MetricCallDuration, "s", with(key, rotel.AttrOutcome, "failure"), 1, -1)
	wantHistCount(t, m, rotel.MetricAttemptDuration, "s",
		with(with(key, rotel.AttrAttemptKind, "first"), rotel.AttrReason, "retryable"), n+1, -1)
	wantHistCount(t, m, rotel.MetricAttemptDuration, "s",
		with(with(key, rotel.AttrAttemptKind, "retry"), rotel.AttrReason, "success"), n, -1)
	wantHistCount(t, m, rotel.MetricAttemptDuration, "s",
		with(with(key, rotel.AttrAttemptKind, "retry"), rotel.AttrReason, "retryable"), 2, -1)
	wantHistCount(t, m, rotel.MetricCallRetries, "{retry}", key, n+1, n+2)
	wantHistCount(t, m, rotel.MetricCallHedges, "{hedge}", key, n+1, 0)
	wantSum(t, m, rotel.MetricBudgetDecisions, "{decision}",
		with(with(key, rotel.AttrBudget, "retries"), rotel.AttrAllowed, true), n+2)
	for name, mm := range m {
		for _, kvs := range attrSets(mm) {
			for _, kv := range kvs {
				if kv.Value.Type() == attribute.STRING && kv.Value.AsString() == errDown.Error() {
					t.Errorf("%s: attribute %s holds the error's text", name, kv.Key)
				}
			}
		}
	}
	if len(h.spans.Ended()) != n+1 {
		t.Errorf("%d spans, want %d", len(h.spans.Ended()), n+1)
	}
}

// TestOnFinishWithoutOnStart: an observer told of a finished call it saw
// no start of (called directly, or with another context) still makes the
// call's span.
func TestOnFinishWithoutOnStart(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithPolicy("a.B", policy.MaxAttempts(1)))
	tl, err := exec.DoWithTimeline(context.Background(), "a.B", failTimes(0))
	if err != nil {
		t.Fatal(err)
	}
	h.obs.OnFinish(context.Background(), tl)
	s := h.span(t, "a.B")
	if !s.StartTime().Equal(tl.Start) || !s.EndTime().Equal(tl.End) {
		t.Errorf("span %v..%v, want the timeline's %v..%v", s.StartTime(), s.EndTime(), tl.Start, tl.End)
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{k: v}
	for kk, vv := range m {
		out[kk] = vv
	}
	return out
}

func attrSets(m metricdata.Metrics) [][]attribute.KeyValue {
	var out [][]attribute.KeyValue
	switch d := m.Data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes.ToSlice())
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes.ToSlice())
		}
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes.ToSlice())
		}
	}
	return out
}

func match(set attribute.Set, want map[string]any) bool {
	if set.Len() != len(want) {
		return false
	}
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.AsInterface() != v {
			return false
		}
	}
	return true
}

func wantMetric(t *testing.T, m map[string]metricdata.Metrics, name, unit string) metricdata.Metrics {
	t.Helper()
	mm, ok := m[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	if mm.Unit != unit {
		t.Errorf("%s: unit %q, want %q", name, mm.Unit, unit)
	}
	return mm
}

// wantHistCount checks the data point of the histogram name with exactly
// the attributes want: its count, and its sum unless wantSum < 0.
func wantHistCount(t *testing.T, m map[string]metricdata.Metrics, name, unit string, want map[string]any, count uint64, wantSum float64) {
	t.Helper()
	mm := wantMetric(t, m, name, unit)
	switch d := mm.Data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes, want) {
				if p.Count != count || (wantSum >= 0 && p.Sum != wantSum) {
					t.Errorf("%s%v: count %d sum %v, want %d, %v", name, want, p.Count, p.Sum, count, wantSum)
				}
				return
			}
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes, want) {
				if p.Count != count || (wantSum >= 0 && float64(p.Sum) != wantSum) {
					t.Errorf("%s%v: count %d sum %v, want %d, %v", name, want, p.Count, p.Sum, count, wantSum)
				}
				return
			}
		}
	default:
		t.Fatalf("%s is a %T, want a histogram", name, mm.Data)
	}
	t.Errorf("%s: no data point with attributes %v; have %v", name, want, attrSets(mm))
}

// wantSum checks the counter name's data point with exactly the
// attributes want.
func wantSum(t *testing.T, m map[string]metricdata.Metrics, name, unit string, want map[string]any, value int64) {
	t.Helper()
	mm := wantMetric(t, m, name, unit)
	d, ok := mm.Data.(metricdata.Sum[int64])
	if !ok || !d.IsMonotonic {
		t.Fatalf("%s is a %T, want a monotonic int64 sum", name, mm.Data)
	}
	for _, p := range d.DataPoints {
		if match(p.Attributes, want) {
			if p.Value != value {
				t.Errorf("%s%v = %d, want %d", name, want, p.Value, value)
			}
			return
		}
	}
	t.Errorf("%s: no data point with attributes %v; have %v", name, want, attrSets(mm))
}

// A fallback answers a failed call: the span counts the tries only, the
// fallback's record is a "fallback" event and attempt kind, not a retry.
func TestFallbackIsNotATry(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("pricing.Quote", policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)),
		recourse.WithFallback("pricing.Quote", func(context.Context, error) (any, error) { return 1, nil }))
	if err := exec.Do(context.Background(), "pricing.Quote", failTimes(100)); err != nil {
		t.Fatalf("err %v, want the fallback's answer", err)
	}
	s := h.span(t, "pricing.Quote")
	wantAttr(t, "span", s.Attributes(), rotel.AttrAttempts, int64(2))
	var fb bool
	for _, ev := range s.Events() {
		fb = fb || ev.Name == "fallback"
	}
	if !fb {
		t.Errorf("no fallback event in %v", s.Events())
	}
	m := h.metrics(t)
	wantHistCount(t, m, rotel.MetricCallRetries, "{retry}", map[string]any{rotel.AttrKey: "pricing.Quote"}, 1, 1)
	wantHistCount(t, m, rotel.MetricAttemptDuration, "s",
		map[string]any{rotel.AttrKey: "pricing.Quote", rotel.AttrAttemptKind: "fallback", rotel.AttrReason: "fallback"}, 1, -1)
}

// A flood of distinct keys (a caller that puts ids in keys) costs the
// observer time, not memory: past its bound it keeps nothing new, and its
// metrics stay right.
func TestObserverCachesAreBounded(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs), recourse.WithMaxKeys(64))
	const n = 20000
	for i := 0; i < n; i++ {
		_ = exec.Do(context.Background(), fmt.Sprintf("flood.K%d", i), func(context.Context) error { return nil })
	}
	if c := rotel.CachedForTest(h.obs); c > rotel.MaxCachedForTest {
		t.Fatalf("%d cached entries after %d keys, bound %d", c, n, rotel.MaxCachedForTest)
	}
	m := h.metrics(t)
	wantHistCount(t, m, rotel.MetricCallDuration, "s",
		map[string]any{rotel.AttrKey: fmt.Sprintf("flood.K%d", n-1), rotel.AttrOutcome: "success"}, 1, -1)
}
