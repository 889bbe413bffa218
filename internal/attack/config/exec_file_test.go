package config_test

import (
	"context"
	"errors"
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

func tokens(t *testing.T, b middleware.Budget) float64 {
	t.Helper()
	r, ok := b.(middleware.TokenReporter)
	if !ok {
		t.Fatalf("budget %T reports no tokens", b)
	}
	return r.Tokens()
}

// A reload that leaves a budget's declaration alone keeps its state, even when
// other policies change; one that changes it builds a fresh one.
func TestBudgetStateAcrossReloads(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	n := 0
	e.Do(context.Background(), "svc.A", failing(&n)) // 4 attempts: 3 retries take 3 tokens
	if n != 4 {
		t.Fatalf("tries %d, want 4", n)
	}
	b1, _ := fp.Budget("bucket")
	if got := tokens(t, b1); got > 2.01 {
		t.Fatalf("tokens %v after 3 retries, want 2", got)
	}
	writeFile(t, path, goodV2) // svc.A changes, bucket does not
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	b2, _ := fp.Budget("bucket")
	if b1 != b2 {
		t.Error("unchanged budget declaration rebuilt on reload")
	}
	n = 0
	e.Do(context.Background(), "svc.A", failing(&n)) // 3 attempts wanted, only 2 tokens left
	if n != 3 {
		t.Errorf("tries after reload %d, want 3 (2 tokens left)", n)
	}
	if got := tokens(t, b2); got > 0.01 {
		t.Errorf("tokens %v, want 0: state was not kept", got)
	}
	writeFile(t, path, strings.Replace(goodV2, "capacity: 5", "capacity: 6", 1))
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	b3, _ := fp.Budget("bucket")
	if b3 == b2 {
		t.Fatal("changed declaration kept the old budget")
	}
	if got := tokens(t, b3); got < 5.99 {
		t.Errorf("new budget tokens %v, want 6", got)
	}
	n = 0
	e.Do(context.Background(), "svc.A", failing(&n))
	if n != 3 {
		t.Errorf("executor did not pick up the new budget: %d tries", n)
	}
}

// Rewriting a budget declaration with the same meaning (fields reordered,
// 10s vs 10000ms, explicit default window) keeps it.
func TestBudgetSameMeaningDifferentSpellingKeepsState(t *testing.T) {
	v1 := "budgets:\n  r: {kind: ratio, ratio: 0.5, min_per_second: 1, window: 10s}\n  t: {kind: throttle, max_tokens: 10, token_ratio: 0.1}\npolicies:\n  a.b: {budget: r}\n"
	v2 := "budgets:\n  t: {token_ratio: 0.1, max_tokens: 10.0, kind: throttle}\n  r: {window: 10000ms, min_per_second: 1.0, ratio: 0.50, kind: ratio}\npolicies:\n  a.b: {budget: r, id: other}\n"
	path := tempPolicy(t, "p.yaml", v1)
	fp := newFP(t, path)
	r1, _ := fp.Budget("r")
	t1, _ := fp.Budget("t")
	writeFile(t, path, v2)
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	r2, _ := fp.Budget("r")
	t2, _ := fp.Budget("t")
	if r1 != r2 || t1 != t2 {
		t.Errorf("same declarations spelled differently were rebuilt: ratio kept=%v throttle kept=%v", r1 == r2, t1 == t2)
	}
}

// A budget removed by a reload is gone; a key naming it then has a missing
// budget (fail closed), reported in budget_error.
func TestReloadRemovesBudgetInUse(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	n := 0
	e.Do(context.Background(), "svc.A", failing(&n))
	writeFile(t, path, strings.Replace(goodV1, "  bucket: {kind: token_bucket, capacity: 5, refill_per_second: 0}\n", "  other: {kind: token_bucket, capacity: 5}\n", 1))
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := fp.Budget("bucket"); ok {
		t.Error("removed budget still served")
	}
	n = 0
	tl, _ := e.DoWithTimeline(context.Background(), "svc.A", failing(&n))
	if n != 1 {
		t.Errorf("tries %d, want 1 (missing budget denies retries)", n)
	}
	if tl == nil || !strings.Contains(tl.Attributes[timeline.AttrBudgetError], "bucket") {
		t.Errorf("budget_error = %q", tl.Attributes[timeline.AttrBudgetError])
	}
}

// A reload removing a key in use moves it to the default section at once.
func TestReloadRemovesKeyInUse(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	n := 0
	tl1, _ := e.DoWithTimeline(context.Background(), "svc.A", failing(&n))
	if tl1.PolicyID != "a-v1" || n != 4 {
		t.Fatalf("before: id %q tries %d", tl1.PolicyID, n)
	}
	writeFile(t, path, "default:\n  retry: {max_attempts: 2, initial_backoff: 1ms}\npolicies:\n  svc.B: {id: b}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	n = 0
	tl2, _ := e.DoWithTimeline(context.Background(), "svc.A", failing(&n))
	if n != 2 || tl2.PolicyID == "a-v1" {
		t.Errorf("after removal: id %q tries %d, want the default section's 2", tl2.PolicyID, n)
	}
}

// With no default section, a removed key falls to the missing-policy mode (deny here).
func TestReloadRemovesKeyNoDefaultDeny(t *testing.T) {
	path := tempPolicy(t, "p.yaml", "policies:\n  svc.A: {id: a}\n  svc.B: {id: b}\n")
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithMissingPolicyMode(recourse.FailureDeny))
	if err := e.Do(context.Background(), "svc.A", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "policies:\n  svc.B: {id: b}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	ran := false
	err := e.Do(context.Background(), "svc.A", func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, recourse.ErrNoPolicy) || ran {
		t.Errorf("removed key: err %v ran %v, want ErrNoPolicy and not run", err, ran)
	}
}

// While a reload is failing, calls carry policy_source "file:PATH (stale: …)"
// and the provider's error; after recovery the marker goes.
func TestTimelineStaleSource(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	ok := func(context.Context) error { return nil }
	tl1, _ := tl(t, e, "svc.B", ok)
	if src := tl1.Attributes[timeline.AttrPolicySource]; src != "file:"+path {
		t.Errorf("source %q, want file:%s", src, path)
	}
	writeFile(t, path, "policies:\n  svc.B: {retry: {jitter: sideways}}\n")
	fp.Reload()
	tl2, _ := tl(t, e, "svc.B", ok)
	src := tl2.Attributes[timeline.AttrPolicySource]
	if !strings.HasPrefix(src, "file:"+path+" (stale: ") || !strings.Contains(src, "sideways") {
		t.Errorf("stale source %q", src)
	}
	if tl2.PolicyID != "b-v1" {
		t.Errorf("policy id %q during a failed reload, want b-v1", tl2.PolicyID)
	}
	writeFile(t, path, goodV2)
	fp.Reload()
	tl3, _ := tl(t, e, "svc.B", ok)
	if src := tl3.Attributes[timeline.AttrPolicySource]; src != "file:"+path || tl3.PolicyID != "b-v2" {
		t.Errorf("after recovery source %q id %q", src, tl3.PolicyID)
	}
}

// The executor's observer gets OnPolicyReload for the provider's reloads.
func TestExecutorObserverGetsReloads(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	r := &rec{}
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithObserver(r))
	_ = e
	writeFile(t, path, "")
	fp.Reload()
	writeFile(t, path, goodV2)
	fp.Reload()
	rl := r.Reloads()
	if len(rl) != 2 || rl[0].Err == nil || rl[1].Err != nil || !errors.Is(rl[0].Err, policy.ErrNoPolicies) {
		t.Errorf("reloads %+v", rl)
	}
	if len(rl) == 2 && (rl[0].Version >= rl[1].Version || rl[0].Source != "file:"+path) {
		t.Errorf("reload versions/sources %+v", rl)
	}
}

// A breaker survives a reload that leaves its circuit section alone, and is
// rebuilt by one that changes it.
func TestBreakerAcrossReload(t *testing.T) {
	v1 := "policies:\n  svc.C:\n    id: c1\n    retry: {max_attempts: 1}\n    circuit: {enabled: true, consecutive_failures: 2, cooldown: 1m}\n"
	path := tempPolicy(t, "p.yaml", v1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	n := 0
	for i := 0; i < 2; i++ {
		e.Do(context.Background(), "svc.C", failing(&n))
	}
	if err := e.Do(context.Background(), "svc.C", failing(&n)); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("breaker not open: %v", err)
	}
	writeFile(t, path, strings.Replace(v1, "id: c1", "id: c2", 1))
	fp.Reload()
	if err := e.Do(context.Background(), "svc.C", failing(&n)); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Errorf("breaker state lost on a reload that kept the circuit section: %v", err)
	}
	writeFile(t, path, strings.Replace(v1, "consecutive_failures: 2", "consecutive_failures: 3", 1))
	fp.Reload()
	if err := e.Do(context.Background(), "svc.C", failing(&n)); errors.Is(err, middleware.ErrCircuitOpen) {
		t.Errorf("circuit section changed but the old open breaker stayed")
	}
}

// A failed reload must not reset a breaker either.
func TestBreakerSurvivesFailedReload(t *testing.T) {
	v1 := "policies:\n  svc.C:\n    retry: {max_attempts: 1}\n    circuit: {enabled: true, consecutive_failures: 2, cooldown: 1m}\n"
	path := tempPolicy(t, "p.yaml", v1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	n := 0
	e.Do(context.Background(), "svc.C", failing(&n))
	e.Do(context.Background(), "svc.C", failing(&n))
	writeFile(t, path, "garbage: [")
	fp.Reload()
	if err := e.Do(context.Background(), "svc.C", failing(&n)); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Errorf("breaker reset by a failed reload: %v", err)
	}
	writeFile(t, path, v1)
	fp.Reload() // recovery to the same content
	if err := e.Do(context.Background(), "svc.C", failing(&n)); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Errorf("breaker reset by recovery to the same content: %v", err)
	}
}

// Calls in flight while the file flips: every call runs wholly under one
// version, none errors from the churn, and the race detector stays quiet.
func TestCallsInFlightDuringReloads(t *testing.T) {
	mk := func(n int) string {
		return "policies:\n  svc.A:\n    id: v" + string(rune('0'+n)) + "\n    retry: {max_attempts: " + string(rune('0'+n)) + ", initial_backoff: 1ms, max_backoff: 1ms, jitter: none}\n"
	}
	path := tempPolicy(t, "p.yaml", mk(2))
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			replaceAtomically(t, path, mk(2+i%3))
			fp.Reload()
		}
	}()
	var bad atomic.Int64
	var calls sync.WaitGroup
	for g := 0; g < 8; g++ {
		calls.Add(1)
		go func() {
			defer calls.Done()
			for i := 0; i < 40; i++ {
				var n atomic.Int64
				tl, _ := e.DoWithTimeline(context.Background(), "svc.A", func(context.Context) error { n.Add(1); return errBoom })
				want := int64(tl.PolicyID[1] - '0')
				if n.Load() != want {
					bad.Add(1)
				}
			}
		}()
	}
	calls.Wait()
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d calls ran a number of tries other than their timeline's policy says", bad.Load())
	}
}

// New validates the provider's current set: names nothing resolves are all
// reported, with key, field and name, matching the sentinels.
func TestNewReportsEveryUnresolvedNameInFile(t *testing.T) {
	doc := `default:
  classifier: ghost-classifier
policies:
  a.b:
    budget: ghost-budget
    hedge: {enabled: true, delay: 5ms, trigger: p100, budget: ghost-hedges}
  c.d:
    hedge: {enabled: true, delay: 5ms, trigger: fancy}
`
	fp := newFP(t, tempPolicy(t, "p.yaml", doc))
	e, err := recourse.New(recourse.WithProvider(fp))
	if err == nil || e != nil {
		t.Fatalf("New = %v, %v; want an error and no executor", e, err)
	}
	s := err.Error()
	mustContainAll(t, "New", s, "ghost-classifier", "default", "ghost-budget", "a.b", "ghost-hedges", "hedge.budget", "p100", "hedge.trigger", "fancy", "c.d", "classifier")
	for _, sentinel := range []error{recourse.ErrNoBudget, recourse.ErrNoTrigger, recourse.ErrNoClassifier} {
		if !errors.Is(err, sentinel) {
			t.Errorf("New's error does not match %v", sentinel)
		}
	}
}

// New accepts names the file declares, built-in names and registered names.
func TestNewAcceptsResolvableNames(t *testing.T) {
	doc := `budgets:
  r: {kind: ratio, ratio: 0.1}
policies:
  a.b:
    budget: r
    hedge: {enabled: true, delay: 5ms, trigger: p99.9, budget: unlimited}
  c.d:
    hedge: {enabled: true, trigger: mine}
    classifier: cls
    budget: code
`
	fp := newFP(t, tempPolicy(t, "p.yaml", doc))
	_, err := recourse.New(recourse.WithProvider(fp),
		recourse.WithHedgeTrigger("mine", func(*hedgeTracker) hedgeTrigger { return nil }),
		recourse.WithClassifier("cls", middleware.DefaultClassifier),
		recourse.WithBudget("code", middleware.UnlimitedBudget{}))
	if err != nil {
		t.Errorf("New: %v", err)
	}
}

// WithPolicy: every invalid field of every policy is named.
func TestNewNamesEveryInvalidWithPolicyField(t *testing.T) {
	_, err := recourse.New(
		recourse.WithPolicy("a.b", policy.MaxAttempts(-1), policy.Backoff(-time.Second, time.Second, 2)),
		recourse.WithPolicy("c.d", policy.Jitter(policy.JitterKind(77)), policy.BudgetCost(-3)),
		recourse.WithPolicy("e.f", policy.WithHedge(policy.HedgePolicy{Enabled: true, Quantile: 1.5, Delay: time.Millisecond})),
		recourse.WithPolicy("g.h", policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, FailureRatio: 2})),
	)
	if err == nil {
		t.Fatal("New accepted invalid policies")
	}
	if !errors.Is(err, policy.ErrInvalid) {
		t.Error("not ErrInvalid")
	}
	mustContainAll(t, "New", err.Error(), "a.b", "retry.max_attempts", "retry.initial_backoff", "c.d", "retry.jitter", "77", "budget_cost", "e.f", "hedge.quantile", "g.h", "circuit.failure_ratio")
}

// WithPolicy naming unresolvable names: all reported.
func TestNewWithPolicyUnknownNames(t *testing.T) {
	_, err := recourse.New(
		recourse.WithPolicy("a.b", policy.WithBudget("nope1"), policy.WithClassifier("nope2"),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, Trigger: "nope3", Budget: "nope4"})),
	)
	if err == nil {
		t.Fatal("accepted")
	}
	mustContainAll(t, "New", err.Error(), "nope1", "nope2", "nope3", "nope4", "a.b")
}

// The fallback policy is validated when the missing-policy mode uses it.
func TestNewValidatesFallbackPolicy(t *testing.T) {
	_, err := recourse.New(recourse.WithFallbackPolicy(policy.MaxAttempts(-2)))
	if err == nil || !strings.Contains(err.Error(), "fallback") || !strings.Contains(err.Error(), "retry.max_attempts") {
		t.Errorf("fallback policy: %v", err)
	}
	if _, err := recourse.New(recourse.WithFallbackPolicy(policy.MaxAttempts(-2)), recourse.WithMissingPolicyMode(recourse.FailureDeny)); err != nil {
		t.Errorf("unused fallback policy rejected: %v", err)
	}
	// Fallback policy naming an unknown budget.
	_, err = recourse.New(recourse.WithFallbackPolicy(policy.WithBudget("ghost")))
	if err == nil || !errors.Is(err, recourse.ErrNoBudget) {
		t.Errorf("fallback naming a ghost budget: %v", err)
	}
}

// Observers get one PolicyProblem per unresolved name — all of them, not only one.
func TestObserverGetsEveryPolicyProblem(t *testing.T) {
	r := &rec{}
	e := recourse.NewExecutor(recourse.WithObserver(r),
		recourse.WithPolicy("a.b", policy.WithBudget("nb1"), policy.WithClassifier("nc"),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, Trigger: "nt", Budget: "nb2"})))
	e.Do(context.Background(), "a.b", func(context.Context) error { return nil })
	got := map[string]string{}
	for _, p := range r.Problems() {
		got[p.Field] = p.Name
		if p.Key != "a.b" || p.Err == nil || p.Mode == "" {
			t.Errorf("problem %+v incomplete", p)
		}
	}
	want := map[string]string{"budget": "nb1", "hedge.budget": "nb2", "hedge.trigger": "nt", "classifier": "nc"}
	for f, n := range want {
		if got[f] != n {
			t.Errorf("problem for %s: got %q want %q (all: %+v)", f, got[f], n, r.Problems())
		}
	}
	// Once per compile: a second call does not repeat them.
	before := len(r.Problems())
	e.Do(context.Background(), "a.b", func(context.Context) error { return nil })
	if len(r.Problems()) != before {
		t.Errorf("problems repeated on a cached key: %d -> %d", before, len(r.Problems()))
	}
}

// A key from a file naming a ghost classifier in deny mode is refused, loudly.
func TestMissingClassifierDenyFromFile(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  a.b: {classifier: ghost}\n"))
	r := &rec{}
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithObserver(r), recourse.WithMissingClassifierMode(recourse.FailureDeny))
	ran := false
	_, err := e.DoWithTimeline(context.Background(), "a.b", func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, recourse.ErrNoClassifier) || ran {
		t.Errorf("err %v ran %v", err, ran)
	}
	if len(r.Problems()) != 1 {
		t.Errorf("problems %+v", r.Problems())
	}
}

// In deny mode the refusal is explained in the timeline as in the other modes
// (classifier_error / trigger_error, like budget_error and missing_policy_mode),
// and the refused record does not look like a try that ran.
func TestMissingNameDenyExplainedInTimeline(t *testing.T) {
	for field, doc := range map[string]string{
		timeline.AttrClassifierError: "policies:\n  a.b: {classifier: ghost}\n",
		timeline.AttrTriggerError:    "policies:\n  a.b: {hedge: {enabled: true, delay: 5ms, trigger: ghost}}\n",
	} {
		fp := newFP(t, tempPolicy(t, "p.yaml", doc))
		e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithMissingClassifierMode(recourse.FailureDeny), recourse.WithMissingTriggerMode(recourse.FailureDeny))
		tl, err := e.DoWithTimeline(context.Background(), "a.b", func(context.Context) error { return nil })
		if err == nil || tl == nil {
			t.Fatalf("%s: err %v tl %v", field, err, tl)
		}
		if !strings.Contains(tl.Attributes[field], "ghost") {
			t.Errorf("%s missing in deny mode: %v", field, tl.Attributes)
		}
		for _, a := range tl.Attempts {
			if a.Reason == timeline.ReasonNonRetryable {
				t.Errorf("%s: refused call recorded as a try that ran (reason %q, outcome %v)", field, a.Reason, a.Outcome)
			}
		}
	}
}

// A ghost trigger in deny mode refuses; in fallback mode hedges on the delay and says so.
func TestMissingTriggerModes(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  a.b: {hedge: {enabled: true, delay: 5ms, trigger: p100}}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithMissingTriggerMode(recourse.FailureDeny))
	ran := false
	_, err := e.DoWithTimeline(context.Background(), "a.b", func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, recourse.ErrNoTrigger) || ran {
		t.Errorf("deny: err %v ran %v (p100 is not a built-in trigger)", err, ran)
	}
	e2 := recourse.NewExecutor(recourse.WithProvider(fp))
	tl, err := e2.DoWithTimeline(context.Background(), "a.b", func(context.Context) error { return nil })
	if err != nil || !strings.Contains(tl.Attributes[timeline.AttrTriggerError], "p100") {
		t.Errorf("fallback: err %v trigger_error %q", err, tl.Attributes[timeline.AttrTriggerError])
	}
}

// Every attribute the executor writes is one of the documented constants.
func TestTimelineAttributesAreDocumented(t *testing.T) {
	known := map[string]bool{
		timeline.AttrPolicySource: true, timeline.AttrPolicyNormalized: true, timeline.AttrPolicyClampedFields: true,
		timeline.AttrPolicyError: true, timeline.AttrMissingPolicyMode: true, timeline.AttrBudgetError: true,
		timeline.AttrTriggerError: true, timeline.AttrClassifierError: true,
	}
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  a.b: {budget: nb, classifier: nc, retry: {max_attempts: 50}, hedge: {enabled: true, delay: 1ms, trigger: nt}}\n  bad.k: {retry: {max_attempts: 1}}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	e2 := recourse.NewExecutor(recourse.WithMissingPolicyMode(recourse.FailureDeny), recourse.WithProvider(policy.NewStaticProvider()))
	var tls []*timeline.Timeline
	for _, k := range []string{"a.b", "zz.unknown"} {
		x, _ := e.DoWithTimeline(context.Background(), k, func(context.Context) error { return nil })
		tls = append(tls, x)
	}
	x, _ := e2.DoWithTimeline(context.Background(), "q.q", func(context.Context) error { return nil })
	tls = append(tls, x)
	for _, x := range tls {
		if x == nil {
			continue
		}
		for k := range x.Attributes {
			if !known[k] {
				t.Errorf("undocumented attribute %q = %q", k, x.Attributes[k])
			}
		}
	}
	if tls[0].Attributes[timeline.AttrPolicyNormalized] != "true" || !strings.Contains(tls[0].Attributes[timeline.AttrPolicyClampedFields], "retry.max_attempts") {
		t.Errorf("clamp attrs %v", tls[0].Attributes)
	}
}
