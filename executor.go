package recourse

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// ErrNoTrigger is returned (wrapped) when a policy names a hedge trigger
// the executor lacks and the missing-trigger mode is FailureDeny.
var ErrNoTrigger = errors.New("recourse: no such hedge trigger")

// ErrNoClassifier is returned (wrapped) when a policy names a classifier
// the executor lacks and the missing-classifier mode is FailureDeny.
var ErrNoClassifier = errors.New("recourse: no such classifier")

// maxCachedKeys bounds the per-key cache. Keys are meant to be of low
// cardinality; past this many, chains for new keys are compiled per call
// (correct, slower) instead of growing the cache without bound.
const maxCachedKeys = 4096

// Executor runs calls under per-key policies. It resolves a key's policy
// once, compiles it into a decorator chain, and caches the chain: after
// the first call for a key, a call reads the cache without taking a lock.
// The cache follows providers that implement policy.Versioned.
//
// An Executor is safe for concurrent use. Its zero value is ready to use
// and behaves like NewExecutor(): every key runs under policy.Defaults().
type Executor struct {
	opts      Options
	versioned policy.Versioned // opts.Provider, if it reports versions

	mu      sync.Mutex                        // serialises cache writers
	entries atomic.Pointer[map[string]*entry] // copy-on-write

	stateMu  sync.Mutex // guards the per-key state below (compile time only)
	breakers map[string]*keyBreaker
	trackers map[string]*hedge.LatencyTracker
}

// keyBreaker is a key's breaker and the policy it was built from: a
// changed policy gets a new breaker, an unchanged one keeps its state.
type keyBreaker struct {
	policy policy.CircuitPolicy
	b      *middleware.CircuitBreaker
}

// entry is one key's compiled chain.
type entry struct {
	key      string
	version  uint64
	compiled *policy.Compiled    // nil when the key's calls are refused
	refusal  error               // why they are, if they are
	mw       endpoint.Middleware // the chain, for Endpoint/Middleware
	ep       endpoint.Endpoint   // the chain over the Do/DoValue terminal
}

// NewExecutor returns an executor configured by opts. With no options,
// every key runs under policy.Defaults() with the default classifier.
func NewExecutor(opts ...Option) *Executor {
	o := Options{
		Fallback:          policy.Defaults(),
		MissingPolicyMode: FailureFallback,
		MissingBudgetMode: FailureDeny,
		Classifier:        middleware.DefaultClassifier,
		Clock:             clock.Real{},
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.Clock = clock.Or(o.Clock)
	if o.Classifier == nil {
		o.Classifier = middleware.DefaultClassifier
	}
	e := &Executor{opts: o}
	e.versioned, _ = o.Provider.(policy.Versioned)
	return e
}

// NewDefaultExecutor returns an executor with recourse's recommended
// defaults, then opts: keys without a policy run under policy.Defaults();
// the budget "unlimited" is registered; the hedge triggers "p99" and "p95"
// (latency-aware, 10ms until warm) are registered for policies to name.
func NewDefaultExecutor(opts ...Option) *Executor {
	defaults := []Option{
		WithBudget("unlimited", middleware.UnlimitedBudget{}),
		WithHedgeTrigger("p99", quantileTrigger(0.99)),
		WithHedgeTrigger("p95", quantileTrigger(0.95)),
	}
	return NewExecutor(append(defaults, opts...)...)
}

func quantileTrigger(q float64) TriggerFactory {
	return func(t *hedge.LatencyTracker) hedge.Trigger {
		return hedge.NewLatencyTrigger(t, q, hedge.Fallback(policy.DefaultHedgeDelay))
	}
}

func (e *Executor) version() uint64 {
	if e.versioned == nil {
		return 0
	}
	return e.versioned.Version()
}

// lookup returns key's entry, building it on the first call.
func (e *Executor) lookup(ctx context.Context, key string) *entry {
	if m := e.entries.Load(); m != nil {
		if en, ok := (*m)[key]; ok && (e.versioned == nil || en.version == e.version()) {
			return en
		}
	}
	return e.build(ctx, key)
}

func (e *Executor) build(ctx context.Context, key string) *entry {
	version := e.version() // read first: a change during resolution rebuilds next call
	en := e.compile(ctx, key)
	en.version = version

	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.entries.Load()
	var n int
	if old != nil {
		n = len(*old)
		if cur, ok := (*old)[key]; ok && cur.version == version {
			return cur // another caller won the race; keep one chain per key
		}
	}
	if n >= maxCachedKeys {
		return en
	}
	m := make(map[string]*entry, n+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[key] = en
	e.entries.Store(&m)
	return en
}

// compile resolves and compiles key's policy, applying the missing-policy
// and missing-classifier modes. It never fails: a refusal is compiled into
// a chain that refuses.
func (e *Executor) compile(ctx context.Context, key string) *entry {
	attrs := map[string]string{}
	p, refusal := e.resolve(ctx, key, attrs)
	p.Key = policy.ParseKey(key)
	np, clamped := p.Normalize()
	if len(clamped) > 0 {
		attrs[timeline.AttrPolicyNormalized] = "true"
		attrs[timeline.AttrPolicyClampedFields] = strings.Join(clamped, ",")
	}
	classifier := e.opts.Classifier
	if refusal == nil && np.Classifier != "" {
		if c, ok := e.opts.Classifiers[np.Classifier]; ok {
			classifier = c
		} else if e.opts.MissingClassifierMode == FailureDeny {
			refusal = fmt.Errorf("%w %q (key %q)", ErrNoClassifier, np.Classifier, key)
		} else {
			attrs["classifier_error"] = fmt.Sprintf("no classifier %q; using the default", np.Classifier)
		}
	}
	comp := policy.Compiler{
		Observer:   e.opts.Observer,
		Clock:      e.opts.Clock,
		Classifier: classifier,
		Attributes: attrs,
		NoRecover:  e.opts.NoPanicRecovery,
	}
	if refusal == nil {
		refusal = e.shared(key, np, &comp, attrs)
	}
	en := &entry{key: key}
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
		en.mw = endpoint.Chain(
			middleware.Observe(key, middleware.WithObserver(e.opts.Observer), middleware.ObserveClock(e.opts.Clock), middleware.WithAttributes(attrs)),
			refuse(refusal),
		)
	}
	en.ep = en.mw(e.terminal(key))
	return en
}

// shared fills the compiler with the executor-held state the policy's
// breaker, hedge and budget sections use, applying the missing-budget and
// missing-trigger modes. A non-nil error refuses the key's calls.
func (e *Executor) shared(key string, p policy.Policy, comp *policy.Compiler, attrs map[string]string) error {
	if p.Circuit.Enabled {
		comp.Breaker = e.breaker(key, p.Circuit)
	}
	if p.Hedge.Enabled {
		tracker := e.tracker(key)
		comp.Tracker = tracker
		if name := p.Hedge.Trigger; name != "" {
			if f, ok := e.opts.Triggers[name]; ok {
				comp.Trigger = f(tracker)
			} else if e.opts.MissingTriggerMode == FailureDeny {
				return fmt.Errorf("%w %q (key %q)", ErrNoTrigger, name, key)
			} else {
				attrs["trigger_error"] = fmt.Sprintf("no hedge trigger %q; using the policy's delay/quantile", name)
			}
		}
	}
	comp.Budget = e.budget(p.Budget, attrs)
	if p.Hedge.Enabled {
		comp.HedgeBudget = e.budget(p.Hedge.Budget, attrs)
	}
	return nil
}

// budget resolves a budget name, applying the missing-budget mode: deny
// (default) refuses every retry and hedge, allow lets them all through.
func (e *Executor) budget(name string, attrs map[string]string) middleware.Budget {
	if name == "" {
		return nil
	}
	if b, ok := e.opts.Budgets[name]; ok {
		return b
	}
	attrs["budget_error"] = fmt.Sprintf("no budget %q (missing_budget_mode=%s)", name, e.opts.MissingBudgetMode)
	if e.opts.MissingBudgetMode == FailureAllow {
		return middleware.UnlimitedBudget{}
	}
	return missingBudget{}
}

// missingBudget stands in, failing closed, for a budget that does not exist.
type missingBudget struct{}

func (missingBudget) Take(_ context.Context, t middleware.Try) middleware.Decision {
	if t.Kind == middleware.TryFirst {
		return middleware.Decision{Allowed: true, Reason: middleware.ReasonFirstTry}
	}
	return middleware.Decision{Allowed: false, Reason: "budget_missing"}
}

// breaker returns key's breaker for cp: the existing one while the circuit
// policy is unchanged, a new one when it changed.
func (e *Executor) breaker(key string, cp policy.CircuitPolicy) *middleware.CircuitBreaker {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if kb, ok := e.breakers[key]; ok && kb.policy == cp {
		return kb.b
	}
	cfg := policy.BreakerConfig(key, cp)
	obs, clk := e.opts.Observer, clock.Or(e.opts.Clock)
	if !timeline.IsNoop(obs) {
		cfg.OnStateChange = func(name string, from, to endpoint.BreakerState) {
			obs.OnBreakerState(timeline.BreakerStateChange{Key: name, From: from.String(), To: to.String(), At: clk.Now()})
		}
	}
	b := middleware.NewCircuitBreaker(cfg)
	if e.breakers == nil {
		e.breakers = make(map[string]*keyBreaker)
	}
	if len(e.breakers) < maxCachedKeys {
		e.breakers[key] = &keyBreaker{policy: cp, b: b}
	}
	return b
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
	if len(e.trackers) < maxCachedKeys {
		e.trackers[key] = t
	}
	return t
}

// Breaker returns key's circuit breaker, or nil if its policy has none (or
// no call for it has been made yet).
func (e *Executor) Breaker(key string) *middleware.CircuitBreaker {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if kb, ok := e.breakers[key]; ok {
		return kb.b
	}
	return nil
}

// resolve finds key's policy, recording how in attrs. A policy that fails
// policy.Validate counts as missing (its error, naming the field and the
// value, goes to the policy_error attribute). A non-nil error means the
// key's calls are refused.
func (e *Executor) resolve(ctx context.Context, key string, attrs map[string]string) (policy.Policy, error) {
	var err error
	if p, ok := e.opts.Policies[key]; ok {
		if err = policy.Validate(p); err == nil {
			attrs[timeline.AttrPolicySource] = "static"
			return p, nil
		}
	} else if e.opts.Provider != nil {
		var p policy.Policy
		p, err = e.fromProvider(ctx, key)
		if err == nil {
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

// refuse is the chain of a key whose calls may not run: it records one
// refused attempt and returns err.
func refuse(err error) endpoint.Middleware {
	reason := timeline.ReasonNoPolicy
	if !errors.Is(err, ErrNoPolicy) {
		reason = timeline.ReasonNonRetryable
	}
	return func(endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, _ any) (any, error) {
			if rec := timeline.RecorderFromContext(ctx); rec != nil {
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

// Do runs op under key's policy and returns its final error.
func (e *Executor) Do(ctx context.Context, key string, op func(context.Context) error) error {
	_, err := e.lookup(ctx, key).ep(ctx, op)
	return err
}

// DoWithTimeline is Do that also returns the call's timeline.
func (e *Executor) DoWithTimeline(ctx context.Context, key string, op func(context.Context) error) (*timeline.Timeline, error) {
	ctx, c := timeline.Record(ctx)
	err := e.Do(ctx, key, op)
	return c.Timeline(), err
}

// DoValueWith runs op under key's policy on executor e.
func DoValueWith[T any](ctx context.Context, e *Executor, key string, op func(context.Context) (T, error)) (T, error) {
	resp, err := e.lookup(ctx, key).ep(ctx, valueOp[T](op))
	v, _ := resp.(T)
	return v, err
}

// DoValueWithTimelineWith is DoValueWith that also returns the timeline.
func DoValueWithTimelineWith[T any](ctx context.Context, e *Executor, key string, op func(context.Context) (T, error)) (T, *timeline.Timeline, error) {
	ctx, c := timeline.Record(ctx)
	v, err := DoValueWith(ctx, e, key, op)
	return v, c.Timeline(), err
}

// boundEndpoint is a key's chain applied to one go-kit endpoint.
type boundEndpoint struct {
	en *entry
	ep endpoint.Endpoint
}

// Endpoint returns next decorated with key's chain, for go-kit. The chain
// follows policy changes: it is re-applied when the key's policy is
// recompiled, and otherwise reused without locking.
func (e *Executor) Endpoint(key string, next endpoint.Endpoint) endpoint.Endpoint {
	inner := e.recovering(key, next)
	var bound atomic.Pointer[boundEndpoint]
	return func(ctx context.Context, req any) (any, error) {
		en := e.lookup(ctx, key)
		b := bound.Load()
		if b == nil || b.en != en {
			b = &boundEndpoint{en: en, ep: en.mw(inner)}
			bound.Store(b)
		}
		return b.ep(ctx, req)
	}
}

// Middleware returns key's chain as a go-kit middleware.
func (e *Executor) Middleware(key string) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint { return e.Endpoint(key, next) }
}

// Explain returns key's compiled policy and chain as calls will run it,
// resolving it if no call has yet. The error is why the key's calls are
// refused, if they are.
func (e *Executor) Explain(ctx context.Context, key string) (*policy.Compiled, error) {
	en := e.lookup(ctx, key)
	return en.compiled, en.refusal
}

// Keys returns the keys whose chains are cached, sorted.
func (e *Executor) Keys() []string {
	m := e.entries.Load()
	if m == nil {
		return nil
	}
	keys := make([]string, 0, len(*m))
	for k := range *m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
