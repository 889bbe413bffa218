package recourse

import (
	"context"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// FailureMode says what to do when something a call needs is missing.
type FailureMode int

const (
	// FailureFallback runs the call under the executor's fallback policy.
	// Only meaningful for a missing policy.
	FailureFallback FailureMode = iota
	// FailureAllow runs the call anyway: one attempt for a missing policy,
	// no charge for a missing budget (fail open).
	FailureAllow
	// FailureDeny refuses the call (fail closed).
	FailureDeny
)

// String returns "fallback", "allow" or "deny".
func (m FailureMode) String() string {
	switch m {
	case FailureFallback:
		return "fallback"
	case FailureAllow:
		return "allow"
	case FailureDeny:
		return "deny"
	}
	return "unknown"
}

// Options is the executor's configuration. Build it with Option functions.
type Options struct {
	// Provider resolves keys that have no WithPolicy policy.
	Provider policy.Provider
	// Policies are the policies set with WithPolicy, by key.
	Policies map[string]policy.Policy
	// FallbackPolicy is the policy FailureFallback runs a key under (its
	// Key is replaced by the call's). Default: policy.Defaults().
	FallbackPolicy policy.Policy
	// Fallbacks supply failed calls' results, by key (WithFallback).
	Fallbacks map[string]middleware.FallbackFunc
	// Observer receives every call's events. Default: none.
	Observer timeline.Observer
	// Budgets are the named budgets policies may refer to.
	Budgets map[string]middleware.Budget
	// Classifiers are the named classifiers policies may refer to.
	Classifiers map[string]middleware.Classifier
	// Classifier is used by policies that name none. Default:
	// middleware.DefaultClassifier.
	Classifier middleware.Classifier
	// MissingPolicyMode applies when a key has no policy. Default FailureFallback.
	MissingPolicyMode FailureMode
	// MissingBudgetMode applies when a policy names a budget the executor
	// lacks. Default FailureDeny.
	MissingBudgetMode FailureMode
	// Triggers are the named hedge triggers policies may refer to
	// (HedgePolicy.Trigger), each made per key over the key's tracker.
	Triggers map[string]TriggerFactory
	// MissingTriggerMode applies when a policy names a trigger the executor
	// lacks: FailureFallback/FailureAllow use the trigger the policy's
	// delay and quantile describe, FailureDeny refuses the key's calls.
	MissingTriggerMode FailureMode
	// MissingClassifierMode applies when a policy names a classifier the
	// executor lacks: FailureFallback/FailureAllow use Classifier,
	// FailureDeny refuses the key's calls. Default FailureFallback.
	MissingClassifierMode FailureMode
	// Clock drives backoff sleeps, hedge timers and timeline stamps.
	Clock clock.Clock
	// NoPanicRecovery lets panics in operations, classifiers, budgets and
	// on hedge goroutines crash the caller's goroutine instead of becoming
	// *PanicError.
	NoPanicRecovery bool
	// MaxKeys bounds the per-key cache of compiled chains, breakers and
	// latency trackers (see Executor). Default 4096.
	MaxKeys int
	// ProviderTimeout bounds one provider lookup. Default 5s.
	ProviderTimeout time.Duration
	// ProviderErrorBackoff is how long, on Clock, a key whose provider
	// lookup failed transiently keeps the chain it got (its last good one,
	// or the missing-policy one) before the provider is asked again.
	// Default 1s.
	ProviderErrorBackoff time.Duration
}

// Defaults of the provider options.
const (
	// defaultProviderTimeout bounds a provider lookup (WithProviderTimeout).
	defaultProviderTimeout = 5 * time.Second
	// defaultProviderErrorBackoff is how long a transient provider error
	// is remembered before the provider is asked again
	// (WithProviderErrorBackoff).
	defaultProviderErrorBackoff = time.Second
)

// Option configures an Executor. NewExecutor skips nil options.
type Option func(*Options)

// WithPolicy sets the policy of key, built with policy.New(key, opts...).
// Such policies take precedence over the provider's.
func WithPolicy(key string, opts ...policy.Option) Option {
	return func(o *Options) {
		if o.Policies == nil {
			o.Policies = make(map[string]policy.Policy)
		}
		p := policy.New(key, opts...)
		o.Policies[p.Key.String()] = p
	}
}

// WithProvider resolves policies through p.
func WithProvider(p policy.Provider) Option { return func(o *Options) { o.Provider = p } }

// WithFallbackPolicy sets the policy used by FailureFallback.
func WithFallbackPolicy(opts ...policy.Option) Option {
	return func(o *Options) { o.FallbackPolicy = policy.New("", opts...) }
}

// WithFallback makes fn supply the result of key's calls that fail: it
// gets the call's final error once every try the policy allows has been
// spent (or the call was refused: circuit open, bulkhead full, no policy)
// and returns a value and a nil error to stand in for the call, or an
// error to let it fail (the call's own value is then returned, as without
// a fallback, and fn's value is dropped). For DoValue the value must be of the call's type
// T (nil gives T's zero value); for Do it is dropped; for Endpoint and
// Middleware it is the endpoint's response. The timeline keeps every
// failed try and adds a record with reason "fallback" whose Err is the
// error fn replaced, so observers still see why the call failed. A later
// WithFallback for the same key replaces an earlier one; a nil fn removes
// it (New reports it as an error).
func WithFallback(key string, fn func(ctx context.Context, err error) (any, error)) Option {
	return func(o *Options) {
		k := policy.ParseKey(key).String()
		if o.Fallbacks == nil {
			o.Fallbacks = make(map[string]middleware.FallbackFunc)
		}
		if fn == nil {
			o.Fallbacks[k] = nil
			return
		}
		o.Fallbacks[k] = func(ctx context.Context, _ any, err error) (any, error) { return fn(ctx, err) }
	}
}

// WithObserver sends every call's events to obs. It also gets the
// reloads of the executor's provider when the provider reports them
// (policy.ReloadSubscriber: policy.FileProvider, policy.RemoteProvider),
// and, if it implements timeline.PolicyProblemObserver (as every observer
// embedding timeline.BaseObserver does), each budget, trigger or
// classifier a key's policy names that the executor cannot resolve, once
// per compile of the key. A nil obs or a nil pointer is ignored; timeline.Multi combines several
// observers (dropping nil entries).
func WithObserver(obs timeline.Observer) Option { return func(o *Options) { o.Observer = obs } }

// WithBudget registers budget b under name for policies to refer to. A nil
// b (or nil pointer) counts as missing: the missing-budget mode applies.
func WithBudget(name string, b middleware.Budget) Option {
	return func(o *Options) {
		if o.Budgets == nil {
			o.Budgets = make(map[string]middleware.Budget)
		}
		o.Budgets[name] = b
	}
}

// WithClassifier registers classifier c under name for policies to refer to.
func WithClassifier(name string, c middleware.Classifier) Option {
	return func(o *Options) {
		if o.Classifiers == nil {
			o.Classifiers = make(map[string]middleware.Classifier)
		}
		o.Classifiers[name] = c
	}
}

// TriggerFactory makes a key's hedge trigger over the key's latency
// tracker (which the executor keeps across policy changes).
type TriggerFactory func(tracker *hedge.LatencyTracker) hedge.Trigger

// WithHedgeTrigger registers a hedge trigger under name for policies to
// refer to (HedgePolicy.Trigger). A nil f counts as missing: the
// missing-trigger mode applies.
func WithHedgeTrigger(name string, f TriggerFactory) Option {
	return func(o *Options) {
		if o.Triggers == nil {
			o.Triggers = make(map[string]TriggerFactory)
		}
		o.Triggers[name] = f
	}
}

// WithMissingTriggerMode sets what happens when a policy names a hedge
// trigger the executor lacks.
func WithMissingTriggerMode(m FailureMode) Option {
	return func(o *Options) { o.MissingTriggerMode = m }
}

// WithDefaultClassifier sets the classifier of policies that name none.
func WithDefaultClassifier(c middleware.Classifier) Option {
	return func(o *Options) { o.Classifier = c }
}

// WithMissingPolicyMode sets what happens to keys without a policy:
// FailureFallback (default), FailureAllow or FailureDeny.
func WithMissingPolicyMode(m FailureMode) Option {
	return func(o *Options) { o.MissingPolicyMode = m }
}

// WithMissingBudgetMode sets what happens when a policy names a budget the
// executor lacks: FailureDeny (default, fail closed) or FailureAllow.
func WithMissingBudgetMode(m FailureMode) Option {
	return func(o *Options) { o.MissingBudgetMode = m }
}

// WithMissingClassifierMode sets what happens when a policy names a
// classifier the executor lacks.
func WithMissingClassifierMode(m FailureMode) Option {
	return func(o *Options) { o.MissingClassifierMode = m }
}

// WithClock sets the clock for backoff sleeps, hedge timers and stamps.
func WithClock(c clock.Clock) Option { return func(o *Options) { o.Clock = c } }

// WithMaxKeys bounds the per-key cache at n keys (default 4096;
// n ≤ 0 keeps the default). Past n, keys idle since the previous sweep are
// evicted with their breaker and latency tracker: a key that comes back
// is resolved and compiled again, with a fresh breaker. Keys in use are
// kept; should more than 2n be in use at once, arbitrary ones are evicted
// so that memory stays bounded.
func WithMaxKeys(n int) Option { return func(o *Options) { o.MaxKeys = n } }

// WithProviderTimeout bounds each provider lookup at d (default
// 5s; d ≤ 0 keeps the default). A lookup is shared by
// every caller waiting for the key and runs under a context detached from
// their cancellation (its values kept) with this timeout; each caller
// still stops waiting when its own context is done. A lookup that times
// out counts as a transient provider error.
func WithProviderTimeout(d time.Duration) Option {
	return func(o *Options) { o.ProviderTimeout = d }
}

// WithProviderErrorBackoff sets how long a transient provider error (any
// error but policy.ErrNotFound, a panic, or a timed-out lookup) is
// remembered before the provider is asked again: d on the executor's
// clock (default 1s; d ≤ 0 keeps the default).
// Meanwhile the key runs under its last good policy if it had one, and
// under the missing-policy mode if not. Such an error is never cached as
// the key's policy.
func WithProviderErrorBackoff(d time.Duration) Option {
	return func(o *Options) { o.ProviderErrorBackoff = d }
}

// WithoutPanicRecovery lets panics propagate instead of becoming errors.
func WithoutPanicRecovery() Option { return func(o *Options) { o.NoPanicRecovery = true } }
