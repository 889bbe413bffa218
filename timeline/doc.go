// Package timeline records what happened during one resilient call.
//
// Every call through recourse can leave a Timeline: its key, when it started
// and ended, one AttemptRecord per try (when it ran, how it was classified,
// why it was retried, hedged, denied or cut short, and how long the call
// waited before the next try) and the final error. Reason codes are stable
// strings meant for dashboards and alerts.
//
// Two ways to see timelines:
//
//   - Capture one call: ctx, c := timeline.Record(ctx); call; c.Timeline().
//   - Stream all calls to an Observer (logs, metrics, traces). NewZerologObserver
//     logs one JSON event per attempt and one per call.
//
// An observer that needs the call's context — a tracer whose span the
// tries' own spans (HTTP, gRPC clients) should nest under — also
// implements ContextObserver: its CallContext makes the context every try
// of the call then runs in. Multi passes the context through each such
// observer in order.
//
// When nothing captures and the observer is the no-op one, decorators skip
// timeline work entirely: recording costs nothing unless asked for.
//
// This package imports nothing else from recourse but a leaf internal
// package of context keys; keys appear here as strings ("payments.Charge").
// The recorder that decorators write timelines with is internal plumbing.
package timeline
