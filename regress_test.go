package recourse

// Regression tests for the executor's hardening: breaker observers that
// call back in, nil observers, provider errors and single-flight lookups,
// the per-key cache bound, and nil arguments.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// rgWithin fails the test if f does not return within d (a deadlock).
func rgWithin(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("deadlock: call did not return")
	}
}

// rgNoPanic runs f and turns a panic into a test failure naming it.
func rgNoPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	f()
}

var rgOK = func(context.Context) error { return nil }

// stateReader is an observer that reads the breaker's state from
// OnBreakerState, as a dashboard would.
type stateReader struct {
	timeline.BaseObserver
	exec *Executor
	mu   sync.Mutex
	got  []string
}

func (s *stateReader) OnBreakerState(ev timeline.BreakerStateChange) {
	st := s.exec.Breaker(ev.Key).State()
	s.mu.Lock()
	s.got = append(s.got, ev.From+">"+ev.To+"@"+st.String())
	s.mu.Unlock()
}

func (s *stateReader) events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// Item 11: an observer reading breaker state from OnBreakerState must not
// deadlock, and sees the transition by the time the call returns.
func TestRegressObserverReadsBreakerState(t *testing.T) {
	obs := &stateReader{}
	circuit := policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 2, Cooldown: 20 * time.Millisecond}
	e := NewExecutor(WithObserver(obs), WithPolicy("svc.Op", policy.MaxAttempts(1), policy.WithCircuitBreaker(circuit)))
	obs.exec = e
	var calls atomic.Int32
	rgWithin(t, 5*time.Second, func() {
		for i := 0; i < 3; i++ {
			_ = e.Do(context.Background(), "svc.Op", failTimes(100, &calls))
		}
	})
	if got := obs.events(); len(got) != 1 || got[0] != "closed>open@open" {
		t.Fatalf("events = %v", got)
	}
	time.Sleep(30 * time.Millisecond)
	rgWithin(t, 5*time.Second, func() { _ = e.Do(context.Background(), "svc.Op", rgOK) })
	got := obs.events()
	if len(got) != 3 || !strings.HasPrefix(got[1], "open>half_open@") || got[2] != "half_open>closed@closed" {
		t.Fatalf("events = %v", got)
	}
}

type derefObserver struct {
	timeline.BaseObserver
	n int
}

func (d *derefObserver) OnStart(context.Context, string, time.Time) { d.n++ }

// Item 12: a typed-nil observer, and timeline.Multi with nil entries,
// are tolerated by the executor.
func TestRegressNilObservers(t *testing.T) {
	var typedNil *derefObserver
	counting := &derefObserver{}
	for name, obs := range map[string]timeline.Observer{
		"typed nil":        typedNil,
		"multi with nils":  timeline.Multi(nil, typedNil, counting),
		"nil interface":    nil,
		"nil multi":        timeline.Multi(),
		"multi of nothing": timeline.Multi(nil),
	} {
		e := NewExecutor(WithObserver(obs), WithPolicy("svc.Op", policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1})))
		rgNoPanic(t, name, func() {
			if _, err := e.DoWithTimeline(context.Background(), "svc.Op", rgOK); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			_ = e.Do(context.Background(), "svc.Op", func(context.Context) error { return errFlaky })
		})
	}
	if counting.n != 2 {
		t.Fatalf("real observer behind nils saw %d starts, want 2", counting.n)
	}
}

// flakyProvider fails while failing is set (with err), counting asks, and
// otherwise serves one attempt per key.
type flakyProvider struct {
	asks    atomic.Int32
	failing atomic.Bool
	err     error
}

func (p *flakyProvider) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	p.asks.Add(1)
	if err := ctx.Err(); err != nil {
		return policy.Policy{}, err
	}
	if p.failing.Load() {
		return policy.Policy{}, p.err
	}
	return policy.New(key.String(), policy.MaxAttempts(1)), nil
}

// Item 13: a transient provider error is not cached as the key's policy:
// the call runs under the fallback, calls within a short backoff (on the
// executor's clock) do not ask again, and the first call after it does.
func TestRegressProviderErrorNotCached(t *testing.T) {
	f := clock.NewFake(time.Unix(1000, 0))
	prov := &flakyProvider{err: errors.New("config service unavailable")}
	prov.failing.Store(true)
	e := NewExecutor(WithClock(f), WithProvider(prov), WithProviderErrorBackoff(time.Second), WithFallbackPolicy(policy.MaxAttempts(3)))
	source := func() string {
		t.Helper()
		tl, err := e.DoWithTimeline(context.Background(), "svc.Op", rgOK)
		if err != nil {
			t.Fatal(err)
		}
		return tl.Attributes[timeline.AttrPolicySource]
	}
	if s := source(); s != timeline.ReasonPolicyFallback {
		t.Fatalf("during the outage: policy source %q", s)
	}
	prov.failing.Store(false)
	if s := source(); s != timeline.ReasonPolicyFallback || prov.asks.Load() != 1 {
		t.Fatalf("within the backoff: source %q, provider asked %d times (want 1)", s, prov.asks.Load())
	}
	f.Advance(time.Second)
	if s := source(); s == timeline.ReasonPolicyFallback || prov.asks.Load() != 2 {
		t.Fatalf("after the backoff: source %q, asks %d (want the provider's policy, 2 asks)", s, prov.asks.Load())
	}
	c, _ := e.Explain(context.Background(), "svc.Op")
	if c.Policy.Retry.MaxAttempts != 1 || prov.asks.Load() != 2 {
		t.Fatalf("a good answer is cached: max attempts %d, asks %d", c.Policy.Retry.MaxAttempts, prov.asks.Load())
	}
}

// Item 13: a caller whose context is already cancelled does not leave the
// key on the fallback policy for everybody else.
func TestRegressCancelledCallerDoesNotPoisonKey(t *testing.T) {
	prov := &flakyProvider{}
	e := NewExecutor(WithProvider(prov), WithFallbackPolicy(policy.MaxAttempts(3), noWait()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Do(ctx, "svc.Op", rgOK); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: err = %v", err)
	}
	var calls atomic.Int32
	_ = e.Do(context.Background(), "svc.Op", failTimes(100, &calls))
	if calls.Load() != 1 {
		t.Fatalf("calls = %d: the key stayed on the fallback after one caller's cancellation", calls.Load())
	}
}

// blockingProvider blocks each ask until released (or its ctx is done).
type blockingProvider struct {
	asks    atomic.Int32
	entered chan struct{}
	release chan struct{}
	ignore  bool // ignore ctx, as a badly written provider would
}

func (p *blockingProvider) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	p.asks.Add(1)
	p.entered <- struct{}{}
	if p.ignore {
		<-p.release
	} else {
		select {
		case <-p.release:
		case <-ctx.Done():
			return policy.Policy{}, ctx.Err()
		}
	}
	return policy.New(key.String(), policy.MaxAttempts(1)), nil
}

// Item 13: concurrent first calls share one lookup, which is not bound to
// the first caller's cancellation; each caller can give up on its own.
func TestRegressSingleFlightDetachedFromCaller(t *testing.T) {
	prov := &blockingProvider{entered: make(chan struct{}, 10), release: make(chan struct{})}
	e := NewExecutor(WithProvider(prov), WithFallbackPolicy(policy.MaxAttempts(3), noWait()))
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- e.Do(ctx, "svc.Op", rgOK) }()
	<-prov.entered
	var wg sync.WaitGroup
	var calls atomic.Int32
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Do(context.Background(), "svc.Op", failTimes(100, &calls))
		}()
	}
	cancel()
	select {
	case err := <-first:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller: err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first caller could not give up while the lookup ran")
	}
	close(prov.release)
	wg.Wait()
	if prov.asks.Load() != 1 || calls.Load() != 8 {
		t.Fatalf("asks %d (want 1: one shared lookup), calls %d (want 8: one each, the provider's policy)", prov.asks.Load(), calls.Load())
	}
}

// Item 13: a provider that hangs, ignoring its context, holds callers
// for no longer than the lookup timeout.
func TestRegressHungProviderTimesOut(t *testing.T) {
	prov := &blockingProvider{entered: make(chan struct{}, 10), release: make(chan struct{}), ignore: true}
	defer close(prov.release)
	e := NewExecutor(WithProvider(prov), WithProviderTimeout(30*time.Millisecond), WithFallbackPolicy(policy.MaxAttempts(2), noWait()))
	var calls atomic.Int32
	start := time.Now()
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(100, &calls))
	if !errors.Is(err, errFlaky) || calls.Load() != 2 || time.Since(start) > 3*time.Second {
		t.Fatalf("err %v calls %d after %v", err, calls.Load(), time.Since(start))
	}
	if !strings.Contains(tl.Attributes[timeline.AttrPolicyError], "deadline") {
		t.Fatalf("attrs %v", tl.Attributes)
	}
}

// countingProvider counts asks per key and reports versions.
type countingProvider struct {
	*policy.StaticProvider
	mu   sync.Mutex
	asks map[string]int
}

func (p *countingProvider) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	p.mu.Lock()
	p.asks[key.String()]++
	p.mu.Unlock()
	return p.StaticProvider.Policy(ctx, key)
}

func (p *countingProvider) asked(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asks[key]
}

// Item 14: past the cache bound, a policy reload makes a key recompile
// once, not on every call.
func TestRegressReloadPastBoundRecompilesOnce(t *testing.T) {
	sp := policy.NewStaticProvider()
	sp.SetDefault(policy.New("", policy.MaxAttempts(1)))
	prov := &countingProvider{StaticProvider: sp, asks: map[string]int{}}
	e := NewExecutor(WithProvider(prov))
	for i := 0; i < defaultMaxKeys+10; i++ {
		_ = e.Do(context.Background(), fmt.Sprintf("junk.K%d", i), rgOK)
	}
	sp.Set(policy.New("svc.Op", policy.MaxAttempts(2)))
	for i := 0; i < 5; i++ {
		_ = e.Do(context.Background(), "svc.Op", rgOK)
	}
	if n := prov.asked("svc.Op"); n != 1 {
		t.Fatalf("svc.Op resolved %d times in 5 calls after the reload, want 1", n)
	}
}

// Item 14: past the cache bound, a key keeps its breaker, even when every
// junk key has one too.
func TestRegressBreakerWorksPastBound(t *testing.T) {
	circuit := policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 2, Cooldown: time.Hour}
	e := NewExecutor(WithFallbackPolicy(policy.WithCircuitBreaker(circuit)),
		WithPolicy("svc.Op", policy.MaxAttempts(1), policy.WithCircuitBreaker(circuit)))
	for i := 0; i < defaultMaxKeys+10; i++ {
		_ = e.Do(context.Background(), fmt.Sprintf("junk.K%d", i), rgOK)
	}
	var calls atomic.Int32
	for i := 0; i < 5; i++ {
		_ = e.Do(context.Background(), "svc.Op", failTimes(100, &calls))
	}
	if calls.Load() != 2 {
		t.Fatalf("op called %d times: the breaker should have opened after 2", calls.Load())
	}
	if b := e.Breaker("svc.Op"); b == nil || b.State() != endpoint.BreakerOpen {
		t.Fatalf("Breaker = %v", b)
	}
}

// Item 14: a flood of junk keys does not evict keys in use: they keep
// their chain (no recompilation), their breaker and their tracker, and the
// cache stays bounded.
func TestRegressJunkKeysDoNotEvictKeysInUse(t *testing.T) {
	sp := policy.NewStaticProvider()
	sp.SetDefault(policy.New("", policy.MaxAttempts(1)))
	circuit := policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1000, Cooldown: time.Hour}
	hedging := policy.HedgePolicy{Enabled: true, Delay: time.Hour}
	real := []string{"svc.A", "svc.B", "svc.C"}
	for _, k := range real {
		sp.Set(policy.New(k, policy.MaxAttempts(1), policy.WithCircuitBreaker(circuit), policy.WithHedge(hedging)))
	}
	prov := &countingProvider{StaticProvider: sp, asks: map[string]int{}}
	e := NewExecutor(WithProvider(prov), WithMaxKeys(64))
	breakers := map[string]*middleware.CircuitBreaker{}
	for _, k := range real {
		_ = e.Do(context.Background(), k, rgOK)
		breakers[k] = e.Breaker(k)
	}
	for i := 0; i < 20000; i++ {
		_ = e.Do(context.Background(), fmt.Sprintf("junk.K%d", i), rgOK)
		if i%20 == 0 {
			for _, k := range real {
				_ = e.Do(context.Background(), k, rgOK)
			}
		}
	}
	for _, k := range real {
		if n := prov.asked(k); n != 1 {
			t.Errorf("%s resolved %d times, want 1 (evicted while in use)", k, n)
		}
		if e.Breaker(k) != breakers[k] {
			t.Errorf("%s lost its breaker", k)
		}
	}
	if n := len(e.Keys()); n > 2*64 {
		t.Fatalf("cache holds %d keys, bound 64", n)
	}
}

// Item 14: memory per cached key (compiled chain, breaker, tracker and
// cache slot), reported for the design's budget.
func TestRegressMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	for _, c := range []struct {
		name string
		opts []policy.Option
	}{
		{"defaults", nil},
		{"full chain", []policy.Option{policy.OverallTimeout(time.Second), policy.TimeoutPerAttempt(time.Second),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true}),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Second, Quantile: 0.99})}},
	} {
		const n = 2000
		sp := policy.NewStaticProvider()
		sp.SetDefault(policy.New("", c.opts...))
		e := NewExecutor(WithProvider(sp))
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("svc.Key%05d", i)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, k := range keys {
			_ = e.Do(context.Background(), k, rgOK)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := float64(after.HeapAlloc-before.HeapAlloc) / n
		t.Logf("%s: %.0f bytes per cached key (%d keys)", c.name, per, len(e.Keys()))
		if per > 64<<10 {
			t.Errorf("%s: %.0f bytes per key", c.name, per)
		}
		runtime.KeepAlive(e)
	}
}

// Item 23: a nil context, a nil *Executor and a nil operation give errors
// naming the mistake, never a nil-pointer panic inside.
func TestRegressNilArguments(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Op", policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true})))
	var nilCtx context.Context
	check := func(what string, err error, want error) {
		t.Helper()
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "svc.Op") {
			t.Errorf("%s: err = %v, want %v naming the key", what, err, want)
		}
	}
	rgNoPanic(t, "Do(nil ctx)", func() { check("Do(nil ctx)", e.Do(nilCtx, "svc.Op", rgOK), ErrNilContext) })
	rgNoPanic(t, "DoValueWith(nil ctx)", func() {
		_, err := DoValueWith(nilCtx, e, "svc.Op", func(context.Context) (int, error) { return 1, nil })
		check("DoValueWith(nil ctx)", err, ErrNilContext)
	})
	rgNoPanic(t, "DoWithTimeline(nil ctx)", func() {
		_, err := e.DoWithTimeline(nilCtx, "svc.Op", rgOK)
		check("DoWithTimeline(nil ctx)", err, ErrNilContext)
	})
	rgNoPanic(t, "Endpoint(nil ctx)", func() {
		ep := e.Endpoint("svc.Op", func(context.Context, any) (any, error) { return nil, nil })
		_, err := ep(nilCtx, nil)
		check("Endpoint(nil ctx)", err, ErrNilContext)
	})
	rgNoPanic(t, "package Do(nil ctx)", func() { check("package Do", Do(nilCtx, "svc.Op", rgOK), ErrNilContext) })
	rgNoPanic(t, "Explain(nil ctx)", func() {
		_, err := e.Explain(nilCtx, "svc.Op")
		check("Explain(nil ctx)", err, ErrNilContext)
	})

	var ne *Executor
	ctx := context.Background()
	rgNoPanic(t, "nil executor", func() {
		check("nil.Do", ne.Do(ctx, "svc.Op", rgOK), ErrNilExecutor)
		_, err := DoValueWith(ctx, ne, "svc.Op", func(context.Context) (int, error) { return 1, nil })
		check("DoValueWith(nil)", err, ErrNilExecutor)
		_, err = ne.DoWithTimeline(ctx, "svc.Op", rgOK)
		check("nil.DoWithTimeline", err, ErrNilExecutor)
		_, err = ne.Endpoint("svc.Op", func(context.Context, any) (any, error) { return nil, nil })(ctx, nil)
		check("nil.Endpoint", err, ErrNilExecutor)
		_, err = ne.Middleware("svc.Op")(func(context.Context, any) (any, error) { return nil, nil })(ctx, nil)
		check("nil.Middleware", err, ErrNilExecutor)
		_, err = ne.Explain(ctx, "svc.Op")
		check("nil.Explain", err, ErrNilExecutor)
		if ne.Breaker("svc.Op") != nil || ne.Keys() != nil {
			t.Error("nil executor has state")
		}
	})

	rgNoPanic(t, "nil op", func() {
		check("Do(nil op)", e.Do(ctx, "svc.Op", nil), ErrNilOperation)
		_, err := DoValueWith[int](ctx, e, "svc.Op", nil)
		check("DoValueWith(nil op)", err, ErrNilOperation)
		_, err = e.Endpoint("svc.Op", nil)(ctx, nil)
		check("Endpoint(nil next)", err, ErrNilOperation)
	})
	// None of this touched the key's breaker.
	if b := e.Breaker("svc.Op"); b != nil && b.State() != endpoint.BreakerClosed {
		t.Fatalf("breaker %v", b.State())
	}
}

// Hostile: a provider panic with recovery off reaches the caller (as a
// panic on the caller's goroutine), not a library goroutine where nobody
// can recover it; with recovery on it is a transient provider error.
func TestRegressProviderPanicReachesCaller(t *testing.T) {
	e := NewExecutor(WithoutPanicRecovery(), WithProvider(panickingProvider{}))
	func() {
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), "bad config") {
				t.Fatalf("recovered %v, want the provider's panic", r)
			}
		}()
		_ = e.Do(context.Background(), "svc.Op", rgOK)
	}()
	f := clock.NewFake(time.Unix(0, 0))
	e = NewExecutor(WithClock(f), WithProvider(panickingProvider{}))
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", rgOK)
	if err != nil || !strings.Contains(tl.Attributes[timeline.AttrPolicyError], "panic in provider") {
		t.Fatalf("err %v attrs %v", err, tl.Attributes)
	}
}

// reentrantProvider resolves a key by first making a call for key (or
// other) on the executor, passing its ctx or not.
type reentrantProvider struct {
	e        *Executor
	other    string
	dropCtx  bool
	innerErr atomic.Value
}

func (p *reentrantProvider) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	k := key.String()
	if p.other != "" && k == p.other {
		return policy.New(k, policy.MaxAttempts(1)), nil
	}
	target := k
	if p.other != "" {
		target = p.other
	}
	callCtx := ctx
	if p.dropCtx {
		callCtx = context.Background()
	}
	if err := p.e.Do(callCtx, target, rgOK); err != nil {
		p.innerErr.Store(err)
	}
	return policy.New(k, policy.MaxAttempts(2)), nil
}

// Hostile: a provider that calls back into the executor — for another
// key, for the key it resolves with its ctx, and for that key without it —
// does not deadlock.
func TestRegressProviderCallsBackIntoExecutor(t *testing.T) {
	for _, c := range []struct {
		name    string
		other   string
		dropCtx bool
	}{
		{"other key", "svc.Other", false},
		{"same key with ctx", "", false},
		{"same key without ctx", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &reentrantProvider{other: c.other, dropCtx: c.dropCtx}
			e := NewExecutor(WithProvider(p), WithProviderTimeout(50*time.Millisecond))
			p.e = e
			rgWithin(t, 5*time.Second, func() {
				if err := e.Do(context.Background(), "svc.Op", rgOK); err != nil {
					t.Errorf("Do: %v", err)
				}
			})
			if err, _ := p.innerErr.Load().(error); err != nil {
				t.Errorf("inner call: %v", err)
			}
		})
	}
}

// Hostile: 1000 goroutines on one key while its breaker flips and its
// policy reloads (each reload changing the circuit policy, so the key gets
// a new breaker), with an observer reading the breaker. No deadlock, no
// race, every error is one the op or the breaker returned, and once the
// storm is over a healthy call gets through.
func TestRegressStormOnOneKey(t *testing.T) {
	sp := policy.NewStaticProvider()
	set := func(n int) {
		sp.Set(policy.New("svc.Op", policy.MaxAttempts(2), noWait(),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 3 + n%2, Cooldown: 10 * time.Millisecond})))
	}
	set(0)
	obs := &stateReader{}
	e := NewExecutor(WithProvider(sp), WithObserver(obs))
	obs.exec = e
	stop := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Add(1)
	go func() {
		defer reloads.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
				set(i)
			}
		}
	}()
	var wg sync.WaitGroup
	var bad atomic.Value
	rgWithin(t, 60*time.Second, func() {
		for g := 0; g < 1000; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					err := e.Do(context.Background(), "svc.Op", func(context.Context) error {
						if (g+i)%3 == 0 {
							return errFlaky
						}
						return nil
					})
					if err != nil && !errors.Is(err, errFlaky) && !errors.Is(err, middleware.ErrCircuitOpen) {
						bad.Store(err)
					}
				}
			}(g)
		}
		wg.Wait()
	})
	close(stop)
	reloads.Wait()
	if err, _ := bad.Load().(error); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Do(context.Background(), "svc.Op", rgOK) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no healthy call got through after the storm")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Hostile: many distinct keys keep memory bounded: the cache, the
// breakers and the trackers all stay within the bound.
func TestRegressManyKeysStayBounded(t *testing.T) {
	const max = 64
	e := NewExecutor(WithMaxKeys(max), WithFallbackPolicy(
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true}),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Hour, Quantile: 0.9})))
	for i := 0; i < 3000; i++ {
		_ = e.Do(context.Background(), fmt.Sprintf("junk.K%d", i), rgOK)
	}
	e.stateMu.Lock()
	nb, nt := len(e.breakers), len(e.trackers)
	e.stateMu.Unlock()
	if n := len(e.Keys()); n > 2*max || nb > 2*max || nt > 2*max {
		t.Fatalf("keys %d, breakers %d, trackers %d; bound %d", n, nb, nt, max)
	}
}

// Hostile: nil where options take a func or an interface — a nil Option,
// a nil budget, a nil trigger factory — is not a panic: nil options are
// skipped, and a nil budget or trigger counts as missing (its mode
// applies).
func TestRegressNilRegistrations(t *testing.T) {
	rgNoPanic(t, "NewExecutor(nil)", func() { _ = NewExecutor(nil, WithPolicy("svc.Op")) })
	var calls atomic.Int32
	e := NewExecutor(WithBudget("retries", nil), WithMissingBudgetMode(FailureAllow),
		WithPolicy("svc.Op", policy.MaxAttempts(3), noWait(), policy.WithBudget("retries")))
	rgNoPanic(t, "nil budget", func() {
		tl, err := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(2, &calls))
		if err != nil || calls.Load() != 3 || tl.Attributes["budget_error"] == "" {
			t.Errorf("nil budget, allow mode: err %v calls %d attrs %v", err, calls.Load(), tl.Attributes)
		}
	})
	var typedNil *derefBudget
	e = NewExecutor(WithBudget("retries", typedNil),
		WithPolicy("svc.Op", policy.MaxAttempts(3), noWait(), policy.WithBudget("retries")))
	calls.Store(0)
	rgNoPanic(t, "typed-nil budget", func() {
		err := e.Do(context.Background(), "svc.Op", failTimes(2, &calls))
		if !errors.Is(err, errFlaky) || calls.Load() != 1 {
			t.Errorf("nil budget, deny mode: err %v calls %d (want the first try's error, retries denied)", err, calls.Load())
		}
	})
	e = NewExecutor(WithHedgeTrigger("fast", nil),
		WithPolicy("svc.Op", policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Hour, Trigger: "fast"})))
	rgNoPanic(t, "nil trigger", func() {
		tl, err := e.DoWithTimeline(context.Background(), "svc.Op", rgOK)
		if err != nil || tl.Attributes["trigger_error"] == "" {
			t.Errorf("nil trigger: err %v attrs %v", err, tl.Attributes)
		}
	})
}

// Hostile: odd keys — empty, dots only, very long — work and are cached
// like any other.
func TestRegressOddKeys(t *testing.T) {
	sp := policy.NewStaticProvider()
	sp.SetDefault(policy.New("", policy.MaxAttempts(1)))
	for _, e := range []*Executor{NewExecutor(), NewExecutor(WithProvider(sp))} {
		for _, k := range []string{"", ".", "..", "a.", ".b", strings.Repeat("x", 1<<16)} {
			rgNoPanic(t, fmt.Sprintf("key %.10q", k), func() {
				if err := e.Do(context.Background(), k, rgOK); err != nil {
					t.Errorf("key %.10q: %v", k, err)
				}
			})
		}
	}
}

// callingBackObserver makes a call on the key whose breaker just opened.
type callingBackObserver struct {
	timeline.BaseObserver
	exec  *Executor
	inner atomic.Value
	n     atomic.Int32
}

func (o *callingBackObserver) OnBreakerState(ev timeline.BreakerStateChange) {
	o.n.Add(1)
	if ev.To == "open" {
		o.inner.Store(o.exec.Do(context.Background(), ev.Key, rgOK))
		_, _ = o.exec.Explain(context.Background(), ev.Key)
		_ = o.exec.Keys()
	}
}

// Hostile: an observer that calls the executor back — a call on the very
// key whose breaker just opened — neither deadlocks nor loses events.
func TestRegressObserverCallsBackIntoExecutor(t *testing.T) {
	obs := &callingBackObserver{}
	sp := policy.NewStaticProvider(policy.New("svc.Op", policy.MaxAttempts(1),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Hour})))
	e := NewExecutor(WithObserver(obs), WithProvider(sp))
	obs.exec = e
	rgWithin(t, 5*time.Second, func() {
		_ = e.Do(context.Background(), "svc.Op", func(context.Context) error { return errFlaky })
	})
	if err, _ := obs.inner.Load().(error); !errors.Is(err, middleware.ErrCircuitOpen) || obs.n.Load() != 1 {
		t.Fatalf("inner call: %v; events %d", obs.inner.Load(), obs.n.Load())
	}
}

// rgSetClock is a clock whose reading the test sets, backwards included.
type rgSetClock struct {
	clock.Fake
	mu  sync.Mutex
	now time.Time
}

func (c *rgSetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *rgSetClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Hostile: the provider-error backoff runs on the executor's clock; a
// clock stepping back must not stretch it (the key would stay on the
// fallback policy for as long as the clock went back).
func TestRegressProviderBackoffClockBackwards(t *testing.T) {
	c := &rgSetClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	prov := &flakyProvider{err: errors.New("unavailable")}
	prov.failing.Store(true)
	e := NewExecutor(WithClock(c), WithProvider(prov), WithProviderErrorBackoff(time.Second))
	_ = e.Do(context.Background(), "svc.Op", rgOK)
	prov.failing.Store(false)
	c.set(c.Now().Add(-time.Hour))
	cp, _ := e.Explain(context.Background(), "svc.Op")
	if prov.asks.Load() != 2 || cp.Policy.Retry.MaxAttempts != 1 {
		t.Fatalf("after the clock went back an hour: asks %d, max attempts %d (want 2 asks, the provider's policy)", prov.asks.Load(), cp.Policy.Retry.MaxAttempts)
	}
}

// failingStatic is a versioned provider that can be made to fail.
type failingStatic struct {
	*policy.StaticProvider
	failing atomic.Bool
	asks    atomic.Int32
}

func (p *failingStatic) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	p.asks.Add(1)
	if p.failing.Load() {
		return policy.Policy{}, errors.New("unavailable")
	}
	return p.StaticProvider.Policy(ctx, key)
}

// Item 13: a reload whose lookup fails transiently keeps the key on its
// last good policy (not the fallback) through the backoff, then picks up
// the new one.
func TestRegressReloadFailureKeepsLastGoodPolicy(t *testing.T) {
	f := clock.NewFake(time.Unix(1000, 0))
	prov := &failingStatic{StaticProvider: policy.NewStaticProvider(policy.New("svc.Op", policy.MaxAttempts(2)))}
	e := NewExecutor(WithClock(f), WithProvider(prov), WithProviderErrorBackoff(time.Second), WithFallbackPolicy(policy.MaxAttempts(5)))
	attempts := func() int {
		t.Helper()
		c, err := e.Explain(context.Background(), "svc.Op")
		if err != nil {
			t.Fatal(err)
		}
		return c.Policy.Retry.MaxAttempts
	}
	if n := attempts(); n != 2 {
		t.Fatalf("max attempts %d", n)
	}
	prov.failing.Store(true)
	prov.Set(policy.New("svc.Op", policy.MaxAttempts(4)))
	if n := attempts(); n != 2 || prov.asks.Load() != 2 {
		t.Fatalf("reload failed: max attempts %d (want 2, the last good), asks %d", n, prov.asks.Load())
	}
	f.Advance(time.Second)
	if n := attempts(); n != 2 || prov.asks.Load() != 3 {
		t.Fatalf("failed again after the backoff: max attempts %d (want 2, still the last good), asks %d", n, prov.asks.Load())
	}
	prov.failing.Store(false)
	if n := attempts(); n != 2 || prov.asks.Load() != 3 {
		t.Fatalf("within the backoff: max attempts %d, asks %d", n, prov.asks.Load())
	}
	f.Advance(time.Second)
	if n := attempts(); n != 4 || prov.asks.Load() != 4 {
		t.Fatalf("after the backoff: max attempts %d (want 4), asks %d", n, prov.asks.Load())
	}
}

type rgCtxKey struct{}

// ctxProvider reports what its lookup context carries.
type ctxProvider struct {
	value    any
	deadline time.Duration
	errAfter error
	release  chan struct{}
}

func (p *ctxProvider) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	p.value = ctx.Value(rgCtxKey{})
	if d, ok := ctx.Deadline(); ok {
		p.deadline = time.Until(d)
	}
	<-p.release
	p.errAfter = ctx.Err()
	return policy.New(key.String(), policy.MaxAttempts(1)), nil
}

// Item 13: the lookup context keeps the first caller's values, has its
// own deadline (the provider timeout), and outlives the caller's
// cancellation.
func TestRegressLookupContext(t *testing.T) {
	p := &ctxProvider{release: make(chan struct{})}
	e := NewExecutor(WithProvider(p), WithProviderTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), rgCtxKey{}, "trace-1"), time.Millisecond)
	defer cancel()
	if err := e.Do(ctx, "svc.Op", rgOK); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller: %v", err)
	}
	close(p.release)
	c, err := e.Explain(context.Background(), "svc.Op")
	if err != nil || c.Policy.Retry.MaxAttempts != 1 {
		t.Fatalf("explain: %v", err)
	}
	if p.value != "trace-1" || p.deadline < 50*time.Second || p.deadline > time.Minute || p.errAfter != nil {
		t.Fatalf("lookup ctx: value %v, deadline in %v, err after the caller gave up %v", p.value, p.deadline, p.errAfter)
	}
}

// Breaker follows the key's cached chain: a reload that turns the breaker
// off leaves the key with none, and one that turns it on again gives it a
// breaker that the chain uses.
func TestRegressBreakerFollowsReloads(t *testing.T) {
	on := policy.New("svc.Op", policy.MaxAttempts(1), policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Hour}))
	sp := policy.NewStaticProvider(on)
	e := NewExecutor(WithProvider(sp))
	_ = e.Do(context.Background(), "svc.Op", rgOK)
	if e.Breaker("svc.Op") == nil {
		t.Fatal("no breaker")
	}
	sp.Set(policy.New("svc.Op", policy.MaxAttempts(1)))
	_ = e.Do(context.Background(), "svc.Op", rgOK)
	if b := e.Breaker("svc.Op"); b != nil {
		t.Fatalf("breaker %v after the reload turned it off", b.State())
	}
	sp.Set(on)
	_ = e.Do(context.Background(), "svc.Op", func(context.Context) error { return errFlaky })
	if b := e.Breaker("svc.Op"); b == nil || b.State() != endpoint.BreakerOpen {
		t.Fatal("the breaker Breaker returns is not the one the chain uses")
	}
}

// derefBudget dereferences its receiver, as the middleware budgets do.
type derefBudget struct{ n int }

func (b *derefBudget) Take(context.Context, middleware.Try) middleware.Decision {
	b.n++
	return middleware.Decision{Allowed: true}
}

// A key refused because its policy names a classifier or trigger that does
// not exist (deny mode) says so in its timeline, like the other refusals,
// and its record is a refusal (policy_error), not a try that ran.
func TestRegressDenyModeRefusalsAreExplained(t *testing.T) {
	for attr, opts := range map[string][]Option{
		timeline.AttrClassifierError: {WithPolicy("a.b", policy.WithClassifier("ghost")), WithMissingClassifierMode(FailureDeny)},
		timeline.AttrTriggerError: {WithPolicy("a.b", policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, Trigger: "ghost"})),
			WithMissingTriggerMode(FailureDeny)},
	} {
		e := NewExecutor(opts...)
		ran := false
		tl, err := e.DoWithTimeline(context.Background(), "a.b", func(context.Context) error { ran = true; return nil })
		if err == nil || ran || tl == nil {
			t.Fatalf("%s: err %v, ran %v", attr, err, ran)
		}
		if !strings.Contains(tl.Attributes[attr], "ghost") || !strings.Contains(tl.Attributes[attr], "refused") {
			t.Errorf("%s = %q", attr, tl.Attributes[attr])
		}
		if len(tl.Attempts) != 1 || tl.Attempts[0].Reason != timeline.ReasonPolicyError || !timeline.Refused(tl.Attempts[0].Reason) {
			t.Errorf("%s: attempts %+v, want one refused record with reason policy_error", attr, tl.Attempts)
		}
	}
	if !timeline.Refused(timeline.ReasonNoPolicy) {
		t.Error("a no_policy record is not a refusal")
	}
}
