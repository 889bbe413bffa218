package recourse

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// defaultMaxKeys is the default bound of an executor's per-key cache (see
// WithMaxKeys). Keys are meant to be of low cardinality: a few hundred
// call sites, not one key per user or request.
const defaultMaxKeys = 4096

// Executor runs calls under per-key policies. It resolves a key's policy
// once, compiles it into a decorator chain, and caches the chain: after
// the first call for a key, a call reads the cache without taking a lock.
// The cache follows providers that implement policy.Versioned.
//
// The cache is bounded (WithMaxKeys). Past the bound, an eviction sweep
// evicts idle keys with their breaker and latency tracker; keys in use keep
// their chain and state. Each key's standing grows with its calls (up to
// 16) and halves at every sweep, so a key seen only once goes at the next
// sweep while one that carried traffic stays through several sweeps of
// idleness: a burst of one-off keys cannot push out the keys that carry
// traffic. Only past twice the bound do the least used keys go at once.
//
// An Executor is safe for concurrent use. Its zero value is ready to use
// and behaves like NewExecutor(): every key runs under policy.Defaults().
// Calls on a nil *Executor return an error wrapping ErrNilExecutor.
type Executor struct {
	opts      Options
	versioned policy.Versioned // opts.Provider, if it reports versions

	cache sync.Map // key → *entry, read without locking

	mu      sync.Mutex // serialises cache writers and the fields below
	size    int        // entries in cache
	limit   int        // size past which the next insert sweeps
	flights map[string]*flight

	// unsubscribe ends the subscription of opts.Observer to the
	// provider's reloads (nil without one).
	unsubscribe func()

	stateMu  sync.Mutex // guards the per-key state below (compile time only)
	breakers map[string]*keyBreaker
	trackers map[string]*hedge.LatencyTracker
	limiters map[string]*keyLimiter
}

// entry is one key's compiled chain.
type entry struct {
	key      string
	version  uint64
	compiled *policy.Compiled    // nil when the key's calls are refused
	refusal  error               // why they are, if they are
	mw       endpoint.Middleware // the chain, for Endpoint/Middleware
	ep       endpoint.Endpoint   // the chain over the Do/DoValue terminal

	// transient marks a chain compiled after a transient provider error
	// (or from the last good policy kept through one): it serves calls
	// from failedAt until retryAt on the executor's clock, then the
	// provider is asked again (sooner if the clock steps back).
	transient bool
	failedAt  time.Time
	retryAt   time.Time
	// good marks a chain of the key's own policy (not the missing-policy
	// one): the chain kept through transient provider errors.
	good bool

	// The key's shared state the chain uses, re-registered when the entry
	// is cached so that an eviction racing a recompilation loses nothing.
	breaker *keyBreaker
	tracker *hedge.LatencyTracker
	limiter *keyLimiter

	// problems are the names the policy refers to that nothing resolved,
	// reported to the observer once, when the entry is cached.
	problems []timeline.PolicyProblem

	// used is set by calls and cleared by eviction sweeps; seenAt (under
	// Executor.mu) is when a sweep last found it set, or when the entry
	// was cached: the key has been idle at least since then.
	used   atomic.Bool
	seenAt time.Time
	// hits counts the calls that found the entry cached, up to maxHits:
	// past twice the bound, the least used keys go first.
	hits atomic.Uint32
}

// maxHits caps entry.hits.
const maxHits = 16

// idleAfter is how long a key must go without a call before a sweep may
// evict it. Keys that carry traffic are never idle that long; a burst of
// one-off keys faster than that only fills the cache to twice its bound,
// where the least used keys (the one-off ones) go first.
const idleAfter = time.Second

// NewExecutor returns an executor configured by opts. With no options,
// every key runs under policy.Defaults() with the default classifier.
// It reports no configuration mistake: New does. If the provider reports
// its reloads (policy.ReloadSubscriber), the executor's observer is
// subscribed to them for as long as the executor is reachable.
func NewExecutor(opts ...Option) *Executor {
	o := Options{
		FallbackPolicy:    policy.Defaults(),
		MissingPolicyMode: FailureFallback,
		MissingBudgetMode: FailureDeny,
		Classifier:        middleware.DefaultClassifier,
		Clock:             clock.Real{},
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	o.Clock = clockx.Or(o.Clock)
	if o.Classifier == nil {
		o.Classifier = middleware.DefaultClassifier
	}
	o.Observer = timeline.Multi(o.Observer) // drops nil and nil-pointer observers
	e := &Executor{opts: o}
	e.versioned, _ = o.Provider.(policy.Versioned)
	e.subscribe()
	return e
}

// subscribe sends the provider's reload events to the executor's
// observer, if the provider reports reloads (policy.ReloadSubscriber) and
// there is an observer. The subscription holds the observer, not the
// executor: it ends when the executor is garbage collected.
func (e *Executor) subscribe() {
	rs, ok := e.opts.Provider.(policy.ReloadSubscriber)
	if !ok || isNil(rs) || timeline.IsNoop(e.opts.Observer) {
		return
	}
	unsubscribe := rs.SubscribeReloads(e.opts.Observer)
	if unsubscribe == nil {
		return
	}
	e.unsubscribe = unsubscribe
	runtime.SetFinalizer(e, func(e *Executor) { e.unsubscribe() })
}

// report tells the observer of the names en's policy refers to that
// nothing resolved: once per compile, when the compiled entry is cached.
// With panic recovery on, an observer's panic is dropped: the chain is
// cached already, and the call it was compiled for goes on.
func (e *Executor) report(en *entry) {
	if len(en.problems) == 0 {
		return
	}
	if !e.opts.NoPanicRecovery {
		defer func() { _ = recover() }()
	}
	if po, ok := e.opts.Observer.(timeline.PolicyProblemObserver); ok && !timeline.IsNoop(e.opts.Observer) {
		for _, p := range en.problems {
			po.OnPolicyProblem(p)
		}
	}
}

// storeAndReport stores en as key's entry and reports its problems if it is the
// one cached.
func (e *Executor) storeAndReport(key string, en *entry) *entry {
	got := e.store(key, en)
	if got == en {
		e.report(en)
	}
	return got
}

// NewDefaultExecutor returns an executor with recourse's recommended
// defaults, then opts: keys without a policy run under policy.Defaults().
// Like every executor it resolves the budget "unlimited" and the hedge
// triggers "pNN" (p90, p99, p99.9, …: latency-aware, on the policy's delay
// until the key's latencies are known) with nothing registered.
func NewDefaultExecutor(opts ...Option) *Executor {
	return NewExecutor(opts...)
}

// quantileTriggerWith hedges at quantile q of the key's latencies, after
// fallback (the default hedge delay if not positive) until they are known.
func quantileTriggerWith(q float64, fallback time.Duration) TriggerFactory {
	if fallback <= 0 {
		p, _ := policy.Policy{}.Normalize()
		fallback = p.Hedge.Delay
	}
	return func(t *hedge.LatencyTracker) hedge.Trigger {
		return hedge.NewLatencyTrigger(t, q, hedge.Fallback(fallback))
	}
}

func (e *Executor) version() uint64 {
	if e.versioned == nil {
		return 0
	}
	return e.versioned.Version()
}

func (e *Executor) now() time.Time { return clockx.Or(e.opts.Clock).Now() }

func (e *Executor) maxKeys() int {
	if e.opts.MaxKeys > 0 {
		return e.opts.MaxKeys
	}
	return defaultMaxKeys
}

// fresh reports whether en may serve calls: compiled at the provider's
// current version and, if transient, within its backoff.
func (e *Executor) fresh(en *entry) bool {
	return (e.versioned == nil || en.version == e.version()) &&
		(!en.transient || en.within(e.now()))
}

// within reports whether now falls in a transient entry's backoff.
func (en *entry) within(now time.Time) bool {
	return !now.Before(en.failedAt) && now.Before(en.retryAt)
}

// lookup returns key's entry, building it when there is none or it is
// stale. ctx is the caller's: it bounds only this caller's wait.
func (e *Executor) lookup(ctx context.Context, key string) *entry {
	if v, ok := e.cache.Load(key); ok {
		if en := v.(*entry); e.fresh(en) {
			if !en.used.Load() { // read-mostly: no cache-line ping-pong on hot keys
				en.used.Store(true)
			}
			if en.hits.Load() < maxHits {
				en.hits.Add(1)
			}
			return en
		}
	}
	return e.build(ctx, key)
}

// build resolves and compiles key's chain and caches it. Keys that go to
// the provider are resolved once for all concurrent callers (see flight).
func (e *Executor) build(ctx context.Context, key string) *entry {
	version := e.version() // read first: a change during resolution rebuilds next call
	if _, static := e.opts.Policies[key]; static || e.opts.Provider == nil {
		en := e.compile(key, answer{})
		en.version = version
		return e.storeAndReport(key, en)
	}
	if ctx.Value(resolvingKey{e, key}) != nil {
		// The provider, resolving key, called back into the executor for
		// key: waiting for the lookup would wait for itself.
		return e.compile(key, answer{err: errReentrant(key)})
	}
	e.mu.Lock()
	if v, ok := e.cache.Load(key); ok && e.fresh(v.(*entry)) {
		e.mu.Unlock() // a lookup finished since ours found the entry stale
		return v.(*entry)
	}
	f := e.flights[key]
	if f == nil {
		f = e.startFlight(ctx, key, version)
	}
	e.mu.Unlock()
	if done := ctx.Done(); done != nil {
		select {
		case <-f.done:
		case <-done:
			select {
			case <-f.done: // both ready: the answer is there, take it
			default:
				return e.refused(key, ctx.Err())
			}
		}
	}
	<-f.done
	if f.panicked != nil {
		// The provider (with recovery off) or the compilation panicked:
		// nothing was cached, and the panic is the caller's.
		if e.opts.NoPanicRecovery {
			panic(f.panicked)
		}
		return e.refused(key, f.panicked)
	}
	return f.en
}

// store caches en as key's entry and returns the entry calls should use:
// en, or one cached meanwhile from the same version.
func (e *Executor) store(key string, en *entry) *entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v, ok := e.cache.Load(key); ok {
		cur := v.(*entry)
		if cur.version == en.version && e.fresh(cur) {
			return cur // another caller won the race; keep one chain per key
		}
		en.used.Store(true) // a recompiled key is a key in use, and keeps its standing
		en.hits.Store(max(cur.hits.Load(), 1))
	} else {
		e.size++
	}
	en.seenAt = e.now()
	e.cache.Store(key, en)
	e.register(key, en)
	if e.limit == 0 {
		e.limit = e.maxKeys()
	}
	if e.size > e.limit {
		e.sweep(key)
	}
	return en
}

// register makes en's breaker and tracker key's: the cached chain's state
// is the key's (an eviction may have dropped it while en was compiled, or
// a one-call chain compiled meanwhile may have replaced it). e.mu is held.
// A chain of the key's own policy without a breaker drops the key's
// breaker, so that Breaker reports none.
func (e *Executor) register(key string, en *entry) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if en.breaker != nil {
		if e.breakers == nil {
			e.breakers = make(map[string]*keyBreaker)
		}
		e.breakers[key] = en.breaker
	} else if en.good && !en.transient {
		delete(e.breakers, key)
	}
	if en.limiter != nil {
		if e.limiters == nil {
			e.limiters = make(map[string]*keyLimiter)
		}
		e.limiters[key] = en.limiter
	} else if en.good && !en.transient {
		delete(e.limiters, key)
	}
	if en.tracker != nil {
		if e.trackers == nil {
			e.trackers = make(map[string]*hedge.LatencyTracker)
		}
		e.trackers[key] = en.tracker
	}
}

// sweep evicts every entry idle for idleAfter or longer (but keep, just
// inserted), with its key's breaker and tracker. If the cache still holds
// more than twice the bound, the least used go first, then arbitrary
// ones. The next sweep is due after at least maxKeys/8 more inserts, so
// sweeping costs O(1) per insert, amortised. e.mu is held.
func (e *Executor) sweep(keep string) {
	max := e.maxKeys()
	now := e.now()
	var evicted []string
	evict := func(k, v any) {
		if e.cache.CompareAndDelete(k, v) {
			e.size--
			evicted = append(evicted, k.(string))
		}
	}
	e.cache.Range(func(k, v any) bool {
		if k == keep {
			return true
		}
		en := v.(*entry)
		if en.used.Swap(false) {
			en.seenAt = now
		} else if now.Sub(en.seenAt) >= idleAfter || now.Before(en.seenAt) {
			evict(k, v) // (a clock that went back says nothing of idleness: evict)
		}
		return true
	})
	for below := uint32(1); e.size > 2*max && below <= maxHits; below *= 2 {
		e.cache.Range(func(k, v any) bool {
			if k != keep && v.(*entry).hits.Load() < below {
				evict(k, v)
			}
			return e.size > max
		})
	}
	if e.size > 2*max {
		e.cache.Range(func(k, v any) bool {
			if k != keep {
				evict(k, v)
			}
			return e.size > max
		})
	}
	e.limit = e.size + max/8 + 1
	if e.limit < max {
		e.limit = max
	}
	if e.limit > 2*max {
		e.limit = 2 * max // past twice the bound the next insert sweeps
	}
	if len(evicted) == 0 {
		return
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	for _, k := range evicted {
		if kb := e.breakers[k]; kb == nil || !kb.b.Forced() {
			delete(e.breakers, k) // a breaker held open waits for its Reset
		}
		delete(e.trackers, k)
		delete(e.limiters, k)
	}
}

// Do runs op under key's policy and returns its final error. A nil ctx,
// op or e is an error (ErrNilContext, ErrNilOperation, ErrNilExecutor)
// naming key; the call is not made.
func (e *Executor) Do(ctx context.Context, key string, op func(context.Context) error) error {
	if err := e.check(ctx, key, op == nil); err != nil {
		return err
	}
	_, err := e.lookup(ctx, key).ep(ctx, op)
	return err
}

// check returns the error for a nil executor, context or operation.
func (e *Executor) check(ctx context.Context, key string, nilOp bool) error {
	switch {
	case e == nil:
		return fmt.Errorf("%w (key %q)", ErrNilExecutor, key)
	case ctx == nil:
		return fmt.Errorf("%w (key %q)", ErrNilContext, key)
	case nilOp:
		return fmt.Errorf("%w (key %q)", ErrNilOperation, key)
	}
	return nil
}

// DoWithTimeline is Do that also returns the call's timeline (nil when
// the call was not made).
func (e *Executor) DoWithTimeline(ctx context.Context, key string, op func(context.Context) error) (*timeline.Timeline, error) {
	if err := e.check(ctx, key, op == nil); err != nil {
		return nil, err
	}
	ctx, c := timeline.Record(ctx)
	err := e.Do(ctx, key, op)
	return c.Timeline(), err
}

// DoValueWith runs op under key's policy on executor e. Nil arguments are
// errors, as for Executor.Do.
func DoValueWith[T any](ctx context.Context, e *Executor, key string, op func(context.Context) (T, error)) (T, error) {
	if err := e.check(ctx, key, op == nil); err != nil {
		var zero T
		return zero, err
	}
	resp, err := e.lookup(ctx, key).ep(ctx, valueOp[T](op))
	v, ok := resp.(T)
	if !ok && err == nil && resp != nil {
		// Only a fallback (WithFallback) can hand back another type.
		err = fmt.Errorf("recourse: fallback of key %q returned a %T, want %T: %w", key, resp, v, ErrFallbackType)
	}
	return v, err
}

// DoValueTimelineWith is DoValueWithTimeline on executor e (as DoValueWith
// is DoValue on e): the typed result, the call's timeline and its error.
// (Formerly DoValueWithTimelineWith.)
func DoValueTimelineWith[T any](ctx context.Context, e *Executor, key string, op func(context.Context) (T, error)) (T, *timeline.Timeline, error) {
	if err := e.check(ctx, key, op == nil); err != nil {
		var zero T
		return zero, nil, err
	}
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
// recompiled, and otherwise reused without locking. A nil e or next, or a
// nil context passed to the endpoint, makes the endpoint return an error
// (ErrNilExecutor, ErrNilOperation, ErrNilContext) without calling next.
func (e *Executor) Endpoint(key string, next endpoint.Endpoint) endpoint.Endpoint {
	if e == nil || next == nil {
		err := e.check(context.Background(), key, next == nil)
		return func(context.Context, any) (any, error) { return nil, err }
	}
	inner := e.recovering(key, next)
	var bound atomic.Pointer[boundEndpoint]
	return func(ctx context.Context, req any) (any, error) {
		if ctx == nil {
			return nil, e.check(ctx, key, false)
		}
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
	if err := e.check(ctx, key, false); err != nil {
		return nil, err
	}
	en := e.lookup(ctx, key)
	return en.compiled, en.refusal
}

// Keys returns the keys whose chains are cached, sorted.
func (e *Executor) Keys() []string {
	if e == nil {
		return nil
	}
	var keys []string
	e.cache.Range(func(k, _ any) bool {
		keys = append(keys, k.(string))
		return true
	})
	sort.Strings(keys)
	return keys
}

// resolvingKey marks the context of a provider lookup for key, so a
// provider calling back into the executor for the same key is detected.
type resolvingKey struct {
	e   *Executor
	key string
}

// flight is one provider lookup shared by every caller waiting for key.
type flight struct {
	done     chan struct{} // closed once en or panicked is set
	en       *entry
	panicked *PanicError // the lookup panicked; each waiter gets it
	once     sync.Once
}

// startFlight starts the provider lookup of key in its own goroutine,
// under a context detached from the caller's cancellation (its values
// kept) and bounded by the provider timeout. The lookup ends when the
// provider answers or the timeout passes, whichever is first; a provider
// that ignores its context is left to return on its own. e.mu is held.
func (e *Executor) startFlight(ctx context.Context, key string, version uint64) *flight {
	f := &flight{done: make(chan struct{})}
	if e.flights == nil {
		e.flights = make(map[string]*flight)
	}
	e.flights[key] = f
	lctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), resolvingKey{e, key}, true), e.providerTimeout())
	timeout := e.providerTimeout()
	stop := context.AfterFunc(lctx, func() {
		err := fmt.Errorf("recourse: provider lookup for key %q: no answer within %v: %w", key, timeout, lctx.Err())
		e.finish(f, key, version, answer{err: err})
	})
	go func() {
		defer cancel()
		var (
			p   policy.Policy
			err error
			pe  *PanicError
		)
		func() {
			// fromProvider recovers unless recovery is off; then the
			// panic goes to the waiters, never kills this goroutine.
			defer func() {
				if r := recover(); r != nil {
					pe = middleware.NewPanicError("provider", key, r)
				}
			}()
			p, err = e.fromProvider(lctx, key)
		}()
		if stop() {
			e.finish(f, key, version, answer{p: p, err: err, panicked: pe})
		}
	}()
	return f
}

func (e *Executor) providerTimeout() time.Duration {
	if e.opts.ProviderTimeout > 0 {
		return e.opts.ProviderTimeout
	}
	return defaultProviderTimeout
}

func (e *Executor) providerErrorBackoff() time.Duration {
	if e.opts.ProviderErrorBackoff > 0 {
		return e.opts.ProviderErrorBackoff
	}
	return defaultProviderErrorBackoff
}

// finish compiles the provider's answer, caches it and wakes f's waiters.
// A transient error keeps the key's last good chain, if it has one, or
// compiles the missing-policy chain; either serves until the backoff
// passes.
func (e *Executor) finish(f *flight, key string, version uint64, ans answer) {
	f.once.Do(func() {
		defer func() {
			r := recover()
			if r != nil {
				f.panicked = middleware.NewPanicError("compile", key, r)
			}
			e.mu.Lock()
			if e.flights[key] == f {
				delete(e.flights, key)
			}
			e.mu.Unlock()
			close(f.done)
		}()
		if ans.panicked != nil {
			f.panicked = ans.panicked
			return
		}
		var en *entry
		if transient(ans.err) {
			now := e.now()
			retryAt := now.Add(e.providerErrorBackoff())
			if v, ok := e.cache.Load(key); ok && v.(*entry).good {
				en = v.(*entry).retained(now, retryAt)
			} else {
				en = e.compile(key, ans)
				en.transient, en.failedAt, en.retryAt = true, now, retryAt
			}
		} else {
			en = e.compile(key, ans)
		}
		en.version = version
		f.en = e.storeAndReport(key, en)
	})
}

// retained returns a copy of en that serves from failedAt until retryAt:
// the last good chain of a key whose provider failed transiently.
func (en *entry) retained(failedAt, retryAt time.Time) *entry {
	c := &entry{key: en.key, version: en.version, compiled: en.compiled, refusal: en.refusal, mw: en.mw, ep: en.ep,
		transient: true, failedAt: failedAt, retryAt: retryAt, good: true, breaker: en.breaker, tracker: en.tracker}
	c.used.Store(true)
	c.hits.Store(max(en.hits.Load(), 1))
	return c
}

// errReentrant is the error of a call made by the provider, while
// resolving key, for key itself.
func errReentrant(key string) error {
	return fmt.Errorf("recourse: the provider called back into the executor for key %q while resolving it", key)
}

// transient reports whether a provider error may pass: anything but "no
// such policy" (policy.ErrNotFound), which is an answer.
func transient(err error) bool {
	return err != nil && !errors.Is(err, policy.ErrNotFound)
}

// refused returns a one-call entry whose chain refuses with err.
func (e *Executor) refused(key string, err error) *entry {
	attrs := map[string]string{}
	en := &entry{key: key, refusal: err}
	en.mw = e.refusing(key, err, attrs)
	en.ep = en.mw(e.terminal(key))
	return en
}
