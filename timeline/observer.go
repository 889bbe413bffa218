package timeline

import (
	"context"
	"reflect"
	"time"
)

// Observer receives events as calls run. Implementations must be safe for
// concurrent use and should return quickly: they run on the call's path.
// Embed BaseObserver to implement only the events you need; it also
// implements PolicyProblemObserver, the event of a policy naming a budget,
// trigger or classifier the executor cannot resolve.
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
	// is set when the reload failed and the previous set is kept. An
	// executor's observer gets the reloads of the executor's provider
	// when the provider supports subscription (policy.ReloadSubscriber).
	OnPolicyReload(ev PolicyReload)
}

// PolicyProblemObserver is implemented by observers that want to hear of
// names a policy refers to that the executor cannot resolve (see
// PolicyProblem). BaseObserver (and so every observer embedding it),
// NoopObserver and the observers Multi returns implement it; the executor calls
// OnPolicyProblem on its observer (recourse.WithObserver) when the
// observer implements it. It is separate from Observer so that observers
// written before it keep compiling.
type PolicyProblemObserver interface {
	// OnPolicyProblem is called once per unresolvable name each time the
	// executor compiles a key's policy (its first call, and again after
	// the policy changes), not on every call.
	OnPolicyProblem(ev PolicyProblem)
}

// PolicyProblem describes a name a key's policy refers to — a budget, a
// hedge trigger or a classifier — that the executor could not resolve:
// not registered in code, not built in, not declared by the provider.
type PolicyProblem struct {
	// Key is the policy's key ("payments.Charge").
	Key string
	// Field is the policy field holding the name, in the policy file's
	// spelling: "budget", "hedge.budget", "hedge.trigger" or "classifier".
	Field string
	// Name is the unresolved name.
	Name string
	// Mode is the executor's failure mode for such a name, which says
	// what it does instead: "deny" (retries and hedges refused for a
	// budget; the key's calls refused for a trigger or a classifier),
	// "allow" (a budget admits everything), "fallback" (the policy's own
	// delay/quantile hedges, the default classifier classifies).
	Mode string
	// Err describes the problem; it names key, field and name.
	Err error
}

// PolicyReload describes a provider's reload.
type PolicyReload struct {
	// Source names what was reloaded, as the provider names it:
	// "file:PATH" or "remote:URL" for policy's file and remote providers.
	Source string
	// Version is the provider's version after the reload (see
	// policy.Versioned). policy's providers give every reported reload a
	// new version, failed ones included.
	Version uint64
	// Err is why the reload failed, in which case the provider keeps
	// serving its previous policies; nil for a successful reload.
	Err error
}

// BudgetDecision describes one budget check.
type BudgetDecision struct {
	// Key is the call's key ("payments.Charge").
	Key string
	// Budget is the name of the budget asked, as the policy names it;
	// empty for a policy that names none.
	Budget string
	// Attempt is the 1-based attempt number of the try; a hedge has the
	// number of the attempt it hedges.
	Attempt int
	// Hedge reports whether the try was a hedge rather than a retry.
	Hedge bool
	// Allowed reports whether the budget let the try run. A refused try
	// does not run.
	Allowed bool
	// Reason is the budget's explanation of its decision, such as
	// "tokens_available" or "tokens_exhausted" (see middleware.Decision).
	Reason string
}

// HedgeEvent describes the spawning of a hedged try.
type HedgeEvent struct {
	// Key is the call's key ("payments.Charge").
	Key string
	// Attempt is the 1-based number of the attempt being hedged.
	Attempt int
	// HedgeIndex is the hedge's index within its attempt: 1 for the
	// first hedge, 2 for the second, and so on (0 is the primary try,
	// which is never a HedgeEvent).
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
	// Key is the key whose breaker changed state.
	Key string
	// From is the state the breaker left.
	From string
	// To is the state the breaker entered.
	To string
	// At is when the change happened, by the executor's clock.
	At time.Time
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

// OnPolicyProblem does nothing.
func (BaseObserver) OnPolicyProblem(PolicyProblem) {}

// NoopObserver ignores every event. Decorators recognise it (see IsNoop)
// and skip building timelines for it.
type NoopObserver struct{ BaseObserver }

// IsNoop reports whether o does nothing, so event work can be skipped
// entirely: o is nil, a nil pointer (which is treated as no observer), a
// NoopObserver, or a multiObserver (or contextMulti) of nothing but such
// observers.
func IsNoop(o Observer) bool {
	switch o := o.(type) {
	case nil, NoopObserver, *NoopObserver:
		return true
	case multiObserver:
		for _, x := range o {
			if !IsNoop(x) {
				return false
			}
		}
		return true
	case contextMulti:
		return IsNoop(o.multiObserver)
	}
	return isNil(o)
}

// isNil reports whether o holds a nil pointer, map, slice, func or chan:
// an observer whose methods would dereference nothing.
func isNil(o Observer) bool {
	if o == nil {
		return true
	}
	switch v := reflect.ValueOf(o); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// Multi returns an observer that fans events out to obs in order. It drops
// the entries that do nothing (nil, nil pointers, NoopObserver; see
// IsNoop) and flattens nested results of Multi: with none left it returns
// NoopObserver{}, with one it returns that one. The result implements
// ContextObserver when one of obs does.
func Multi(obs ...Observer) Observer {
	var out multiObserver
	withContext := false
	var add func(os []Observer)
	add = func(os []Observer) {
		for _, o := range os {
			switch m := o.(type) {
			case multiObserver:
				add(m)
			case contextMulti:
				add(m.multiObserver)
			default:
				if !IsNoop(o) {
					out = append(out, o)
					if _, ok := o.(ContextObserver); ok {
						withContext = true
					}
				}
			}
		}
	}
	add(obs)
	switch {
	case len(out) == 0:
		return NoopObserver{}
	case len(out) == 1:
		return out[0]
	case withContext:
		return contextMulti{out}
	}
	return out
}

// multiObserver fans every event out to each of its observers in order.
// It skips nil entries and nil pointers; Multi builds one without them.
type multiObserver []Observer

// OnStart forwards to every observer.
func (m multiObserver) OnStart(ctx context.Context, key string, start time.Time) {
	for _, o := range m {
		if !isNil(o) {
			o.OnStart(ctx, key, start)
		}
	}
}

// OnAttempt forwards to every observer.
func (m multiObserver) OnAttempt(ctx context.Context, key string, rec AttemptRecord) {
	for _, o := range m {
		if !isNil(o) {
			o.OnAttempt(ctx, key, rec)
		}
	}
}

// OnFinish forwards to every observer.
func (m multiObserver) OnFinish(ctx context.Context, tl *Timeline) {
	for _, o := range m {
		if !isNil(o) {
			o.OnFinish(ctx, tl)
		}
	}
}

// OnBudgetDecision forwards to every observer.
func (m multiObserver) OnBudgetDecision(ctx context.Context, ev BudgetDecision) {
	for _, o := range m {
		if !isNil(o) {
			o.OnBudgetDecision(ctx, ev)
		}
	}
}

// OnHedge forwards to every observer.
func (m multiObserver) OnHedge(ctx context.Context, ev HedgeEvent) {
	for _, o := range m {
		if !isNil(o) {
			o.OnHedge(ctx, ev)
		}
	}
}

// OnBreakerState forwards to every observer.
func (m multiObserver) OnBreakerState(ev BreakerStateChange) {
	for _, o := range m {
		if !isNil(o) {
			o.OnBreakerState(ev)
		}
	}
}

// OnPolicyReload forwards to every observer.
func (m multiObserver) OnPolicyReload(ev PolicyReload) {
	for _, o := range m {
		if !isNil(o) {
			o.OnPolicyReload(ev)
		}
	}
}

// OnPolicyProblem forwards to every observer that implements
// PolicyProblemObserver.
func (m multiObserver) OnPolicyProblem(ev PolicyProblem) {
	for _, o := range m {
		if po, ok := o.(PolicyProblemObserver); ok && !isNil(o) {
			po.OnPolicyProblem(ev)
		}
	}
}
