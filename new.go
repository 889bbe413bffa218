package recourse

import (
	"errors"
	"fmt"
	"runtime"
	"sort"

	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// New is NewExecutor that reports configuration mistakes up front. It
// returns an error, and no executor, when
//
//   - a WithPolicy policy, or the fallback policy (WithFallbackPolicy,
//     reported as "fallback") when the missing-policy mode uses it, is
//     invalid (policy.Validate: each error a
//     *policy.FieldError naming the key, the field and the value, matching
//     policy.ErrInvalid);
//   - one of those, or a policy of the provider's current set (when
//     the provider lists it, as policy.FileProvider and
//     policy.RemoteProvider do; its default section under the key
//     "default"), names a budget, hedge trigger or classifier that nothing
//     resolves: not registered (WithBudget, WithHedgeTrigger,
//     WithClassifier), not built in (the budget policy.BudgetUnlimited,
//     the triggers "pNN"), not declared by the provider. Each such error
//     names the key, the field and the name, and matches ErrNoBudget,
//     ErrNoTrigger or ErrNoClassifier.
//
// The error lists every problem (errors.Join), one per line. Names are
// resolved exactly as calls resolve them, whatever the missing-name
// modes. Validation leaves nothing in the executor (no compiled key, no
// breaker) and asks the provider for no key's policy. Keys a provider
// serves but cannot list are checked when first called: the executor's
// observer then gets a timeline.PolicyProblem for each name that does not
// resolve.
func New(opts ...Option) (*Executor, error) {
	e := NewExecutor(opts...)
	if err := e.validate(); err != nil {
		if e.unsubscribe != nil {
			e.unsubscribe()
			runtime.SetFinalizer(e, nil)
		}
		return nil, err
	}
	return e, nil
}

// setLister is implemented by providers that can list the policy set
// they serve (policy.FileProvider, policy.RemoteProvider).
type setLister interface {
	Set() *policy.PolicySet
}

// validate returns every problem New reports, joined.
func (e *Executor) validate() error {
	var errs []error
	// A probe shares e's options but none of its state, observes nothing
	// and resolves every name whatever the modes, so that a refusal (a
	// deny mode) does not hide the names after it.
	probe := &Executor{opts: e.opts, versioned: e.versioned}
	probe.opts.Observer = timeline.NoopObserver{}
	probe.opts.MissingClassifierMode = FailureFallback
	probe.opts.MissingTriggerMode = FailureFallback
	// inherited are the problems of the provider's default section, which
	// its keys inherit: each is reported once, under "default".
	inherited := map[[2]string]bool{}
	check := func(key string, ans answer) {
		for _, p := range probe.compile(key, ans).problems {
			if !inherited[[2]string{p.Field, p.Name}] {
				errs = append(errs, p.Err)
			}
		}
	}
	keys := make([]string, 0, len(e.opts.Policies))
	for k := range e.opts.Policies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := policy.Validate(e.opts.Policies[k]); err != nil {
			errs = append(errs, err)
			continue
		}
		check(k, answer{})
	}
	fkeys := make([]string, 0, len(e.opts.Fallbacks))
	for k, fn := range e.opts.Fallbacks {
		if fn == nil {
			fkeys = append(fkeys, k)
		}
	}
	sort.Strings(fkeys)
	for _, k := range fkeys {
		errs = append(errs, fmt.Errorf("recourse: WithFallback(%q, nil): %w", k, ErrNilOperation))
	}
	if fb := e.opts.FallbackPolicy; e.opts.MissingPolicyMode == FailureFallback && fb != (policy.Policy{}) {
		fb.Key = policy.ParseKey("fallback")
		if err := policy.Validate(fb); err != nil {
			errs = append(errs, err)
		} else {
			fp := &Executor{opts: probe.opts}
			fp.opts.Policies = map[string]policy.Policy{"fallback": fb}
			for _, p := range fp.compile("fallback", answer{}).problems {
				errs = append(errs, p.Err)
			}
		}
	}
	if l, ok := e.opts.Provider.(setLister); ok && !isNil(l) {
		if set := l.Set(); set != nil {
			if _, static := e.opts.Policies["default"]; set.Default != nil && !static {
				for _, p := range probe.compile("default", answer{p: *set.Default}).problems {
					errs = append(errs, p.Err)
					inherited[[2]string{p.Field, p.Name}] = true
				}
			}
			for _, k := range set.Keys() {
				if _, static := e.opts.Policies[k.String()]; !static {
					check(k.String(), answer{p: set.Policies[k]})
				}
			}
		}
	}
	return errors.Join(errs...)
}
