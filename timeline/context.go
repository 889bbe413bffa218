package timeline

import (
	"context"
	"time"
)

// ContextObserver is implemented by observers that put something of their
// own into the context of each call: an OpenTelemetry observer puts the
// call's span there, so that spans started inside the tries (by an
// instrumented HTTP or gRPC client, or by the operation itself) become
// children of the call's span.
//
// The observe decorator (middleware.Observe, and so every executor) calls
// CallContext once per call, before OnStart, when its observer implements
// ContextObserver. The context CallContext returns is the call's context
// from then on: OnStart, OnAttempt, OnBudgetDecision, OnHedge and OnFinish
// of that call get it or one derived from it, and so does every try.
// Observers that do not implement it cost nothing: the decorator decides
// once, when it is built, whether to make the call at all.
//
// Multi's observers implement ContextObserver when one of theirs does,
// passing the context through each such observer in order.
type ContextObserver interface {
	// CallContext returns the context for a call to key starting at
	// start (the timeline's Start). It must return ctx or a context
	// derived from ctx: one that is not — nil, or a context that lost
	// ctx's values — is ignored and the call keeps ctx. It must not
	// cancel or shorten the call: the call's deadline belongs to the
	// caller and the policy.
	CallContext(ctx context.Context, key string, start time.Time) context.Context
}

// contextMulti is a multiObserver holding at least one ContextObserver:
// it chains CallContext through each of them in order.
type contextMulti struct{ multiObserver }

// CallContext passes ctx through every observer that implements
// ContextObserver, in order, each getting the context the previous one
// returned; a nil result is ignored.
func (m contextMulti) CallContext(ctx context.Context, key string, start time.Time) context.Context {
	for _, o := range m.multiObserver {
		if c, ok := o.(ContextObserver); ok && !isNil(o) {
			if next := c.CallContext(ctx, key, start); next != nil {
				ctx = next
			}
		}
	}
	return ctx
}
