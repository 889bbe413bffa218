package recourse

import (
	"context"
	"errors"
	"fmt"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// answer is the provider's answer for a key.
type answer struct {
	p        policy.Policy
	err      error
	panicked *PanicError // the provider panicked with recovery off
}

// resolve finds key's policy, recording how in attrs: its WithPolicy
// policy, or else ans, the provider's answer. A policy that fails
// policy.Validate counts as missing (its error, naming the field and the
// value, goes to the policy_error attribute). A non-nil error means the
// key's calls are refused.
func (e *Executor) resolve(key string, ans answer, attrs map[string]string) (policy.Policy, error) {
	var err error
	if p, ok := e.opts.Policies[key]; ok {
		if err = policy.Validate(p); err == nil {
			attrs[timeline.AttrPolicySource] = "static"
			return p, nil
		}
	} else if e.opts.Provider != nil {
		p := ans.p
		if err = ans.err; err == nil {
			p.Key = policy.ParseKey(key)
			if err = policy.Validate(p); err == nil {
				attrs[timeline.AttrPolicySource] = sourceOf(e.opts.Provider)
				return p, nil
			}
		}
	} else {
		err = fmt.Errorf("%w %q (no provider)", policy.ErrNotFound, key)
	}
	attrs[timeline.AttrPolicyError] = err.Error()
	attrs[timeline.AttrMissingPolicyMode] = e.opts.MissingPolicyMode.String()
	switch e.opts.MissingPolicyMode {
	case FailureAllow:
		attrs[timeline.AttrPolicySource] = "allow"
		return policy.New(key, policy.MaxAttempts(1)), nil
	case FailureDeny:
		attrs[timeline.AttrPolicySource] = "deny"
		return policy.Policy{}, &NoPolicyError{Key: key, Err: err}
	default:
		attrs[timeline.AttrPolicySource] = timeline.ReasonPolicyFallback
		if e.opts.FallbackPolicy == (policy.Policy{}) { // a zero Executor
			return policy.Defaults(), nil
		}
		return e.opts.FallbackPolicy, nil
	}
}

// fromProvider asks the provider, turning a panic into a *PanicError.
func (e *Executor) fromProvider(ctx context.Context, key string) (p policy.Policy, err error) {
	if !e.opts.NoPanicRecovery {
		defer func() {
			if r := recover(); r != nil {
				err = middleware.NewPanicError("provider", key, r)
			}
		}()
	}
	return e.opts.Provider.Policy(ctx, policy.ParseKey(key))
}

func sourceOf(p policy.Provider) string {
	if s, ok := p.(policy.Sourced); ok {
		return s.Source()
	}
	return "provider"
}

// unresolved lists the names p, key's policy as compiled, refers to that
// the executor could not resolve, as its own resolution reported them:
// the classifier (missingClassifier, from compile), the hedge trigger
// (what shared reported, if it ran) and each budget (resolved one by one
// through budget, so that a missing hedge budget does not hide a missing
// retry budget).
func (e *Executor) unresolved(key string, p policy.Policy, missingClassifier, sharedRan bool, refusal error, attrs map[string]string) []timeline.PolicyProblem {
	var out []timeline.PolicyProblem
	add := func(field, name string, kind error, mode string) {
		out = append(out, timeline.PolicyProblem{Key: key, Field: field, Name: name, Mode: mode,
			Err: &unresolvedError{key: key, field: field, name: name, kind: kind}})
	}
	if missingClassifier {
		add("classifier", p.Classifier, ErrNoClassifier, fallbackOrDeny(e.opts.MissingClassifierMode))
	}
	if h := p.Hedge; sharedRan && h.Enabled && h.Trigger != "" &&
		(errors.Is(refusal, ErrNoTrigger) || attrs[timeline.AttrTriggerError] != "") {
		add("hedge.trigger", h.Trigger, ErrNoTrigger, fallbackOrDeny(e.opts.MissingTriggerMode))
	}
	budgetMode := FailureDeny.String()
	if e.opts.MissingBudgetMode == FailureAllow {
		budgetMode = FailureAllow.String()
	}
	for _, b := range [...]struct{ field, name string }{{"budget", p.Budget}, {"hedge.budget", hedgeBudget(p)}} {
		// budget reports a missing name in the attributes it is given.
		if scratch := map[string]string{}; b.name != "" && (e.budget(b.name, scratch) == nil || len(scratch) > 0) {
			add(b.field, b.name, ErrNoBudget, budgetMode)
		}
	}
	return out
}

// hedgeBudget is the budget name p's hedges take from, if it names one of
// their own.
func hedgeBudget(p policy.Policy) string {
	if p.Hedge.Enabled {
		return p.Hedge.Budget
	}
	return ""
}

func fallbackOrDeny(m FailureMode) string {
	if m == FailureDeny {
		return FailureDeny.String()
	}
	return FailureFallback.String()
}
