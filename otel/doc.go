// Package rotel reports recourse calls to OpenTelemetry: one span per call
// and the metrics platform teams put on their dashboards (retries, hedges,
// budget decisions, breaker transitions, policy reloads).
//
// It lives in a module of its own (github.com/recourse-go/recourse/otel),
// so that importing the core recourse module brings in no OpenTelemetry
// dependency and keeps the core's go directive.
//
// # Wiring it in
//
// An Observer is a timeline.Observer: hand it to the executor and every
// call the executor runs is reported.
//
//	obs := rotel.NewObserver() // the global TracerProvider and MeterProvider
//	exec := recourse.NewExecutor(
//		recourse.WithObserver(obs),
//		recourse.WithProvider(provider), // its reloads are counted too
//	)
//	err := exec.Do(ctx, "payments.Charge", charge)
//
// With explicit providers (an SDK you configured, or tests):
//
//	obs := rotel.NewObserver(
//		rotel.WithTracerProvider(tp),
//		rotel.WithMeterProvider(mp),
//	)
//
// To keep logging timelines as well, combine observers with
// timeline.Multi(obs, timeline.NewZerologObserver(logger)).
//
// # Traces
//
// Each call is one span of kind INTERNAL named by the call's key
// ("payments.Charge"), a child of the span active in the context the call
// was made with. It starts when the call starts and ends when it returns,
// and carries:
//
//   - recourse.key: the key;
//   - recourse.attempts: how many tries the timeline holds (refused ones
//     included);
//   - recourse.policy.id: the policy's ID, when it has one;
//   - error.type and status Error, when the call failed. error.type is a
//     low-cardinality name, never the error's text: the reason code of the
//     last try ("timeout", "circuit_open", "budget_denied", "retryable" for
//     retries exhausted, …) or, when no try says why, the error's Go type.
//
// Every try is one span event named by its reason code ("retryable",
// "timeout", "hedge_won", "hedge_lost", "budget_denied", "circuit_open",
// "success", …), stamped with the try's end, with the attributes
// recourse.attempt (1-based), recourse.hedge_index (0 for the primary try)
// and recourse.backoff (seconds waited after the try before the next).
//
// Span times come from the executor's clock (recourse.WithClock), like the
// timeline's, so a span and its events line up with the timeline logged
// for the same call.
//
// The call's span is in the context every try runs in (the Observer is a
// timeline.ContextObserver, which the executor asks for the call's
// context), so a span started inside a try — by otelhttp, otelgrpc or your
// own code — is a child of the call's span:
//
//	handler span
//	└── payments.Charge            (INTERNAL, this package)
//	    ├── HTTP POST              (CLIENT, otelhttp: the first try)
//	    └── HTTP POST              (CLIENT, otelhttp: the retry)
//
// WithAttemptSpans(true) adds one more child span per try, "KEY attempt",
// with its number, hedge index and reason. It is recorded when the try
// ends, so the tries' own spans stay children of the call's span beside
// it.
//
// # HTTP resends
//
// With rhttp, put otelhttp under the recourse transport, so that each try
// gets its own client span, and NewResendTransport under otelhttp, so
// that a resent request's span carries http.request.resend_count (the
// OpenTelemetry semantic convention) and, for a hedge,
// recourse.hedge_index:
//
//	rt := rhttp.NewTransport(exec, "payments.Charge",
//		otelhttp.NewTransport(rotel.NewResendTransport(http.DefaultTransport)))
//
// # Metrics
//
// Durations are in seconds. Every instrument carries recourse.key, except
// the reload counter, which belongs to no key. No attribute ever holds an
// error's text.
//
//	recourse.call.duration                 histogram, s     recourse.outcome = success|failure
//	recourse.attempt.duration              histogram, s     recourse.attempt.kind = first|retry|hedge, recourse.reason
//	recourse.call.retries                  histogram        retries run per call (refused ones not counted)
//	recourse.call.hedges                   histogram        hedges run per call (refused ones not counted)
//	recourse.budget.decisions              counter          recourse.budget, recourse.allowed
//	recourse.circuit_breaker.transitions   counter          recourse.from, recourse.to (closed|half_open|open)
//	recourse.circuit_breaker.open          gauge            1 while the key's breaker is open, 0 once it left
//	recourse.policy.reloads                counter          recourse.result = ok|error
//
// Through the OpenTelemetry Prometheus exporter they appear as
// recourse_call_duration_seconds_bucket, recourse_budget_decisions_total,
// recourse_circuit_breaker_open, and so on; examples/prometheus in this
// module serves them on a /metrics page.
//
// The measurements of a call are made in its context, which carries its
// span: with the SDK's default exemplar filter (trace_based), those of a
// sampled call carry exemplars pointing at its trace.
//
// # Cost
//
// An Observer does its work on the call's path, as every observer does.
// Attribute sets and span options are built once per key and reused, and
// a call whose span is not sampled skips the span's attributes and
// events. Observers that, unlike this one, do not implement
// timeline.ContextObserver add nothing to a call for the hook.
// BenchmarkFullChainOTel measures the full chain with the observer on
// (with exemplars and without) beside the same chain with the timeline
// captured and with no observer.
package rotel
