package config_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// ForceOpen survives a reload that changes the key's circuit section.
func TestForceOpenSurvivesFileReload(t *testing.T) {
	mk := func(n string) string {
		return "policies:\n  f.K: {retry: {max_attempts: 1}, circuit: {enabled: true, consecutive_failures: " + n + "}}\n"
	}
	path := tempPolicy(t, "p.yaml", mk("5"))
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	e.Breaker("f.K").ForceOpen()
	writeFile(t, path, mk("6"))
	fp.Reload()
	if err := e.Do(context.Background(), "f.K", okOp); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Errorf("forced-open breaker released by a reload: %v", err)
	}
	e.Breaker("f.K").Reset()
	if err := e.Do(context.Background(), "f.K", okOp); err != nil {
		t.Errorf("after Reset: %v", err)
	}
}

// WithPolicy keeps precedence over the file across reloads.
func TestWithPolicyWinsAcrossReload(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithPolicy("svc.A", policy.WithID("code"), policy.MaxAttempts(1)))
	writeFile(t, path, goodV2)
	fp.Reload()
	tl, _ := e.DoWithTimeline(context.Background(), "svc.A", okOp)
	if tl.PolicyID != "code" || tl.Attributes[timeline.AttrPolicySource] != "static" {
		t.Errorf("id %q source %q", tl.PolicyID, tl.Attributes[timeline.AttrPolicySource])
	}
}

// A reload that introduces an unresolvable name reports it (once per compile).
func TestReloadIntroducingGhostNameIsReported(t *testing.T) {
	path := tempPolicy(t, "p.yaml", "policies:\n  g.K: {retry: {max_attempts: 1}}\n")
	fp := newFP(t, path)
	r := &rec{}
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithObserver(r))
	e.Do(context.Background(), "g.K", okOp)
	if len(r.Problems()) != 0 {
		t.Fatalf("problems before: %+v", r.Problems())
	}
	writeFile(t, path, "policies:\n  g.K: {retry: {max_attempts: 1}, budget: phantom}\n")
	fp.Reload()
	tl, _ := e.DoWithTimeline(context.Background(), "g.K", okOp)
	ps := r.Problems()
	if len(ps) != 1 || ps[0].Name != "phantom" || ps[0].Field != "budget" || !errors.Is(ps[0].Err, recourse.ErrNoBudget) {
		t.Errorf("problems %+v", ps)
	}
	if !strings.Contains(tl.Attributes[timeline.AttrBudgetError], "phantom") {
		t.Errorf("budget_error %q", tl.Attributes[timeline.AttrBudgetError])
	}
}

// A budget error on reload names the budget, the field and the value.
func TestReloadBudgetErrorNamesBudgetFieldValue(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	writeFile(t, path, strings.Replace(goodV1, "refill_per_second: 0", "refill_per_second: -3.5", 1))
	err := fp.Reload()
	if err == nil {
		t.Fatal("accepted")
	}
	mustContainAll(t, "budget error", err.Error(), `budget "bucket"`, "refill_per_second", "-3.5")
	if !errors.Is(err, policy.ErrInvalid) {
		t.Error("not ErrInvalid")
	}
	var fe *policy.FieldError
	if !errors.As(err, &fe) || fe.Key != "bucket" || fe.Field != "refill_per_second" {
		t.Errorf("FieldError %+v", fe)
	}
}

// Every FieldError of a multi-error reload can be extracted, one per problem.
func TestParseEveryErrorIsAFieldError(t *testing.T) {
	_, err := policy.Parse([]byte("budgets:\n  r: {kind: ratio, ratio: -1}\npolicies:\n  a.b: {retry: {max_attempts: -1, jitter: x}}\n  c.d: {budget_cost: -2}\n"), policy.YAML)
	var leaves []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		leaves = append(leaves, e)
	}
	walk(err)
	if len(leaves) != 4 {
		t.Errorf("%d leaf errors, want 4: %v", len(leaves), err)
	}
	for _, l := range leaves {
		var fe *policy.FieldError
		if !errors.As(l, &fe) || fe.Key == "" || fe.Field == "" || fe.Value == "" {
			t.Errorf("leaf %v is not a complete FieldError", l)
		}
	}
}

// CLI explain honours --external too.
func TestCLIExplainExternal(t *testing.T) {
	p := tempPolicy(t, "p.yaml", "policies:\n  a.b: {budget: code-budget}\n")
	if r := runCLI(t, "", "explain", p, "a.b"); r.code != 1 {
		t.Errorf("explain without --external: exit %d", r.code)
	}
	if r := runCLI(t, "", "explain", "--external", "code-budget", p, "a.b"); r.code != 0 || !strings.Contains(r.stdout, "external") {
		t.Errorf("explain with --external: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// A policy key literally named "default" is not confused with the default section.
func TestKeyNamedDefault(t *testing.T) {
	ps, err := policy.Parse([]byte("default: {id: the-default-section}\npolicies:\n  default: {id: the-key}\n"), policy.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if p := ps.Policies[policy.ParseKey("default")]; p.ID != "the-key" {
		t.Errorf("key 'default' id %q", p.ID)
	}
	if ps.Default == nil || ps.Default.ID != "the-default-section" {
		t.Errorf("default section %+v", ps.Default)
	}
}

// The same policy spelled in a file and built in Go normalizes the same, and
// reports the same clamped fields.
func TestFileAndGoNormalizeAlike(t *testing.T) {
	ps, err := policy.Parse([]byte("policies:\n  a.b: {retry: {initial_backoff: 2s}}\n  e.f: {retry: {max_backoff: 1ms}}\n"), policy.YAML)
	if err != nil {
		t.Fatal(err)
	}
	goPols := map[string]policy.Policy{
		"a.b": policy.New("a.b", func(p *policy.Policy) { p.Retry.InitialBackoff = 2e9 }),
		"e.f": policy.New("e.f", func(p *policy.Policy) { p.Retry.MaxBackoff = 1e6 }),
	}
	for k, gp := range goPols {
		fn, fc := ps.Policies[policy.ParseKey(k)].Normalize()
		gn, gc := gp.Normalize()
		if fn.Retry != gn.Retry || strings.Join(fc, ",") != strings.Join(gc, ",") {
			t.Errorf("%s: file %+v %v vs go %+v %v", k, fn.Retry, fc, gn.Retry, gc)
		}
	}
}

// Explain says why a key's calls are refused.
func TestExplainGivesRefusalReason(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  a.b: {classifier: ghost}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithMissingClassifierMode(recourse.FailureDeny))
	_, err := e.Explain(context.Background(), "a.b")
	if !errors.Is(err, recourse.ErrNoClassifier) || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("Explain err %v", err)
	}
	e2 := recourse.NewExecutor(recourse.WithProvider(policy.NewStaticProvider()), recourse.WithMissingPolicyMode(recourse.FailureDeny))
	if _, err := e2.Explain(context.Background(), "n.p"); !errors.Is(err, recourse.ErrNoPolicy) {
		t.Errorf("Explain of a denied missing policy: %v", err)
	}
}
