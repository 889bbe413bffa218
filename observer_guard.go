package recourse

import (
	"context"
	"time"

	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// guardedObserver is the executor's observer while panic recovery is on:
// a panic in a callback made for a call is recovered and recorded in the
// call's recorder, and the call returns it as a *PanicError (component
// "observer") joined to its own error — the call's work is not cut short,
// and the panic is neither lost nor allowed to take the caller down. Breaker
// transitions, which belong to no call, are guarded where they are
// delivered (see keyBreaker).
type guardedObserver struct {
	o timeline.Observer
}

// guardedContextObserver is guardedObserver for an observer that also
// implements timeline.ContextObserver: CallContext is guarded as the other
// callbacks are, and a call whose CallContext panicked keeps the context it
// had.
type guardedContextObserver struct {
	guardedObserver
	c timeline.ContextObserver
}

// guard returns o guarded: a guardedContextObserver when o implements
// timeline.ContextObserver, so that the hook's cost is paid only by
// observers that have it, and a guardedObserver otherwise.
func guard(o timeline.Observer) timeline.Observer {
	if c, ok := o.(timeline.ContextObserver); ok {
		return guardedContextObserver{guardedObserver{o}, c}
	}
	return guardedObserver{o}
}

func (g guardedContextObserver) CallContext(ctx context.Context, key string, start time.Time) (out context.Context) {
	out = ctx
	defer recoverObserver(ctx, key)
	return g.c.CallContext(ctx, key, start)
}

func recoverObserver(ctx context.Context, key string) {
	if v := recover(); v != nil {
		record.FromContext(ctx).ObserverPanicked(middleware.NewPanicError("observer", key, v))
	}
}

func (g guardedObserver) OnStart(ctx context.Context, key string, start time.Time) {
	defer recoverObserver(ctx, key)
	g.o.OnStart(ctx, key, start)
}

func (g guardedObserver) OnAttempt(ctx context.Context, key string, rec timeline.AttemptRecord) {
	defer recoverObserver(ctx, key)
	g.o.OnAttempt(ctx, key, rec)
}

func (g guardedObserver) OnFinish(ctx context.Context, tl *timeline.Timeline) {
	defer recoverObserver(ctx, tl.Key)
	g.o.OnFinish(ctx, tl)
}

func (g guardedObserver) OnBudgetDecision(ctx context.Context, ev timeline.BudgetDecision) {
	defer recoverObserver(ctx, ev.Key)
	g.o.OnBudgetDecision(ctx, ev)
}

func (g guardedObserver) OnHedge(ctx context.Context, ev timeline.HedgeEvent) {
	defer recoverObserver(ctx, ev.Key)
	g.o.OnHedge(ctx, ev)
}

func (g guardedObserver) OnBreakerState(ev timeline.BreakerStateChange) { g.o.OnBreakerState(ev) }

func (g guardedObserver) OnPolicyReload(ev timeline.PolicyReload) { g.o.OnPolicyReload(ev) }

func (g guardedObserver) OnPolicyProblem(ev timeline.PolicyProblem) {
	if p, ok := g.o.(timeline.PolicyProblemObserver); ok {
		p.OnPolicyProblem(ev)
	}
}
