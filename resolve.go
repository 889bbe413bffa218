package recourse

import (
	"context"
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
		if e.opts.Fallback == (policy.Policy{}) { // a zero Executor
			return policy.Defaults(), nil
		}
		return e.opts.Fallback, nil
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
