package recourse

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func TestTokenBucketCapacityZeroThroughExecutor(t *testing.T) {
	e := NewExecutor(WithBudget("retries", middleware.NewTokenBucketBudget(0, 0)),
		WithPolicy("svc.Op", policy.MaxAttempts(3), noWait(), policy.WithBudget("retries")))
	var calls atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 1 || !errors.Is(err, errFlaky) {
		t.Fatalf("calls %d err %v", calls.Load(), err)
	}
	if len(tl.Attempts) != 2 || tl.Attempts[1].Reason != timeline.ReasonBudgetDenied {
		t.Fatalf("timeline %v", tl)
	}
}

func TestMissingBudgetModes(t *testing.T) {
	var calls atomic.Int32
	deny := NewExecutor(WithPolicy("svc.Op", policy.MaxAttempts(3), noWait(), policy.WithBudget("nope")))
	tl, _ := deny.DoWithTimeline(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 1 || tl.Attributes["budget_error"] == "" {
		t.Fatalf("deny: calls %d attrs %v", calls.Load(), tl.Attributes)
	}
	calls.Store(0)
	allow := NewExecutor(WithMissingBudgetMode(FailureAllow), WithPolicy("svc.Op", policy.MaxAttempts(3), noWait(), policy.WithBudget("nope")))
	_ = allow.Do(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 3 {
		t.Fatalf("allow: calls %d", calls.Load())
	}
}

type breakerEvents struct {
	timeline.BaseObserver
	mu  sync.Mutex
	got []timeline.BreakerStateChange
}

func (b *breakerEvents) OnBreakerState(ev timeline.BreakerStateChange) {
	b.mu.Lock()
	b.got = append(b.got, ev)
	b.mu.Unlock()
}

func TestExecutorBreakerPerKeyFollowsPolicyChanges(t *testing.T) {
	obs := &breakerEvents{}
	circuit := policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 2, Cooldown: time.Hour}
	prov := policy.NewStaticProvider(policy.New("svc.Op", policy.MaxAttempts(1), policy.WithCircuitBreaker(circuit)))
	e := NewExecutor(WithProvider(prov), WithObserver(obs))
	var calls atomic.Int32
	for i := 0; i < 4; i++ {
		_ = e.Do(context.Background(), "svc.Op", failTimes(100, &calls))
	}
	if calls.Load() != 2 {
		t.Fatalf("calls = %d: the breaker should have opened after 2", calls.Load())
	}
	err := e.Do(context.Background(), "svc.Op", failTimes(0, &calls))
	if !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("err = %v", err)
	}
	obs.mu.Lock()
	if len(obs.got) != 1 || obs.got[0].Key != "svc.Op" || obs.got[0].To != "open" {
		t.Fatalf("breaker events %+v", obs.got)
	}
	obs.mu.Unlock()
	b1 := e.Breaker("svc.Op")

	// An unrelated policy change keeps the breaker (and its open state).
	prov.Set(policy.New("svc.Op", policy.MaxAttempts(2), policy.WithCircuitBreaker(circuit)))
	if err := e.Do(context.Background(), "svc.Op", failTimes(0, &calls)); !errors.Is(err, middleware.ErrCircuitOpen) || e.Breaker("svc.Op") != b1 {
		t.Fatalf("breaker lost on an unrelated policy change: %v", err)
	}
	// A changed circuit policy gets a fresh breaker.
	circuit.ConsecutiveFailures = 5
	prov.Set(policy.New("svc.Op", policy.MaxAttempts(1), policy.WithCircuitBreaker(circuit)))
	if err := e.Do(context.Background(), "svc.Op", failTimes(0, &calls)); err != nil || e.Breaker("svc.Op") == b1 {
		t.Fatalf("breaker config change ignored: %v", err)
	}
}

func TestExecutorHedgesWithFixedDelay(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	e := NewExecutor(WithClock(f), WithPolicy("svc.Read", policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 50 * time.Millisecond, MaxHedges: 1})))
	done := make(chan *timeline.Timeline, 1)
	go func() {
		tl, _ := e.DoWithTimeline(context.Background(), "svc.Read", func(ctx context.Context) error {
			if info, _ := endpoint.AttemptFromContext(ctx); info.IsHedge() {
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		})
		done <- tl
	}()
	f.BlockUntil(1)
	f.Advance(50 * time.Millisecond)
	tl := <-done
	if tl.Err != nil || len(tl.Attempts) != 2 {
		t.Fatalf("timeline %v", tl)
	}
}

func TestExecutorNoHedgeWhileBreakerHalfOpen(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Read", policy.MaxAttempts(1),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: 20 * time.Millisecond}),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 2})))
	_ = e.Do(context.Background(), "svc.Read", func(context.Context) error { return errFlaky }) // trips
	b := e.Breaker("svc.Read")
	for b.State() != endpoint.BreakerHalfOpen {
		time.Sleep(2 * time.Millisecond) // gobreaker's cooldown runs on real time
	}
	var tries atomic.Int32
	err := e.Do(context.Background(), "svc.Read", func(context.Context) error {
		tries.Add(1)
		time.Sleep(30 * time.Millisecond) // far past the 1ms hedge delay
		return nil
	})
	if err != nil || tries.Load() != 1 {
		t.Fatalf("err %v tries %d: a half-open probe must not be hedged", err, tries.Load())
	}
}

func TestNamedTriggerAndMissingTriggerModes(t *testing.T) {
	var made atomic.Int32
	factory := func(tr *hedge.LatencyTracker) hedge.Trigger { made.Add(1); return hedge.FixedDelay(time.Hour) }
	hp := policy.HedgePolicy{Enabled: true, Trigger: "mine"}
	e := NewExecutor(WithHedgeTrigger("mine", factory), WithPolicy("svc.A", policy.WithHedge(hp)))
	c, err := e.Explain(context.Background(), "svc.A")
	if err != nil || made.Load() != 1 {
		t.Fatalf("err %v made %d", err, made.Load())
	}
	if got := c.Describe(); !strings.Contains(got, "trigger=mine: fixed 1h0m0s") {
		t.Fatalf("chain:\n%s", got)
	}
	deny := NewExecutor(WithMissingTriggerMode(FailureDeny), WithPolicy("svc.A", policy.WithHedge(hp)))
	if err := deny.Do(context.Background(), "svc.A", func(context.Context) error { return nil }); !errors.Is(err, ErrNoTrigger) {
		t.Fatalf("err = %v", err)
	}
	def := NewDefaultExecutor(WithPolicy("svc.B", policy.WithHedge(policy.HedgePolicy{Enabled: true, Trigger: "p99"})))
	c, err = def.Explain(context.Background(), "svc.B")
	if err != nil || !strings.Contains(c.Describe(), "trigger=p99: p99 of the key's latencies (fixed 10ms until 20 samples)") {
		t.Fatalf("default executor: %v\n%s", err, c.Describe())
	}
	// Any pNN is built in, on every executor, falling back to the policy's delay.
	plain := NewExecutor(WithPolicy("svc.C", policy.WithHedge(policy.HedgePolicy{Enabled: true, Trigger: "p90", Delay: 7 * time.Millisecond})))
	tl, err := plain.DoWithTimeline(context.Background(), "svc.C", func(context.Context) error { return nil })
	if err != nil || tl.Attributes["trigger_error"] != "" {
		t.Fatalf("p90 not built in: err %v attrs %v", err, tl.Attributes)
	}
	c, _ = plain.Explain(context.Background(), "svc.C")
	if !strings.Contains(c.Describe(), "trigger=p90: p90 of the key's latencies (fixed 7ms until 20 samples)") {
		t.Fatalf("p90:\n%s", c.Describe())
	}
	// A missing trigger's fallback is named as such.
	c, _ = NewExecutor(WithPolicy("svc.D", policy.WithHedge(policy.HedgePolicy{Enabled: true, Trigger: "nope", Delay: 5 * time.Millisecond}))).Explain(context.Background(), "svc.D")
	if !strings.Contains(c.Describe(), "trigger=nope missing, fell back to fixed 5ms") {
		t.Fatalf("missing trigger:\n%s", c.Describe())
	}
}

func TestUnlimitedBudgetIsBuiltIn(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.U", policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1), policy.WithBudget(policy.BudgetUnlimited)))
	var tries int
	tl, _ := e.DoWithTimeline(context.Background(), "svc.U", func(context.Context) error { tries++; return errFlaky })
	if tries != 3 || tl.Attributes["budget_error"] != "" {
		t.Fatalf("tries %d attrs %v: the unlimited budget must need no registration", tries, tl.Attributes)
	}
}

func TestFullChainOrder(t *testing.T) {
	e := NewExecutor(WithBudget("retries", middleware.UnlimitedBudget{}), WithPolicy("svc.Full",
		policy.OverallTimeout(time.Second), policy.TimeoutPerAttempt(100*time.Millisecond),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true}),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 10 * time.Millisecond}),
		policy.WithBudget("retries")))
	c, err := e.Explain(context.Background(), "svc.Full")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range c.Stages {
		names = append(names, s.Name)
	}
	want := "observe overall_timeout retry breaker hedge budget attempt_timeout classify"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("chain = %s\nwant    %s", got, want)
	}
}

func TestFileProviderReloadsReachTimelines(t *testing.T) {
	path := t.TempDir() + "/policies.yaml"
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policies:\n  svc.Op: {retry: {max_attempts: 1}}\n")
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	e := NewExecutor(WithProvider(fp), WithMissingPolicyMode(FailureDeny))
	var calls atomic.Int32
	tl, _ := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 1 || tl.Attributes[timeline.AttrPolicySource] != "file:"+path {
		t.Fatalf("calls %d attrs %v", calls.Load(), tl.Attributes)
	}

	write("policies:\n  svc.Op: {retry: {max_attempts: nine}}\n")
	if err := fp.Reload(); err == nil {
		t.Fatal("broken file reloaded")
	}
	calls.Store(0)
	tl, _ = e.DoWithTimeline(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 1 || !strings.Contains(tl.Attributes[timeline.AttrPolicySource], "stale") {
		t.Fatalf("after a failed reload: calls %d attrs %v", calls.Load(), tl.Attributes)
	}

	write("policies:\n  svc.Op: {retry: {max_attempts: 2, initial_backoff: 1ms}}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	calls.Store(0)
	_ = e.Do(context.Background(), "svc.Op", failTimes(10, &calls))
	if calls.Load() != 2 {
		t.Fatalf("fixed file not in force: %d calls", calls.Load())
	}
	if err := e.Do(context.Background(), "other.Op", failTimes(0, &calls)); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("a key the file lacks follows the missing-policy mode: %v", err)
	}
}
