package rotel

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/recourse-go/recourse/timeline"
)

// ScopeName is the instrumentation scope of the Observer's tracer and
// meter: the import path of this module.
const ScopeName = "github.com/recourse-go/recourse/otel"

// Attribute names the Observer sets on spans, span events and metrics.
const (
	AttrKey         = "recourse.key"          // the call's key, on every span and metric but the reload counter
	AttrAttempts    = "recourse.attempts"     // span: tries in the call's timeline
	AttrPolicyID    = "recourse.policy.id"    // span: the policy's ID, when set
	AttrErrorType   = "error.type"            // span: why the call failed, low-cardinality
	AttrAttempt     = "recourse.attempt"      // span event: 1-based attempt number
	AttrHedgeIndex  = "recourse.hedge_index"  // span event: 0 for the primary try, 1, 2, … for hedges
	AttrBackoff     = "recourse.backoff"      // span event: seconds waited after the try
	AttrOutcome     = "recourse.outcome"      // call duration: success|failure
	AttrAttemptKind = "recourse.attempt.kind" // attempt duration: first|retry|hedge (|fallback: the call's fallback)
	AttrReason      = "recourse.reason"       // attempt duration: the try's reason code
	AttrBudget      = "recourse.budget"       // budget decisions: the budget's name
	AttrAllowed     = "recourse.allowed"      // budget decisions: whether the try was let through
	AttrFrom        = "recourse.from"         // breaker transitions: state left
	AttrTo          = "recourse.to"           // breaker transitions: state entered
	AttrResult      = "recourse.result"       // policy reloads: ok|error
)

// Metric names the Observer records (see the package documentation).
const (
	MetricCallDuration       = "recourse.call.duration"
	MetricAttemptDuration    = "recourse.attempt.duration"
	MetricCallRetries        = "recourse.call.retries"
	MetricCallHedges         = "recourse.call.hedges"
	MetricBudgetDecisions    = "recourse.budget.decisions"
	MetricBreakerTransitions = "recourse.circuit_breaker.transitions"
	MetricBreakerOpen        = "recourse.circuit_breaker.open"
	MetricPolicyReloads      = "recourse.policy.reloads"
)

// durationBuckets are the explicit bucket boundaries (seconds) advised for
// the duration histograms: from 0.5ms, where a local try ends, to 30s.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// countBuckets are the bucket boundaries advised for the per-call counts
// of retries and hedges.
var countBuckets = []float64{0, 1, 2, 3, 4, 5, 10}

// Option configures NewObserver.
type Option func(*config)

type config struct {
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	attemptSpans bool
}

// WithTracerProvider makes the Observer start its spans with tp instead
// of the global TracerProvider (otel.GetTracerProvider). A nil tp means
// the global one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider makes the Observer record its metrics with mp instead
// of the global MeterProvider (otel.GetMeterProvider). A nil mp means the
// global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithAttemptSpans(true) makes the Observer record one more span per try,
// a child of the call's span named "KEY attempt", covering the try from
// its start to its end, with the attributes recourse.attempt,
// recourse.hedge_index and recourse.reason and status Error when the try
// failed. Off by default: the call's span events already say what each
// try did. The span is recorded when the try ends, so spans started
// inside the try (by otelhttp, otelgrpc or the operation) are children of
// the call's span, siblings of the try's.
func WithAttemptSpans(on bool) Option {
	return func(c *config) { c.attemptSpans = on }
}

// Observer reports recourse calls as OpenTelemetry spans and metrics. It
// implements timeline.Observer; give it to recourse.WithObserver. It is
// safe for concurrent use. Make one with NewObserver; the zero value is
// not usable.
//
// It implements timeline.ContextObserver: a call's span is started by
// CallContext, which puts it in the context the executor then gives every
// try, and ended by OnFinish. The Observer keeps no table of calls in
// flight: a call that never finishes — an operation's panic let through
// by recourse.WithoutPanicRecovery — leaves an unended span that nothing
// holds on to.
type Observer struct {
	tracer       trace.Tracer
	attemptSpans bool

	callDuration       metric.Float64Histogram
	attemptDuration    metric.Float64Histogram
	callRetries        metric.Int64Histogram
	callHedges         metric.Int64Histogram
	budgetDecisions    metric.Int64Counter
	breakerTransitions metric.Int64Counter
	breakerOpen        metric.Int64Gauge
	policyReloads      metric.Int64Counter

	// keys caches the options every call of a key uses, by key.
	keys sync.Map // string → *keyOpts
	// attrs caches the attribute sets of the metrics, by attrKey.
	attrs sync.Map // attrKey → *measure
	// cached counts the entries of keys and attrs: past maxCached, new
	// entries are built for each use and not kept, so that a flood of
	// distinct keys costs time, not memory.
	cached atomic.Int64

	reloadOK, reloadErr *measure
}

var (
	_ timeline.Observer        = (*Observer)(nil)
	_ timeline.ContextObserver = (*Observer)(nil)
)

// NewObserver returns an Observer recording with the global providers, or
// those given by WithTracerProvider and WithMeterProvider. An instrument
// the meter fails to create is reported to otel.Handle and replaced by
// one that records nothing.
func NewObserver(opts ...Option) *Observer {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	meter := c.mp.Meter(ScopeName)
	o := &Observer{tracer: c.tp.Tracer(ScopeName), attemptSpans: c.attemptSpans}
	var err error
	fallback := noop.Meter{}
	if o.callDuration, err = meter.Float64Histogram(MetricCallDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of recourse calls, all tries and waits included."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		otel.Handle(err)
		o.callDuration, _ = fallback.Float64Histogram(MetricCallDuration)
	}
	if o.attemptDuration, err = meter.Float64Histogram(MetricAttemptDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of the tries of recourse calls."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		otel.Handle(err)
		o.attemptDuration, _ = fallback.Float64Histogram(MetricAttemptDuration)
	}
	if o.callRetries, err = meter.Int64Histogram(MetricCallRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries run per recourse call."),
		metric.WithExplicitBucketBoundaries(countBuckets...)); err != nil {
		otel.Handle(err)
		o.callRetries, _ = fallback.Int64Histogram(MetricCallRetries)
	}
	if o.callHedges, err = meter.Int64Histogram(MetricCallHedges, metric.WithUnit("{hedge}"),
		metric.WithDescription("Hedged tries run per recourse call."),
		metric.WithExplicitBucketBoundaries(countBuckets...)); err != nil {
		otel.Handle(err)
		o.callHedges, _ = fallback.Int64Histogram(MetricCallHedges)
	}
	if o.budgetDecisions, err = meter.Int64Counter(MetricBudgetDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Retry and hedge budget decisions, allowed or refused.")); err != nil {
		otel.Handle(err)
		o.budgetDecisions, _ = fallback.Int64Counter(MetricBudgetDecisions)
	}
	if o.breakerTransitions, err = meter.Int64Counter(MetricBreakerTransitions, metric.WithUnit("{transition}"),
		metric.WithDescription("Circuit breaker state changes.")); err != nil {
		otel.Handle(err)
		o.breakerTransitions, _ = fallback.Int64Counter(MetricBreakerTransitions)
	}
	if o.breakerOpen, err = meter.Int64Gauge(MetricBreakerOpen,
		metric.WithDescription("1 while the key's circuit breaker is open, 0 once it has left the open state.")); err != nil {
		otel.Handle(err)
		o.breakerOpen, _ = fallback.Int64Gauge(MetricBreakerOpen)
	}
	if o.policyReloads, err = meter.Int64Counter(MetricPolicyReloads, metric.WithUnit("{reload}"),
		metric.WithDescription("Policy provider reloads, successful or failed.")); err != nil {
		otel.Handle(err)
		o.policyReloads, _ = fallback.Int64Counter(MetricPolicyReloads)
	}

	o.reloadOK = newMeasure(metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrResult, "ok"))))
	o.reloadErr = newMeasure(metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrResult, "error"))))
	return o
}

// OnAttempt records the try's duration.
func (o *Observer) OnAttempt(ctx context.Context, key string, rec timeline.AttemptRecord) {
	kind := "retry"
	switch {
	case rec.Reason == timeline.ReasonFallback:
		kind = "fallback" // not a try: the call's fallback (recourse.WithFallback)
	case rec.HedgeIndex > 0:
		kind = "hedge"
	case rec.Attempt <= 1:
		kind = "first"
	}
	attrs := o.attrSet(attrKey{kind: attrsAttempt, key: key, a: kind, b: rec.Reason})
	o.attemptDuration.Record(ctx, rec.Duration().Seconds(), attrs.rec...)
	if o.attemptSpans {
		o.attemptSpan(ctx, key, rec)
	}
}

// attemptSpan records the try as a child span of its call's span.
func (o *Observer) attemptSpan(ctx context.Context, key string, rec timeline.AttemptRecord) {
	st := o.state(ctx)
	if st == nil || st.key != key || !st.span.IsRecording() {
		// Not a try of a call CallContext saw (or one not sampled).
		return
	}
	_, span := o.tracer.Start(trace.ContextWithSpan(ctx, st.span), key+" attempt",
		spanKindInternal,
		trace.WithTimestamp(rec.StartTime),
		trace.WithAttributes(
			attribute.String(AttrKey, key),
			attribute.Int(AttrAttempt, rec.Attempt),
			attribute.Int(AttrHedgeIndex, rec.HedgeIndex),
			attribute.String(AttrReason, rec.Reason)))
	if failed(rec) {
		span.SetStatus(codes.Error, rec.Reason)
	}
	span.End(trace.WithTimestamp(rec.EndTime))
}

// OnFinish ends the call's span, with one event per try, and records the
// call's duration and its counts of retries and hedges.
func (o *Observer) OnFinish(ctx context.Context, tl *timeline.Timeline) {
	if tl == nil {
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	span, opts := o.take(ctx)
	if span == nil {
		opts = o.forKey(tl.Key)
		// No CallContext for this call (the observer was called directly,
		// or through a wrapper that does not forward it): the span is made
		// now, from the timeline's start.
		_, span = o.tracer.Start(ctx, tl.Key, spanKindInternal, trace.WithTimestamp(tl.Start), opts.start)
	}
	if span.IsRecording() {
		annotate(span, tl)
	}
	span.End(trace.WithTimestamp(tl.End))

	outcome := opts.success
	if tl.Err != nil {
		outcome = opts.failure
	}
	o.callDuration.Record(ctx, tl.Duration().Seconds(), outcome.rec...)
	retries, hedges := counts(tl)
	o.callRetries.Record(ctx, retries, opts.key.rec...)
	o.callHedges.Record(ctx, hedges, opts.key.rec...)
}

// failed reports whether a try failed: judged a failure by the classifier
// or refused, but not a hedge cancelled because another try won.
func failed(rec timeline.AttemptRecord) bool {
	switch rec.Outcome {
	case timeline.OutcomeUnknown, timeline.OutcomeSuccess:
		return false
	}
	return rec.Reason != timeline.ReasonHedgeLost
}

// annotate sets the call's attributes, events and status on its span.
func annotate(span trace.Span, tl *timeline.Timeline) {
	attrs := make([]attribute.KeyValue, 0, 3)
	tries := len(tl.Attempts)
	for _, a := range tl.Attempts {
		if a.Reason == timeline.ReasonFallback {
			tries-- // a fallback is not a try
		}
	}
	attrs = append(attrs, attribute.Int(AttrAttempts, tries))
	if tl.PolicyID != "" {
		attrs = append(attrs, attribute.String(AttrPolicyID, tl.PolicyID))
	}
	if tl.Err != nil {
		attrs = append(attrs, attribute.String(AttrErrorType, errorType(tl)))
	}
	span.SetAttributes(attrs...)
	for _, a := range tl.Attempts {
		span.AddEvent(a.Reason,
			trace.WithTimestamp(a.EndTime),
			trace.WithAttributes(
				attribute.Int(AttrAttempt, a.Attempt),
				attribute.Int(AttrHedgeIndex, a.HedgeIndex),
				attribute.Float64(AttrBackoff, a.Backoff.Seconds())))
	}
	if tl.Err != nil {
		span.SetStatus(codes.Error, tl.Err.Error())
	}
}

// errorType names why the call failed, with few distinct values: the
// reason code of the try that ended last, unless it succeeded or says
// nothing, and otherwise the Go type of the error.
func errorType(tl *timeline.Timeline) string {
	var last *timeline.AttemptRecord
	for i := range tl.Attempts {
		a := &tl.Attempts[i]
		if last == nil || !a.EndTime.Before(last.EndTime) {
			last = a
		}
	}
	if last != nil && last.Reason != "" && last.Reason != timeline.ReasonSuccess &&
		last.Reason != timeline.ReasonHedgeWon && last.Reason != timeline.ReasonHedgeLost {
		return last.Reason
	}
	if t := reflect.TypeOf(tl.Err); t != nil {
		return t.String()
	}
	return "_OTHER"
}

// counts returns how many retries and hedges of the call ran: tries
// refused by a budget, a breaker or a bulkhead are not counted.
func counts(tl *timeline.Timeline) (retries, hedges int64) {
	for _, a := range tl.Attempts {
		switch {
		case timeline.Refused(a.Reason), a.Reason == timeline.ReasonFallback:
		case a.HedgeIndex > 0:
			hedges++
		case a.Attempt > 1:
			retries++
		}
	}
	return retries, hedges
}

// OnBudgetDecision counts the decision.
func (o *Observer) OnBudgetDecision(ctx context.Context, ev timeline.BudgetDecision) {
	allowed := "false"
	if ev.Allowed {
		allowed = "true"
	}
	o.budgetDecisions.Add(ctx, 1, o.attrSet(attrKey{kind: attrsBudget, key: ev.Key, a: ev.Budget, b: allowed}).add...)
}

// OnHedge does nothing: a hedge is reported by its try (OnAttempt, and the
// span event made when the call finishes).
func (o *Observer) OnHedge(context.Context, timeline.HedgeEvent) {}

// OnBreakerState counts the transition and sets the key's open gauge: 1
// on entering the open state, 0 on leaving it.
func (o *Observer) OnBreakerState(ev timeline.BreakerStateChange) {
	ctx := context.Background()
	o.breakerTransitions.Add(ctx, 1,
		o.attrSet(attrKey{kind: attrsBreaker, key: ev.Key, a: ev.From, b: ev.To}).add...)
	switch {
	case ev.To == "open":
		o.breakerOpen.Record(ctx, 1, o.attrSet(attrKey{kind: attrsKey, key: ev.Key}).rec...)
	case ev.From == "open":
		o.breakerOpen.Record(ctx, 0, o.attrSet(attrKey{kind: attrsKey, key: ev.Key}).rec...)
	}
}

// OnPolicyReload counts the reload, by result.
func (o *Observer) OnPolicyReload(ev timeline.PolicyReload) {
	attrs := o.reloadOK
	if ev.Err != nil {
		attrs = o.reloadErr
	}
	o.policyReloads.Add(context.Background(), 1, attrs.add...)
}

// OnPolicyProblem does nothing: the problem is in the executor's
// configuration, not in a call; the timelines of the key's calls name it.
func (o *Observer) OnPolicyProblem(timeline.PolicyProblem) {}

// Which instrument an attribute set is for.
const (
	attrsKey = iota
	attrsCall
	attrsAttempt
	attrsBudget
	attrsBreaker
)

// maxCached bounds the entries an Observer caches (keys' options and
// attribute sets together). Keys are meant to be few (the executor bounds
// its own cache at 4096 by default); past the bound nothing new is kept.
const maxCached = 1 << 14

// attrKey identifies a cached attribute set: the instrument family and
// up to two attribute values beside the key.
type attrKey struct {
	kind uint8
	key  string
	a, b string
}

// measure is a cached attribute set as the options of a measurement,
// kept in slices so that passing them (rec... or add...) allocates
// nothing: a variadic argument built at the call would escape into the
// instrument's interface method, once per measurement.
type measure struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

func newMeasure(o metric.MeasurementOption) *measure {
	return &measure{rec: []metric.RecordOption{o}, add: []metric.AddOption{o}}
}

// attrSet returns the attribute set for k, built once.
func (o *Observer) attrSet(k attrKey) *measure {
	if v, ok := o.attrs.Load(k); ok {
		return v.(*measure)
	}
	kv := []attribute.KeyValue{attribute.String(AttrKey, k.key)}
	switch k.kind {
	case attrsCall:
		kv = append(kv, attribute.String(AttrOutcome, k.a))
	case attrsAttempt:
		kv = append(kv, attribute.String(AttrAttemptKind, k.a), attribute.String(AttrReason, k.b))
	case attrsBudget:
		kv = append(kv, attribute.String(AttrBudget, k.a), attribute.Bool(AttrAllowed, k.b == "true"))
	case attrsBreaker:
		kv = append(kv, attribute.String(AttrFrom, k.a), attribute.String(AttrTo, k.b))
	}
	m := newMeasure(metric.WithAttributeSet(attribute.NewSet(kv...)))
	if o.cached.Load() >= maxCached {
		return m
	}
	v, loaded := o.attrs.LoadOrStore(k, m)
	if !loaded {
		o.cached.Add(1)
	}
	return v.(*measure)
}
