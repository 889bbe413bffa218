package config_test

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

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func okOp(context.Context) error { return nil }

// Distinct keys beyond WithMaxKeys: the cache stays bounded.
func TestManyDistinctKeysBounded(t *testing.T) {
	e := recourse.NewExecutor(recourse.WithMaxKeys(64))
	for i := 0; i < 20000; i++ {
		e.Do(context.Background(), fmt.Sprintf("k.%d", i), okOp)
	}
	if n := len(e.Keys()); n > 128 {
		t.Errorf("%d keys cached with WithMaxKeys(64), want ≤ 128", n)
	}
}

// Memory does not grow with distinct keys (a file provider behind it).
func TestManyDistinctKeysMemoryFlat(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "default:\n  retry: {max_attempts: 1}\n  circuit: {enabled: true}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithMaxKeys(128))
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for i := 0; i < 2000; i++ {
		e.Do(context.Background(), fmt.Sprintf("warm.%d", i), okOp)
	}
	h0 := heap()
	for i := 0; i < 10000; i++ {
		e.Do(context.Background(), fmt.Sprintf("flood.%d", i), okOp)
	}
	h1 := heap()
	if h1 > h0+8<<20 {
		t.Errorf("heap grew %d KB over 10000 one-off keys with WithMaxKeys(128)", (h1-h0)>>10)
	}
	runtime.KeepAlive(e)
}

// A key that carries traffic keeps its open breaker through a flood of one-off keys.
func TestHotKeyBreakerSurvivesKeyFlood(t *testing.T) {
	e := recourse.NewExecutor(recourse.WithMaxKeys(32),
		recourse.WithFallbackPolicy(policy.MaxAttempts(1)),
		recourse.WithPolicy("hot.K", policy.MaxAttempts(1), policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Minute})))
	n := 0
	e.Do(context.Background(), "hot.K", failing(&n))
	for i := 0; i < 5000; i++ {
		e.Do(context.Background(), fmt.Sprintf("cold.%d", i), okOp)
		if i%8 == 0 {
			if err := e.Do(context.Background(), "hot.K", okOp); !errors.Is(err, middleware.ErrCircuitOpen) {
				t.Fatalf("after %d one-off keys the busy key's breaker was lost: %v", i, err)
			}
		}
	}
}

// A first call cancelled while the provider is slow does not poison the key.
func TestCancelledFirstCallDoesNotPoisonKey(t *testing.T) {
	cp := &countingProvider{block: make(chan struct{})}
	e := recourse.NewExecutor(recourse.WithProvider(cp), recourse.WithMissingPolicyMode(recourse.FailureDeny))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Do(ctx, "k.p", okOp) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; err == nil {
		t.Log("cancelled call returned nil")
	}
	close(cp.block)
	tl, err := e.DoWithTimeline(context.Background(), "k.p", okOp)
	if err != nil || tl.PolicyID != "cp" {
		t.Errorf("key poisoned by a cancelled caller: err %v id %q", err, tl.PolicyID)
	}
}

// A call cancelled before it starts is cheap and leaves the key healthy.
func TestPreCancelledCallLeavesKeyHealthy(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", goodV1))
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	e.Do(ctx, "svc.A", func(context.Context) error { ran = true; return nil })
	tl, err := e.DoWithTimeline(context.Background(), "svc.A", okOp)
	if err != nil || tl.PolicyID != "a-v1" {
		t.Errorf("err %v id %q (ran cancelled op: %v)", err, tl.PolicyID, ran)
	}
}

// Nested calls: a call inside another's try, on the same key and on a key
// not yet compiled, completes.
func TestNestedCallsCompileInside(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", goodV1))
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	done := make(chan error, 1)
	go func() {
		done <- e.Do(context.Background(), "svc.A", func(ctx context.Context) error {
			if err := e.Do(ctx, "svc.A", func(ctx context.Context) error {
				return e.Do(ctx, "fresh.Key", okOp)
			}); err != nil {
				return err
			}
			_, err := e.Explain(ctx, "another.Key")
			return err
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("nested calls deadlocked")
	}
}

// Observers that call back into the executor from every event, including the
// policy-problem event raised while a key compiles.
type reentrant struct {
	timeline.BaseObserver
	e     *recourse.Executor
	depth atomic.Int32
	n     atomic.Int64
}

func (r *reentrant) again(key string) {
	if r.depth.Add(1) > 1 {
		r.depth.Add(-1)
		return
	}
	defer r.depth.Add(-1)
	r.n.Add(1)
	r.e.Do(context.Background(), key, okOp)
	r.e.Explain(context.Background(), key)
	r.e.Breaker(key)
	r.e.Keys()
}
func (r *reentrant) OnPolicyProblem(ev timeline.PolicyProblem)        { r.again(ev.Key) }
func (r *reentrant) OnStart(_ context.Context, k string, _ time.Time) { r.again("other.K") }
func (r *reentrant) OnPolicyReload(timeline.PolicyReload)             { r.again("svc.A") }
func (r *reentrant) OnBreakerState(ev timeline.BreakerStateChange)    { r.again(ev.Key) }

func TestObserverCallsBackIntoExecutor(t *testing.T) {
	path := tempPolicy(t, "p.yaml", "policies:\n  svc.A: {budget: ghost, retry: {max_attempts: 1}, circuit: {enabled: true, consecutive_failures: 1, cooldown: 1m}}\n")
	fp := newFP(t, path)
	obs := &reentrant{}
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithObserver(obs))
	obs.e = e
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		e.Do(context.Background(), "svc.A", failing(&n))
		writeFile(t, path, "policies:\n  svc.A: {budget: ghost2, retry: {max_attempts: 1}}\n")
		fp.Reload()
		e.Do(context.Background(), "svc.A", okOp)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("re-entrant observer deadlocked the executor")
	}
	if obs.n.Load() == 0 {
		t.Error("observer never called")
	}
}

// A reload observer that calls Reload and Close on its own provider.
func TestReloadObserverReentersProvider(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	var fpp atomic.Pointer[policy.FileProvider]
	var once sync.Once
	obs := &funcObserver{f: func(ev timeline.PolicyReload) {
		fp := fpp.Load()
		if fp == nil {
			return // the constructor's own load
		}
		once.Do(func() {
			fp.Reload()
			fp.Source()
			fp.Set()
			fp.Close()
		})
	}}
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0), policy.ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	fpp.Store(fp)
	defer fp.Close()
	writeFile(t, path, goodV2)
	done := make(chan struct{})
	go func() { fp.Reload(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("observer calling Reload/Close deadlocked")
	}
}

type funcObserver struct {
	timeline.BaseObserver
	f func(timeline.PolicyReload)
}

func (o *funcObserver) OnPolicyReload(ev timeline.PolicyReload) { o.f(ev) }

// A panicking reload observer: the reload still happens and Reload returns the panic.
func TestReloadObserverPanics(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	var armed atomic.Bool
	fp := newFP(t, path, policy.ReloadObserver(&funcObserver{f: func(timeline.PolicyReload) {
		if armed.Load() {
			panic("observer exploded")
		}
	}}))
	armed.Store(true)
	writeFile(t, path, goodV2)
	err := fp.Reload()
	if err == nil || !strings.Contains(err.Error(), "observer exploded") {
		t.Errorf("Reload err %v", err)
	}
	if pol(t, fp, "svc.A").ID != "a-v2" {
		t.Error("panicking observer stopped the reload")
	}
	if fp.Err() != nil {
		t.Errorf("Err() = %v after a good reload with a panicking observer", fp.Err())
	}
}

// A panicking reload observer on the poller goroutine does not kill the process.
func TestReloadObserverPanicsOnPoller(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	var calls atomic.Int64
	var armed atomic.Bool
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(time.Millisecond), policy.ReloadObserver(&funcObserver{f: func(timeline.PolicyReload) {
		if armed.Load() {
			calls.Add(1)
			panic("poller observer")
		}
	}}))
	if err != nil {
		t.Fatalf("constructor: %v", err)
	}
	armed.Store(true)
	defer fp.Close()
	writeFile(t, path, goodV2)
	if !eventually(2*time.Second, func() bool { return calls.Load() > 0 }) {
		t.Fatal("poller never reported")
	}
	if !eventually(time.Second, func() bool { return pol(t, fp, "svc.A").ID == "a-v2" }) {
		t.Error("set not replaced")
	}
}

// Unsubscribing stops events; unsubscribing twice is safe.
func TestSubscribeReloadsUnsubscribe(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	r := &rec{}
	un := fp.SubscribeReloads(r)
	writeFile(t, path, goodV2)
	fp.Reload()
	un()
	un()
	writeFile(t, path, goodV1)
	fp.Reload()
	if n := len(r.Reloads()); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	if fp.SubscribeReloads(nil) == nil {
		t.Error("nil observer: nil unsubscribe func")
	}
}

// An executor dropped by its program stops receiving reloads (no leak of
// subscriptions on a long-lived provider).
func TestDroppedExecutorUnsubscribes(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	r := &rec{}
	func() {
		e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithObserver(r))
		e.Do(context.Background(), "svc.A", okOp)
	}()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(2 * time.Millisecond)
	}
	writeFile(t, path, goodV2)
	fp.Reload()
	if n := len(r.Reloads()); n != 0 {
		t.Errorf("a dropped executor's observer still got %d reloads", n)
	}
}

// Option edge values on providers: negative interval/caps/timeouts mean defaults, never a panic or a spin.
func TestProviderOptionEdgeValues(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	for name, opts := range map[string][]policy.FileOption{
		"negative interval": {policy.WatchInterval(-time.Second)},
		"negative cap":      {policy.MaxPolicyBytes(-1)},
		"zero cap":          {policy.MaxPolicyBytes(0)},
		"negative timeout":  {policy.FetchTimeout(-1)},
		"nil clock":         {policy.WatchClock(nil)},
		"nil observer":      {policy.ReloadObserver(nil)},
		"nil client":        {policy.WithHTTPClient(nil)},
		"nil option":        {nil},
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic %v", name, r)
				}
			}()
			fp, err := policy.NewFileProvider(path, opts...)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			defer fp.Close()
			if pol(t, fp, "svc.A").ID != "a-v1" {
				t.Errorf("%s: wrong set", name)
			}
		}()
	}
}

// Nil and empty inputs to the providers.
func TestProviderNilInputs(t *testing.T) {
	if _, err := policy.NewFileProvider(""); err == nil {
		t.Error(`NewFileProvider("") succeeded`)
	}
	fp := newFP(t, tempPolicy(t, "p.yaml", goodV1))
	//lint:ignore SA1012 testing nil
	if _, err := fp.Policy(nil, policy.ParseKey("svc.A")); err == nil { //nolint
		t.Error("nil ctx accepted")
	}
	p, err := fp.Policy(context.Background(), policy.Key{})
	if err == nil && p.Key != (policy.Key{}) {
		t.Errorf("empty key: %+v", p.Key)
	}
	var nilFP *policy.FileProvider
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Logf("nil *FileProvider Close panics: %v", r)
			}
		}()
		nilFP.Close()
	}()
}

// Registered in code wins over a file-declared budget of the same name.
func TestCodeBudgetWinsOverFileBudget(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", strings.Replace(goodV1, "capacity: 5", "capacity: 1", 1)))
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithBudget("bucket", middleware.UnlimitedBudget{}))
	n := 0
	e.Do(context.Background(), "svc.A", failing(&n))
	if n != 4 {
		t.Errorf("tries %d, want 4 (code budget is unlimited)", n)
	}
	b, _ := fp.Budget("bucket")
	if tokens(t, b) < 0.99 {
		t.Error("file budget was charged although a code budget has its name")
	}
}

// Explain reflects a reload at once.
func TestExplainFollowsReload(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	c, err := e.Explain(context.Background(), "svc.A")
	if err != nil || c.Policy.ID != "a-v1" {
		t.Fatalf("%v %v", c, err)
	}
	writeFile(t, path, goodV2)
	fp.Reload()
	c, err = e.Explain(context.Background(), "svc.A")
	if err != nil || c.Policy.ID != "a-v2" || c.Policy.Retry.MaxAttempts != 3 {
		t.Errorf("after reload: %+v %v", c.Policy, err)
	}
}

// An invalid policy from a provider is treated as missing, with policy_error set.
type staticBad struct{}

func (staticBad) Policy(ctx context.Context, k policy.Key) (policy.Policy, error) {
	return policy.New(k.String(), policy.MaxAttempts(-5)), nil
}

func TestInvalidProviderPolicyTreatedAsMissing(t *testing.T) {
	e := recourse.NewExecutor(recourse.WithProvider(staticBad{}), recourse.WithMissingPolicyMode(recourse.FailureDeny))
	tl, err := e.DoWithTimeline(context.Background(), "a.b", okOp)
	if !errors.Is(err, recourse.ErrNoPolicy) {
		t.Errorf("err %v", err)
	}
	if tl == nil || !strings.Contains(tl.Attributes[timeline.AttrPolicyError], "retry.max_attempts") {
		t.Errorf("policy_error %v", tl)
	}
}

// A thousand goroutines on one key while its file reloads and its breaker flips.
func TestThousandCallersDuringReloadAndBreakerFlips(t *testing.T) {
	mk := func(id string, cd string) string {
		return "policies:\n  hot.K: {id: " + id + ", retry: {max_attempts: 2, initial_backoff: 1ms, max_backoff: 1ms}, circuit: {enabled: true, consecutive_failures: 3, cooldown: " + cd + "}}\n"
	}
	path := tempPolicy(t, "p.yaml", mk("x1", "10ms"))
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	var wg sync.WaitGroup
	var flips atomic.Int64
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				writeFile(t, path, mk("x2", "10ms"))
			} else {
				writeFile(t, path, mk("x1", "20ms"))
			}
			fp.Reload()
			flips.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	var panics atomic.Int64
	for g := 0; g < 1000; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			defer func() {
				if recover() != nil {
					panics.Add(1)
				}
			}()
			for i := 0; i < 3; i++ {
				e.Do(context.Background(), "hot.K", func(context.Context) error {
					if (g+i)%3 == 0 {
						return errBoom
					}
					return nil
				})
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	if panics.Load() > 0 {
		t.Errorf("%d panics", panics.Load())
	}
	// Healthy afterwards.
	time.Sleep(25 * time.Millisecond)
	if !eventually(time.Second, func() bool { return e.Do(context.Background(), "hot.K", okOp) == nil }) {
		t.Error("key never healthy again")
	}
}

// A reload observer that panics on the constructor's first load fails the
// constructor (documented), leaving no poller behind.
func TestReloadObserverPanicFailsConstructor(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(time.Millisecond), policy.ReloadObserver(&funcObserver{f: func(timeline.PolicyReload) { panic("first") }}))
	if err == nil || fp != nil || !strings.Contains(err.Error(), "first") {
		t.Errorf("fp %v err %v", fp, err)
		if fp != nil {
			fp.Close()
		}
	}
}
