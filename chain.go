package recourse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/mwopt"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// compile resolves and compiles key's policy, applying the missing-policy
// and missing-classifier modes. It never fails: a refusal is compiled into
// a chain that refuses.
func (e *Executor) compile(key string, ans answer) *entry {
	attrs := map[string]string{}
	p, refusal := e.resolve(key, ans, attrs)
	p.Key = policy.ParseKey(key)
	np, clamped := p.Normalize()
	if len(clamped) > 0 {
		attrs[timeline.AttrPolicyNormalized] = "true"
		attrs[timeline.AttrPolicyClampedFields] = strings.Join(clamped, ",")
	}
	classifier := e.opts.Classifier
	missingClassifier := false
	if refusal == nil && np.Classifier != "" {
		if c, ok := e.opts.Classifiers[np.Classifier]; ok {
			classifier = c
		} else {
			missingClassifier = true
			if e.opts.MissingClassifierMode == FailureDeny {
				refusal = &unresolvedError{key: key, field: "classifier", name: np.Classifier, kind: ErrNoClassifier}
				attrs[timeline.AttrClassifierError] = fmt.Sprintf("no classifier %q; calls refused (missing-classifier mode deny)", np.Classifier)
			} else {
				attrs[timeline.AttrClassifierError] = fmt.Sprintf("no classifier %q; using the default", np.Classifier)
			}
		}
	}
	comp := policy.Compiler{
		Observer:   e.callObserver(),
		Clock:      e.opts.Clock,
		Classifier: classifier,
		Attributes: attrs,
		NoRecover:  e.opts.NoPanicRecovery,
		Fallback:   e.opts.Fallbacks[key],
	}
	en := &entry{key: key}
	sharedRan := refusal == nil
	if sharedRan {
		refusal = e.shared(key, np, &comp, en, attrs)
	}
	en.problems = e.unresolved(key, np, missingClassifier, sharedRan, refusal, attrs)
	if refusal == nil {
		c, err := comp.Compile(np)
		if err == nil {
			en.compiled = c
			en.mw = c.Middleware
		} else {
			refusal = err
			attrs[timeline.AttrPolicyError] = err.Error()
		}
	}
	if refusal != nil {
		en.refusal = refusal
		en.mw = e.refusing(key, refusal, attrs)
	}
	en.ep = en.mw(e.terminal(key))
	if kb := en.breaker; kb != nil && !e.opts.NoPanicRecovery && !timeline.IsNoop(e.opts.Observer) {
		ep := en.ep
		en.ep = func(ctx context.Context, req any) (any, error) {
			resp, err := ep(ctx, req)
			return resp, kb.reportPanic(err)
		}
	}
	en.good = refusal == nil && attrs[timeline.AttrPolicyError] == ""
	return en
}

// callObserver is the observer a key's chain reports its calls to: the
// executor's, guarded (see guardedObserver) while panic recovery is on.
func (e *Executor) callObserver() timeline.Observer {
	if e.opts.NoPanicRecovery || timeline.IsNoop(e.opts.Observer) {
		return e.opts.Observer
	}
	return guard(e.opts.Observer)
}

// refusing is the chain of a key whose calls may not run: it opens a
// timeline with attrs, records one refused attempt and returns err.
func (e *Executor) refusing(key string, err error, attrs map[string]string) endpoint.Middleware {
	var fopts []middleware.Option
	if !e.opts.NoPanicRecovery {
		fopts = append(fopts, mwopt.RecoverFallbackPanics.(func(string) middleware.Option)(key))
	}
	return endpoint.Chain(
		middleware.Observe(key, middleware.WithObserver(e.callObserver()), middleware.WithClock(e.opts.Clock),
			mwopt.WithAttributes.(func(map[string]string) middleware.Option)(attrs)),
		middleware.Fallback(e.opts.Fallbacks[key], fopts...), // next itself when the key has none
		refuse(err),
	)
}

// refuse is the chain of a key whose calls may not run: it records one
// refused attempt and returns err.
func refuse(err error) endpoint.Middleware {
	var reason string
	switch {
	case errors.Is(err, ErrNoPolicy):
		reason = timeline.ReasonNoPolicy
	case errors.Is(err, ErrNoClassifier), errors.Is(err, ErrNoTrigger), errors.Is(err, policy.ErrBudgetNotGiven):
		reason = timeline.ReasonPolicyError
	case errors.Is(err, context.Canceled):
		reason = timeline.ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		reason = timeline.ReasonTimeout
	default:
		reason = timeline.ReasonNonRetryable
	}
	return func(endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, _ any) (any, error) {
			if rec := record.FromContext(ctx); rec != nil {
				now := rec.Now()
				rec.Attempt(ctx, timeline.AttemptRecord{Attempt: 1, StartTime: now, EndTime: now,
					Outcome: timeline.OutcomeAbort, Reason: reason, Err: err})
			}
			return nil, err
		}
	}
}

// valueOp is a typed operation passed through the chain as the request.
// A func value is pointer-shaped, so passing it as `any` allocates nothing.
type valueOp[T any] func(context.Context) (T, error)

func (f valueOp[T]) call(ctx context.Context) (any, error) { return f(ctx) }

type valueCaller interface {
	call(ctx context.Context) (any, error)
}

// terminal is the innermost endpoint of Do and DoValue: it runs the
// operation carried as the request, recovering its panics.
func (e *Executor) terminal(key string) endpoint.Endpoint {
	run := func(ctx context.Context, req any) (any, error) {
		switch op := req.(type) {
		case func(context.Context) error:
			return nil, op(ctx)
		case valueCaller:
			return op.call(ctx)
		}
		return nil, fmt.Errorf("recourse: unsupported operation %T", req)
	}
	return e.recovering(key, run)
}

// recovering wraps next so that its panics become *PanicError, unless
// recovery is off.
func (e *Executor) recovering(key string, next endpoint.Endpoint) endpoint.Endpoint {
	if e.opts.NoPanicRecovery {
		return next
	}
	return func(ctx context.Context, req any) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, middleware.NewPanicError("op", key, r)
			}
		}()
		return next(ctx, req)
	}
}
