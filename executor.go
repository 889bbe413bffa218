package recourse

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

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
