package recourse

import (
	"context"
	"errors"
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

// fileExecutor writes a policy file and returns an executor reading it.
func fileExecutor(t *testing.T, yaml string, opts ...Option) *Executor {
	t.Helper()
	path := t.TempDir() + "/p.yaml"
	writeFile(t, path, yaml)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fp.Close() })
	e, err := New(append([]Option{WithProvider(fp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A bulkhead compiled from a policy file refuses the try that finds it
// full: not retried, not counted by the breaker (which trips after one
// counted failure), recorded as bulkhead_full.
func TestBulkheadFromFileRefusesUncounted(t *testing.T) {
	e := fileExecutor(t, `
policies:
  pricing.Get:
    bulkhead: {max_concurrent: 1, max_wait: 1ms}
    circuit: {enabled: true, consecutive_failures: 1, cooldown: 1m}
    retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}
`)
	c, err := e.Explain(context.Background(), "pricing.Get")
	if err != nil || !strings.Contains(c.Describe(), "bulkhead") || !strings.Contains(c.Describe(), "max_concurrent=1") {
		t.Fatalf("explain: %v\n%s", err, c.Describe())
	}
	inside, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = e.Do(context.Background(), "pricing.Get", func(context.Context) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	var calls atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), "pricing.Get", func(context.Context) error { calls.Add(1); return nil })
	close(release)
	if !errors.Is(err, middleware.ErrBulkheadFull) || calls.Load() != 0 {
		t.Fatalf("err %v, op called %d times; want ErrBulkheadFull without a call", err, calls.Load())
	}
	if len(tl.Attempts) != 1 || tl.Attempts[0].Reason != timeline.ReasonBulkheadFull {
		t.Fatalf("timeline %v: want one bulkhead_full try, not retried", tl)
	}
	if s := e.Breaker("pricing.Get").State(); s != endpoint.BreakerClosed {
		t.Fatalf("breaker %v after a bulkhead refusal; refusals are not counted", s)
	}
}

// Slow calls configured in a policy file open the key's breaker.
func TestSlowCallsFromFileOpenBreaker(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	e := fileExecutor(t, `
policies:
  search.Query:
    circuit: {enabled: true, cooldown: 1m, window: 10s, min_requests: 4, slow_call_duration: 500ms, slow_call_rate: 0.5}
    retry: {max_attempts: 1}
`, WithClock(clk))
	slow := func(context.Context) error { clk.Advance(time.Second); return nil }
	fast := func(context.Context) error { return nil }
	for _, op := range []func(context.Context) error{fast, fast, slow} {
		if err := e.Do(context.Background(), "search.Query", op); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.Breaker("search.Query").State(); s != endpoint.BreakerClosed {
		t.Fatalf("open after 1 slow call of 3: %v", s)
	}
	_ = e.Do(context.Background(), "search.Query", slow) // 2 of 4: the rate
	if s := e.Breaker("search.Query").State(); s != endpoint.BreakerOpen {
		t.Fatalf("breaker %v after 2 slow calls of 4 (rate 0.5)", s)
	}
	if err := e.Do(context.Background(), "search.Query", fast); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("open breaker admitted a call: %v", err)
	}
}

// exec.Breaker(key) gives operators ForceOpen and Reset; the observer
// hears both transitions.
func TestExecutorBreakerForceOpenAndReset(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	obs := &breakerObserver{on: func(ev timeline.BreakerStateChange) {
		mu.Lock()
		seen = append(seen, ev.From+">"+ev.To)
		mu.Unlock()
	}}
	e := NewExecutor(WithObserver(obs), WithPolicy("inventory.Reserve", policy.MaxAttempts(1),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, Cooldown: 10 * time.Millisecond})))
	if err := e.Do(context.Background(), "inventory.Reserve", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	e.Breaker("inventory.Reserve").ForceOpen()
	time.Sleep(30 * time.Millisecond) // three cooldowns
	if err := e.Do(context.Background(), "inventory.Reserve", func(context.Context) error { return nil }); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("forced open: %v", err)
	}
	e.Breaker("inventory.Reserve").Reset()
	if err := e.Do(context.Background(), "inventory.Reserve", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != "closed>open open>closed" {
		t.Fatalf("observer saw %v", seen)
	}
}

type breakerObserver struct {
	timeline.BaseObserver
	on func(timeline.BreakerStateChange)
}

func (o *breakerObserver) OnBreakerState(ev timeline.BreakerStateChange) { o.on(ev) }

func TestExecutorFallback(t *testing.T) {
	var seen []timeline.AttemptRecord
	obs := &attemptObserver{on: func(r timeline.AttemptRecord) { seen = append(seen, r) }}
	e, err := New(WithObserver(obs),
		WithPolicy("pricing.Quote", policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)),
		WithFallback("pricing.Quote", func(_ context.Context, err error) (any, error) {
			if errors.Is(err, errFlaky) {
				return 42, nil
			}
			return nil, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	v, err := DoValueWith(context.Background(), e, "pricing.Quote", func(context.Context) (int, error) { return 0, errFlaky })
	if v != 42 || err != nil {
		t.Fatalf("DoValue: %v, %v; want the fallback's 42", v, err)
	}
	if len(seen) != 3 || seen[2].Reason != timeline.ReasonFallback || !errors.Is(seen[2].Err, errFlaky) {
		t.Fatalf("observer saw %+v: want 2 tries then a fallback record carrying the original error", seen)
	}
	if err := e.Do(context.Background(), "pricing.Quote", func(context.Context) error { return errFlaky }); err != nil {
		t.Fatalf("Do: %v", err)
	}
	// The wrong type is an error naming both types, not a silent zero.
	_, err = DoValueWith(context.Background(), e, "pricing.Quote", func(context.Context) (string, error) { return "", errFlaky })
	if !errors.Is(err, ErrFallbackType) || !strings.Contains(err.Error(), "int") || !strings.Contains(err.Error(), "string") {
		t.Fatalf("wrong-type fallback: %v", err)
	}
	// Keys without a fallback fail as before.
	if err := e.Do(context.Background(), "other.Op", func(context.Context) error { return errFlaky }); !errors.Is(err, errFlaky) {
		t.Fatal(err)
	}
}

// A key whose calls are refused (no policy, deny mode) is answered by its
// fallback too.
func TestFallbackAnswersRefusedKey(t *testing.T) {
	e := NewExecutor(WithMissingPolicyMode(FailureDeny),
		WithFallback("unknown.Op", func(_ context.Context, err error) (any, error) { return "default", nil }))
	v, err := DoValueWith(context.Background(), e, "unknown.Op", func(context.Context) (string, error) { return "live", nil })
	if v != "default" || err != nil {
		t.Fatalf("%q, %v", v, err)
	}
}

func TestNewRejectsNilFallback(t *testing.T) {
	_, err := New(WithFallback("pricing.Quote", nil))
	if !errors.Is(err, ErrNilOperation) || !strings.Contains(err.Error(), `"pricing.Quote"`) {
		t.Fatalf("New: %v", err)
	}
}

type attemptObserver struct {
	timeline.BaseObserver
	on func(timeline.AttemptRecord)
}

func (o *attemptObserver) OnAttempt(_ context.Context, _ string, r timeline.AttemptRecord) { o.on(r) }

// An adaptive bulkhead compiled from a policy file: its ceiling bounds the
// tries in flight, and the try past it is refused as bulkhead_full.
func TestAdaptiveBulkheadFromFile(t *testing.T) {
	e := fileExecutor(t, `
policies:
  search.Query:
    bulkhead: {adaptive: true, max_concurrent: 2}
    retry: {max_attempts: 2, initial_backoff: 1ms, max_backoff: 1ms}
`)
	c, err := e.Explain(context.Background(), "search.Query")
	if err != nil || !strings.Contains(c.Describe(), "bulkhead         adaptive max_concurrent=2") {
		t.Fatalf("explain: %v\n%s", err, c.Describe())
	}
	inside, release := make(chan struct{}, 2), make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Do(context.Background(), "search.Query", func(context.Context) error {
				inside <- struct{}{}
				<-release
				return nil
			})
		}()
	}
	<-inside
	<-inside
	tl, err := e.DoWithTimeline(context.Background(), "search.Query", func(context.Context) error { return nil })
	close(release)
	wg.Wait()
	if !errors.Is(err, middleware.ErrBulkheadFull) || len(tl.Attempts) != 1 || tl.Attempts[0].Reason != timeline.ReasonBulkheadFull {
		t.Fatalf("third call past a ceiling of 2: %v, %v", err, tl)
	}
	if err := e.Do(context.Background(), "search.Query", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("after the others returned: %v", err)
	}
}
