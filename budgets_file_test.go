package recourse

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// The sample file, loaded exactly as the README shows, retries
// payments.Charge with nothing registered in code: the budgets it names
// are declared in it.
func TestSamplePolicyFileRetriesAsWritten(t *testing.T) {
	fp, err := policy.NewFileProvider("examples/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	exec := NewExecutor(WithProvider(fp))
	var tries atomic.Int32
	tl, err := exec.DoWithTimeline(context.Background(), "payments.Charge", func(context.Context) error {
		tries.Add(1)
		return errFlaky
	})
	if err == nil {
		t.Fatal("a failing op succeeded")
	}
	if tries.Load() < 2 {
		t.Fatalf("payments.Charge tried %d time(s), want ≥ 2; timeline %v", tries.Load(), tl)
	}
	if e, ok := tl.Attributes[timeline.AttrBudgetError]; ok {
		t.Fatalf("budget_error = %q", e)
	}
	for _, a := range tl.Attempts {
		if a.Reason == timeline.ReasonBudgetDenied {
			t.Fatalf("a try was denied by a budget: %v", tl)
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Resolution order: WithBudget, then the provider's declared budgets, then
// the built-in "unlimited", else the missing-budget mode.
func TestDeclaredBudgetsResolutionOrder(t *testing.T) {
	path := t.TempDir() + "/p.yaml"
	writeFile(t, path, `
budgets:
  empty: {kind: token_bucket, capacity: 1, refill_per_second: 0}
  clash: {kind: token_bucket, capacity: 1, refill_per_second: 0}
policies:
  use.Declared: {budget: empty, retry: {max_attempts: 4, initial_backoff: 1ms, max_backoff: 1ms}}
  use.Clash: {budget: clash, retry: {max_attempts: 4, initial_backoff: 1ms, max_backoff: 1ms}}
  use.Unlimited: {budget: unlimited, retry: {max_attempts: 4, initial_backoff: 1ms, max_backoff: 1ms}}
  use.Missing: {budget: nope, retry: {max_attempts: 4, initial_backoff: 1ms, max_backoff: 1ms}}
`)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	e := NewExecutor(WithProvider(fp), WithBudget("clash", middleware.UnlimitedBudget{}))
	for key, want := range map[string]int32{
		"use.Declared":  2, // one token: one retry
		"use.Clash":     4, // the code-registered budget wins
		"use.Unlimited": 4,
		"use.Missing":   1, // missing-budget mode: deny
	} {
		var calls atomic.Int32
		tl, _ := e.DoWithTimeline(context.Background(), key, failTimes(10, &calls))
		if calls.Load() != want {
			t.Errorf("%s: %d tries, want %d; %v", key, calls.Load(), want, tl)
		}
		if got := tl.Attributes[timeline.AttrBudgetError]; (key == "use.Missing") != (got != "") {
			t.Errorf("%s: budget_error = %q", key, got)
		}
	}
}

// A reload that changes a declared budget replaces it; one that does not
// keeps it, with its state.
func TestDeclaredBudgetsAcrossReloads(t *testing.T) {
	path := t.TempDir() + "/p.yaml"
	const pol = "policies:\n  svc.Op: {budget: b, retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}}\n"
	writeFile(t, path, "budgets:\n  b: {kind: token_bucket, capacity: 2, refill_per_second: 0}\n"+pol)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	e := NewExecutor(WithProvider(fp))
	do := func() int32 {
		var calls atomic.Int32
		_ = e.Do(context.Background(), "svc.Op", failTimes(10, &calls))
		return calls.Load()
	}
	if n := do(); n != 3 { // two tokens: two retries
		t.Fatalf("first call: %d tries", n)
	}
	// A reload that leaves the budget alone keeps it empty.
	writeFile(t, path, "budgets:\n  b: {kind: token_bucket, capacity: 2, refill_per_second: 0}\n"+pol+"  other.Op: {}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := do(); n != 1 {
		t.Fatalf("after an unrelated reload: %d tries, want 1 (the budget's state kept)", n)
	}
	// A reload that changes it gives a fresh one.
	writeFile(t, path, "budgets:\n  b: {kind: token_bucket, capacity: 1, refill_per_second: 0}\n"+pol)
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := do(); n != 2 {
		t.Fatalf("after changing the budget: %d tries, want 2", n)
	}
}

// Every missing budget is reported, not only the last one resolved.
func TestAllMissingBudgetsReported(t *testing.T) {
	e := NewExecutor(WithPolicy("svc.Op", policy.MaxAttempts(2), noWait(), policy.WithBudget("r"),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 50e6, Budget: "h"})))
	var calls atomic.Int32
	tl, _ := e.DoWithTimeline(context.Background(), "svc.Op", failTimes(10, &calls))
	got := tl.Attributes[timeline.AttrBudgetError]
	if !strings.Contains(got, `"r"`) || !strings.Contains(got, `"h"`) {
		t.Fatalf("budget_error = %q, want both r and h", got)
	}
}
