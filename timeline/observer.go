package timeline

import (
	"context"
	"time"
)

// Observer receives events as calls run. Implementations must be safe for
// concurrent use and should return quickly: they run on the call's path.
// Embed BaseObserver to implement only the events you need.
type Observer interface {
	// OnStart is called when a call begins.
	OnStart(ctx context.Context, key string, start time.Time)
	// OnAttempt is called when a try ends (or is refused).
	OnAttempt(ctx context.Context, key string, rec AttemptRecord)
	// OnFinish is called once per call with its complete timeline.
	OnFinish(ctx context.Context, tl *Timeline)
	// OnBudgetDecision is called when a budget admits or refuses a try.
	OnBudgetDecision(ctx context.Context, ev BudgetDecision)
	// OnHedge is called when a hedged try is spawned.
	OnHedge(ctx context.Context, ev HedgeEvent)
	// OnBreakerState is called when a key's circuit breaker changes state.
	OnBreakerState(ev BreakerStateChange)
	// OnPolicyReload is called when a provider reloads its policies; Err
	// is set when the reload failed and the previous set is kept.
	OnPolicyReload(ev PolicyReload)
}

// PolicyReload describes a provider's reload.
type PolicyReload struct {
	Source  string
	Version uint64
	Err     error
}

// BudgetDecision describes one budget check.
type BudgetDecision struct {
	Key     string
	Budget  string
	Attempt int
	Hedge   bool
	Allowed bool
	Reason  string
}

// HedgeEvent describes the spawning of a hedged try.
type HedgeEvent struct {
	Key        string
	Attempt    int
	HedgeIndex int
	// After is when the hedge was due, counted from the start of the
	// attempt: its index times the trigger delay.
	After time.Duration
	// Trigger names what fired: "fixed" or "latency".
	Trigger string
}

// BreakerStateChange describes a circuit breaker transition. States are
// "closed", "half_open" and "open".
type BreakerStateChange struct {
	Key      string
	From, To string
	At       time.Time
}

// BaseObserver implements every Observer method as a no-op. Embed it.
type BaseObserver struct{}

// OnStart does nothing.
func (BaseObserver) OnStart(context.Context, string, time.Time) {}

// OnAttempt does nothing.
func (BaseObserver) OnAttempt(context.Context, string, AttemptRecord) {}

// OnFinish does nothing.
func (BaseObserver) OnFinish(context.Context, *Timeline) {}

// OnBudgetDecision does nothing.
func (BaseObserver) OnBudgetDecision(context.Context, BudgetDecision) {}

// OnHedge does nothing.
func (BaseObserver) OnHedge(context.Context, HedgeEvent) {}

// OnBreakerState does nothing.
func (BaseObserver) OnBreakerState(BreakerStateChange) {}

// OnPolicyReload does nothing.
func (BaseObserver) OnPolicyReload(PolicyReload) {}

// NoopObserver ignores every event. Decorators recognise it (see IsNoop)
// and skip building timelines for it.
type NoopObserver struct{ BaseObserver }

// IsNoop reports whether o is nil or a NoopObserver, so event work can be
// skipped entirely.
func IsNoop(o Observer) bool {
	switch o.(type) {
	case nil, NoopObserver, *NoopObserver:
		return true
	}
	return false
}

// MultiObserver fans every event out to each of its observers in order.
type MultiObserver []Observer

// OnStart forwards to every observer.
func (m MultiObserver) OnStart(ctx context.Context, key string, start time.Time) {
	for _, o := range m {
		o.OnStart(ctx, key, start)
	}
}

// OnAttempt forwards to every observer.
func (m MultiObserver) OnAttempt(ctx context.Context, key string, rec AttemptRecord) {
	for _, o := range m {
		o.OnAttempt(ctx, key, rec)
	}
}

// OnFinish forwards to every observer.
func (m MultiObserver) OnFinish(ctx context.Context, tl *Timeline) {
	for _, o := range m {
		o.OnFinish(ctx, tl)
	}
}

// OnBudgetDecision forwards to every observer.
func (m MultiObserver) OnBudgetDecision(ctx context.Context, ev BudgetDecision) {
	for _, o := range m {
		o.OnBudgetDecision(ctx, ev)
	}
}

// OnHedge forwards to every observer.
func (m MultiObserver) OnHedge(ctx context.Context, ev HedgeEvent) {
	for _, o := range m {
		o.OnHedge(ctx, ev)
	}
}

// OnBreakerState forwards to every observer.
func (m MultiObserver) OnBreakerState(ev BreakerStateChange) {
	for _, o := range m {
		o.OnBreakerState(ev)
	}
}

// OnPolicyReload forwards to every observer.
func (m MultiObserver) OnPolicyReload(ev PolicyReload) {
	for _, o := range m {
		o.OnPolicyReload(ev)
	}
}
