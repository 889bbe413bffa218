package recourse

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// New reports every invalid WithPolicy policy, each naming key, field and
// value, and returns no executor.
func TestNewReportsInvalidPolicies(t *testing.T) {
	e, err := New(
		WithPolicy("a.One", policy.Backoff(-time.Second, time.Second, 2)),
		WithPolicy("b.Two", policy.MaxAttempts(-1)),
		WithPolicy("c.Fine", policy.MaxAttempts(2)),
	)
	if e != nil || err == nil {
		t.Fatalf("New = %v, %v; want an error", e, err)
	}
	if !errors.Is(err, policy.ErrInvalid) {
		t.Fatalf("errors.Is(err, policy.ErrInvalid) = false: %v", err)
	}
	for _, want := range []string{`"a.One"`, "retry.initial_backoff", "-1s", `"b.Two"`, "retry.max_attempts", "-1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "c.Fine") {
		t.Errorf("error names a valid policy:\n%v", err)
	}
}

// New reports every budget, trigger and classifier a WithPolicy policy
// names that nothing resolves — all of them, even where a deny mode would
// stop at the first at run time — each wrapping its sentinel.
func TestNewReportsUnresolvedNames(t *testing.T) {
	e, err := New(
		WithMissingClassifierMode(FailureDeny),
		WithMissingTriggerMode(FailureDeny),
		WithPolicy("pay.Charge",
			policy.WithBudget("retries"),
			policy.WithClassifier("http"),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, Budget: "hedges", Trigger: "fast"})),
	)
	if e != nil || err == nil {
		t.Fatalf("New = %v, %v; want an error", e, err)
	}
	for _, s := range []error{ErrNoBudget, ErrNoTrigger, ErrNoClassifier} {
		if !errors.Is(err, s) {
			t.Errorf("errors.Is(err, %v) = false", s)
		}
	}
	msg := err.Error()
	for _, want := range []string{
		`policy "pay.Charge": budget = "retries"`,
		`policy "pay.Charge": hedge.budget = "hedges"`,
		`policy "pay.Charge": hedge.trigger = "fast"`,
		`policy "pay.Charge": classifier = "http"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %s:\n%s", want, msg)
		}
	}
	if n := len(strings.Split(msg, "\n")); n != 4 {
		t.Errorf("%d lines, want one per problem (4):\n%s", n, msg)
	}
}

// What is registered or built in passes: WithBudget, "unlimited",
// WithHedgeTrigger, pNN, WithClassifier.
func TestNewAcceptsResolvableNames(t *testing.T) {
	e, err := New(
		WithBudget("retries", middleware.NewTokenBucketBudget(10, 1)),
		WithHedgeTrigger("fast", func(*hedge.LatencyTracker) hedge.Trigger { return hedge.FixedDelay(time.Millisecond) }),
		WithClassifier("http", middleware.DefaultClassifier),
		WithPolicy("a.B", policy.WithBudget("retries"), policy.WithClassifier("http"),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, Budget: policy.BudgetUnlimited, Trigger: "fast"})),
		WithPolicy("c.D", policy.WithBudget(policy.BudgetUnlimited),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Trigger: "p99.9"})),
	)
	if err != nil || e == nil {
		t.Fatalf("New = %v, %v", e, err)
	}
	// Validation leaves no trace: no key compiled, no breaker or tracker.
	if keys := e.Keys(); len(keys) != 0 {
		t.Fatalf("keys after New: %v", keys)
	}
	if err := e.Do(context.Background(), "a.B", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func writePolicies(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The names in the provider's current set (a file provider lists it) are
// checked too, the default section's under "default"; keys a WithPolicy
// overrides are checked as WithPolicy.
func TestNewChecksTheProvidersSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writePolicies(t, path, `
budgets:
  declared: {kind: token_bucket, capacity: 1, refill_per_second: 1}
default:
  hedge: {enabled: true, trigger: sometimes}
policies:
  a.Good: {budget: unlimited}
  a.Declared: {budget: declared}
  b.Bad: {budget: ghost}
  c.Overridden: {budget: ghost2}
`)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	e, err := New(WithProvider(fp), WithPolicy("c.Overridden", policy.MaxAttempts(2)))
	if e != nil || err == nil {
		t.Fatalf("New = %v, %v; want an error", e, err)
	}
	msg := err.Error()
	for _, want := range []string{`policy "b.Bad": budget = "ghost"`, `policy "default": hedge.trigger = "sometimes"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "a.Good") || strings.Contains(msg, "a.Declared") || strings.Contains(msg, "ghost2") {
		t.Errorf("error names a resolvable or overridden key:\n%s", msg)
	}
	if !errors.Is(err, ErrNoBudget) || !errors.Is(err, ErrNoTrigger) {
		t.Errorf("sentinels missing: %v", err)
	}
}

// problemLog records policy problems and reloads.
type problemLog struct {
	timeline.BaseObserver
	mu       sync.Mutex
	problems []timeline.PolicyProblem
	reloads  []timeline.PolicyReload
}

func (l *problemLog) OnPolicyProblem(ev timeline.PolicyProblem) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, ev)
}

func (l *problemLog) OnPolicyReload(ev timeline.PolicyReload) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reloads = append(l.reloads, ev)
}

func (l *problemLog) snapshot() ([]timeline.PolicyProblem, []timeline.PolicyReload) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]timeline.PolicyProblem(nil), l.problems...), append([]timeline.PolicyReload(nil), l.reloads...)
}

// At run time an unresolvable name is loud: the observer hears of each
// one once per compile of the key (not per call), and the timeline's
// budget_error names every missing budget, not just the last.
func TestUnresolvedNamesAreObservedOncePerCompile(t *testing.T) {
	obs := &problemLog{}
	sp := policy.NewStaticProvider(policy.New("a.B", policy.MaxAttempts(3), policy.WithBudget("x"),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Hour, Budget: "y"})))
	e := NewExecutor(WithObserver(obs), WithProvider(sp))
	var tl *timeline.Timeline
	for range 3 {
		tl, _ = e.DoWithTimeline(context.Background(), "a.B", func(context.Context) error { return nil })
	}
	got, _ := obs.snapshot()
	if len(got) != 2 {
		t.Fatalf("problems after 3 calls = %+v, want 2", got)
	}
	want := map[string]string{"budget": "x", "hedge.budget": "y"}
	for _, p := range got {
		if p.Key != "a.B" || want[p.Field] != p.Name || p.Mode != "deny" || !errors.Is(p.Err, ErrNoBudget) ||
			!strings.Contains(p.Err.Error(), p.Field) || !strings.Contains(p.Err.Error(), `"`+p.Name+`"`) {
			t.Errorf("problem %+v", p)
		}
	}
	be := tl.Attributes[timeline.AttrBudgetError]
	if !strings.Contains(be, `"x"`) || !strings.Contains(be, `"y"`) {
		t.Errorf("%s = %q, want both budgets", timeline.AttrBudgetError, be)
	}
	// A policy change recompiles the key: reported again, once.
	sp.Set(policy.New("a.B", policy.WithClassifier("nope")))
	for range 3 {
		_ = e.Do(context.Background(), "a.B", func(context.Context) error { return nil })
	}
	got, _ = obs.snapshot()
	if len(got) != 3 || got[2].Field != "classifier" || got[2].Name != "nope" || got[2].Mode != "fallback" || !errors.Is(got[2].Err, ErrNoClassifier) {
		t.Fatalf("problems = %+v", got)
	}
}

// Reload events of the executor's provider reach the executor's
// observers: a real file provider, rewritten, good then bad.
func TestReloadsReachExecutorObservers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writePolicies(t, path, "policies:\n  a.B: {retry: {max_attempts: 2}}\n")
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	var _ policy.ReloadSubscriber = fp
	obs := &problemLog{}
	e, err := New(WithProvider(fp), WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	writePolicies(t, path, "policies:\n  a.B: {retry: {max_attempts: 3}}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	writePolicies(t, path, "policies: [")
	if err := fp.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	_, reloads := obs.snapshot()
	if len(reloads) != 2 || reloads[0].Err != nil || reloads[1].Err == nil || reloads[1].Version <= reloads[0].Version {
		t.Fatalf("reloads = %+v", reloads)
	}
	_ = e
}

// A subscribing provider without a file: the executor subscribes its
// observer once when built (and never when it has none).
func TestExecutorSubscribesToReloads(t *testing.T) {
	sp := &subscribing{StaticProvider: policy.NewStaticProvider()}
	obs := &problemLog{}
	kept := NewExecutor(WithProvider(sp), WithObserver(obs))
	defer runtime.KeepAlive(kept) // its finalizer would unsubscribe
	_ = NewExecutor(WithProvider(sp))
	if len(sp.subs) != 1 {
		t.Fatalf("%d subscriptions, want 1", len(sp.subs))
	}
	sp.subs[0].OnPolicyReload(timeline.PolicyReload{Source: "x", Version: 7})
	if _, r := obs.snapshot(); len(r) != 1 || r[0].Version != 7 {
		t.Fatalf("reloads %+v", r)
	}
	// New that fails leaves no subscription behind.
	if _, err := New(WithProvider(sp), WithObserver(obs), WithPolicy("a.B", policy.MaxAttempts(-1))); err == nil {
		t.Fatal("no error")
	}
	if len(sp.subs) != 1 || sp.cancelled != 1 {
		t.Fatalf("%d subscriptions, %d cancelled; want 1, 1", len(sp.subs), sp.cancelled)
	}
}

type subscribing struct {
	*policy.StaticProvider
	subs      []timeline.Observer
	cancelled int
}

func (s *subscribing) SubscribeReloads(o timeline.Observer) func() {
	s.subs = append(s.subs, o)
	n := len(s.subs) - 1
	return func() {
		s.subs = append(s.subs[:n], s.subs[n+1:]...)
		s.cancelled++
	}
}

// A refused key's error says "no policy" once, and still matches both
// ErrNoPolicy and policy.ErrNotFound.
func TestNoPolicyErrorSaysItOnce(t *testing.T) {
	op := func(context.Context) error { return nil }
	for name, tc := range map[string]struct {
		e    *Executor
		want string
	}{
		"no provider": {NewExecutor(WithMissingPolicyMode(FailureDeny)), `recourse: no policy for key "x" (no provider)`},
		"static":      {NewExecutor(WithMissingPolicyMode(FailureDeny), WithProvider(policy.NewStaticProvider())), `recourse: no policy for key "x"`},
	} {
		err := tc.e.Do(context.Background(), "x", op)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %s", name, err, tc.want)
		}
		if !errors.Is(err, ErrNoPolicy) || !errors.Is(err, policy.ErrNotFound) {
			t.Errorf("%s: sentinels lost: %v", name, err)
		}
	}
	// An invalid policy: the field error names the key already.
	e := NewExecutor(WithMissingPolicyMode(FailureDeny), WithPolicy("svc.Op", policy.MaxAttempts(-1)))
	err := e.Do(context.Background(), "svc.Op", op)
	if err == nil || strings.Count(err.Error(), "svc.Op") != 1 || !errors.Is(err, ErrNoPolicy) || !errors.Is(err, policy.ErrInvalid) {
		t.Errorf("invalid: err = %v", err)
	}
}

type silentProvider struct{}

func (silentProvider) Policy(ctx context.Context, _ policy.Key) (policy.Policy, error) {
	<-ctx.Done()
	return policy.Policy{}, ctx.Err()
}

// A provider that does not answer: "recourse:" once, the key once.
func TestProviderTimeoutErrorSaysItOnce(t *testing.T) {
	e := NewExecutor(WithMissingPolicyMode(FailureDeny), WithProvider(silentProvider{}), WithProviderTimeout(5*time.Millisecond))
	err := e.Do(context.Background(), "x", func(context.Context) error { return nil })
	if err == nil || strings.Count(err.Error(), "recourse") != 1 || strings.Count(err.Error(), `"x"`) != 1 ||
		!errors.Is(err, ErrNoPolicy) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

type countingSubscriber struct {
	*policy.StaticProvider
	cancelled chan struct{}
}

func (s *countingSubscriber) SubscribeReloads(timeline.Observer) func() {
	return func() { close(s.cancelled) }
}

// An executor dropped by its user ends its subscription: the provider
// does not keep its observer forever.
func TestDroppedExecutorUnsubscribes(t *testing.T) {
	sp := &countingSubscriber{StaticProvider: policy.NewStaticProvider(), cancelled: make(chan struct{})}
	func() { _ = NewExecutor(WithProvider(sp), WithObserver(&problemLog{})) }()
	for range 100 {
		runtime.GC()
		select {
		case <-sp.cancelled:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the subscription outlived the executor")
}

// The fallback policy (WithFallbackPolicy), which every key without a
// policy runs under, is checked under the name "fallback" — unless the
// missing-policy mode never uses it.
func TestNewChecksTheFallbackPolicy(t *testing.T) {
	_, err := New(WithFallbackPolicy(policy.MaxAttempts(-1)))
	if err == nil || !errors.Is(err, policy.ErrInvalid) || !strings.Contains(err.Error(), `policy "fallback": retry.max_attempts = -1`) {
		t.Fatalf("err = %v", err)
	}
	_, err = New(WithFallbackPolicy(policy.WithBudget("nope")))
	if err == nil || !errors.Is(err, ErrNoBudget) || !strings.Contains(err.Error(), `policy "fallback": budget = "nope"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := New(WithMissingPolicyMode(FailureDeny), WithFallbackPolicy(policy.WithBudget("nope"))); err != nil {
		t.Fatalf("unused fallback: %v", err)
	}
}

type panickyProblems struct{ timeline.BaseObserver }

func (panickyProblems) OnPolicyProblem(timeline.PolicyProblem) { panic("observer bug") }

// An observer that panics on a policy problem does not break the call
// (with panic recovery on).
func TestPanickingProblemObserverIsContained(t *testing.T) {
	for _, sp := range []policy.Provider{nil, policy.NewStaticProvider(policy.New("a.B", policy.WithClassifier("nope")))} {
		opts := []Option{WithObserver(panickyProblems{}), WithPolicy("s.T", policy.WithClassifier("nope"))}
		if sp != nil {
			opts = append(opts, WithProvider(sp))
		}
		e := NewExecutor(opts...)
		for _, key := range []string{"s.T", "a.B"} {
			if err := e.Do(context.Background(), key, func(context.Context) error { return nil }); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
		}
	}
}
