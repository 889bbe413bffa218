package recourse

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/internal/mwopt"
	"github.com/recourse-go/recourse/internal/policyopt"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// keyBreaker is a key's breaker and the policy it was built from: a
// changed policy gets a new breaker, an unchanged one keeps its state.
type keyBreaker struct {
	policy policy.CircuitPolicy
	b      *middleware.CircuitBreaker
	// panicked holds a panic of the observer's OnBreakerState, recovered
	// while panic recovery is on; the key's next call to end returns it
	// (transitions belong to no call, and may be delivered by State).
	panicked atomic.Pointer[middleware.PanicError]
}

// recoverObserver is deferred around OnBreakerState while recovery is on.
func (kb *keyBreaker) recoverObserver(key string) {
	if v := recover(); v != nil {
		kb.panicked.CompareAndSwap(nil, middleware.NewPanicError("observer", key, v))
	}
}

// reportPanic joins a recovered OnBreakerState panic, if any, to err.
func (kb *keyBreaker) reportPanic(err error) error {
	// A load first: every call of the key passes here, and a swap (a
	// write) on each would make callers of one key contend for the line.
	if kb.panicked.Load() == nil {
		return err
	}
	if p := kb.panicked.Swap(nil); p != nil {
		return errors.Join(err, p)
	}
	return err
}

// shared fills the compiler with the executor-held state the policy's
// breaker, hedge and budget sections use, applying the missing-budget and
// missing-trigger modes. A non-nil error refuses the key's calls.
// The breaker and tracker are recorded in en too.
func (e *Executor) shared(key string, p policy.Policy, comp *policy.Compiler, en *entry, attrs map[string]string) error {
	if p.Circuit.Enabled {
		en.breaker = e.breaker(key, p.Circuit)
		comp.Breaker = en.breaker.b
	}
	if p.Bulkhead.Enabled() {
		en.limiter = e.limiter(key, p.Bulkhead)
		comp.Limiter = en.limiter.l
	}
	if p.Hedge.Enabled {
		tracker := e.tracker(key)
		comp.Tracker, en.tracker = tracker, tracker
		if name := p.Hedge.Trigger; name != "" {
			if f, ok := e.opts.Triggers[name]; ok && f != nil {
				comp.Trigger = f(tracker)
			} else if q, ok := policy.QuantileTrigger(name); ok {
				comp.Trigger = quantileTriggerWith(q, p.Hedge.Delay)(tracker)
			} else if e.opts.MissingTriggerMode == FailureDeny {
				attrs[timeline.AttrTriggerError] = fmt.Sprintf("no hedge trigger %q; calls refused (missing-trigger mode deny)", name)
				return &unresolvedError{key: key, field: "hedge.trigger", name: name, kind: ErrNoTrigger}
			} else {
				attrs[timeline.AttrTriggerError] = fmt.Sprintf("no hedge trigger %q; using the policy's delay/quantile", name)
			}
		}
	}
	comp.Budget = e.budget(p.Budget, attrs)
	if p.Hedge.Enabled {
		comp.HedgeBudget = e.budget(p.Hedge.Budget, attrs)
	}
	return nil
}

// budget resolves a budget name: a budget registered in code
// (WithBudget) wins, then one the provider declares (policy.BudgetSource:
// a policy file's budgets section), then the built-in
// policy.BudgetUnlimited. Otherwise it applies the missing-budget mode —
// deny (default) refuses every retry and hedge, allow lets them all
// through — and adds the name to attrs[timeline.AttrBudgetError], after
// any other missing name of the same policy (a non-empty attrs after the
// call says the name was missing).
func (e *Executor) budget(name string, attrs map[string]string) middleware.Budget {
	if name == "" {
		return nil
	}
	if b, ok := e.opts.Budgets[name]; ok && !isNil(b) {
		return b
	}
	b, err := e.declaredBudget(name)
	if b != nil {
		return b
	}
	if name == policy.BudgetUnlimited {
		return middleware.UnlimitedBudget{}
	}
	msg := fmt.Sprintf("no budget %q (missing_budget_mode=%s)", name, e.opts.MissingBudgetMode)
	if err != nil {
		msg = fmt.Sprintf("no budget %q: %v (missing_budget_mode=%s)", name, err, e.opts.MissingBudgetMode)
	}
	if prev := attrs[timeline.AttrBudgetError]; prev != "" && !strings.Contains(prev, msg) {
		msg = prev + "; " + msg
	}
	attrs[timeline.AttrBudgetError] = msg
	if e.opts.MissingBudgetMode == FailureAllow {
		return middleware.UnlimitedBudget{}
	}
	return missingBudget{}
}

// declaredBudget asks the provider, if it declares budgets, for name. A
// panic in a user's BudgetSource is returned as a *PanicError (unless
// recovery is off); a nil budget counts as none.
func (e *Executor) declaredBudget(name string) (b middleware.Budget, err error) {
	src, ok := e.opts.Provider.(policy.BudgetSource)
	if !ok || isNil(src) {
		return nil, nil
	}
	if !e.opts.NoPanicRecovery {
		defer func() {
			if r := recover(); r != nil {
				b, err = nil, middleware.NewPanicError("provider", name, r)
			}
		}()
	}
	if b, ok := src.Budget(name); ok && !isNil(b) {
		return b, nil
	}
	return nil, nil
}

// isNil reports whether v is nil or holds a nil pointer, map, slice,
// func or chan: a registration that would panic when used.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch r := reflect.ValueOf(v); r.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return r.IsNil()
	}
	return false
}

// missingBudget stands in, failing closed, for a budget that does not exist.
type missingBudget struct{}

func (missingBudget) Take(_ context.Context, t middleware.Try) middleware.Decision {
	if t.Kind == middleware.TryFirst {
		return middleware.Decision{Allowed: true, Reason: "first_try"}
	}
	return middleware.Decision{Allowed: false, Reason: "budget_missing"}
}

// breaker returns key's breaker for cp: the existing one while the circuit
// policy is unchanged, a new one when it changed. Transitions reach the
// observer after the breaker call that made them returns, on its
// goroutine, so the observer may read the breaker (see
// middleware.BreakerConfig.OnStateChange).
func (e *Executor) breaker(key string, cp policy.CircuitPolicy) *keyBreaker {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	old, ok := e.breakers[key]
	if ok && old.policy == cp {
		return old
	}
	cfg := policyopt.BreakerConfig.(func(string, policy.CircuitPolicy) middleware.BreakerConfig)(key, cp)
	cfg.Clock = e.opts.Clock
	obs, clk := e.opts.Observer, clockx.Or(e.opts.Clock)
	kb := &keyBreaker{policy: cp}
	if !timeline.IsNoop(obs) {
		guard := !e.opts.NoPanicRecovery
		cfg.OnStateChange = func(name string, from, to endpoint.BreakerState) {
			if guard {
				defer kb.recoverObserver(name)
			}
			obs.OnBreakerState(timeline.BreakerStateChange{Key: name, From: from.String(), To: to.String(), At: clk.Now()})
		}
	}
	kb.b = middleware.NewCircuitBreaker(cfg)
	if ok && old.b.Forced() {
		// An operator's ForceOpen outlives a change of circuit policy.
		mwopt.StartForced.(func(*middleware.CircuitBreaker))(kb.b)
	}
	if e.breakers == nil {
		e.breakers = make(map[string]*keyBreaker)
	}
	e.breakers[key] = kb // bounded with the cache: evicted keys lose theirs
	return kb
}

// keyLimiter is a key's bulkhead and the policy it was built from.
type keyLimiter struct {
	policy policy.BulkheadPolicy
	l      middleware.Limiter
}

// limiter returns key's bulkhead for bp: the existing one while the
// bulkhead policy is unchanged (tries in flight keep their slots), a new
// one when it changed.
func (e *Executor) limiter(key string, bp policy.BulkheadPolicy) *keyLimiter {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if kl, ok := e.limiters[key]; ok && kl.policy == bp {
		return kl
	}
	kl := &keyLimiter{policy: bp, l: newLimiter(bp, e.opts.Clock)}
	if e.limiters == nil {
		e.limiters = make(map[string]*keyLimiter)
	}
	e.limiters[key] = kl // bounded with the cache: evicted keys lose theirs
	return kl
}

// tracker returns key's latency tracker, which outlives policy changes.
func (e *Executor) tracker(key string) *hedge.LatencyTracker {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if t, ok := e.trackers[key]; ok {
		return t
	}
	t := hedge.NewLatencyTracker(0)
	if e.trackers == nil {
		e.trackers = make(map[string]*hedge.LatencyTracker)
	}
	e.trackers[key] = t // bounded with the cache: evicted keys lose theirs
	return t
}

// Breaker returns key's circuit breaker, or nil if its policy has none. A
// key not called yet (or evicted as idle) has its policy resolved and
// compiled now, so that an operator can hold a dependency open
// (ForceOpen) before its first call. A breaker held open by ForceOpen
// survives the eviction of its idle key and a change of its circuit
// policy (the new breaker starts held open): only Reset ends it.
func (e *Executor) Breaker(key string) *middleware.CircuitBreaker {
	if e == nil {
		return nil
	}
	if b := e.knownBreaker(key); b != nil {
		return b
	}
	e.lookup(context.Background(), key)
	return e.knownBreaker(key)
}

func (e *Executor) knownBreaker(key string) *middleware.CircuitBreaker {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if kb, ok := e.breakers[key]; ok {
		return kb.b
	}
	return nil
}

// newLimiter is the compiler's: the bulkhead a bulkhead policy describes.
var newLimiter = policyopt.NewLimiter.(func(policy.BulkheadPolicy, clock.Clock) middleware.Limiter)
