package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/middleware"
)

const budgetsYAML = `
budgets:
  retries: {kind: ratio, ratio: 0.1, min_per_second: 1, window: 10s}
  hedges:  {kind: token_bucket, capacity: 50, refill_per_second: 10}
  outage:  {kind: throttle, max_tokens: 10, token_ratio: 0.1}
policies:
  payments.Charge: {budget: retries}
`

const budgetsJSON = `{
  "budgets": {
    "retries": {"kind": "ratio", "ratio": 0.1, "min_per_second": 1, "window": "10s"},
    "hedges":  {"kind": "token_bucket", "capacity": 50, "refill_per_second": 10},
    "outage":  {"kind": "throttle", "max_tokens": 10, "token_ratio": 0.1}
  },
  "policies": {"payments.Charge": {"budget": "retries"}}
}`

func TestBudgetsSectionParsesInYAMLAndJSON(t *testing.T) {
	want := map[string]BudgetSpec{
		"retries": {Kind: "ratio", Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second},
		"hedges":  {Kind: "token_bucket", Capacity: 50, RefillPerSecond: 10},
		"outage":  {Kind: "throttle", MaxTokens: 10, TokenRatio: 0.1},
	}
	for _, tc := range []struct {
		name   string
		data   string
		format Format
	}{{"yaml", budgetsYAML, YAML}, {"json", budgetsJSON, JSON}} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Parse([]byte(tc.data), tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Budgets) != len(want) {
				t.Fatalf("budgets = %+v", set.Budgets)
			}
			for name, w := range want {
				if got := set.Budgets[name]; got != w {
					t.Errorf("%s = %+v, want %+v", name, got, w)
				}
			}
		})
	}
}

func TestBudgetSpecBuildsTheMiddlewareBudgets(t *testing.T) {
	clk := clock.Real{}
	cases := []struct {
		spec   BudgetSpec
		want   string  // the concrete type built
		tokens float64 // what TokenReporter says, if it is one
	}{
		{BudgetSpec{Kind: "ratio", Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second}, "*middleware.ratioBudget", -1},
		{BudgetSpec{Kind: "token_bucket", Capacity: 50, RefillPerSecond: 10}, "*middleware.tokenBucketBudget", 50},
		{BudgetSpec{Kind: "throttle", MaxTokens: 10, TokenRatio: 0.1}, "*middleware.throttleBudget", 10},
	}
	for _, c := range cases {
		b, err := c.spec.Build(clk)
		if err != nil {
			t.Fatalf("%+v: %v", c.spec, err)
		}
		if got := fmt.Sprintf("%T", b); got != c.want {
			t.Errorf("%s built %s, want %s", c.spec.Kind, got, c.want)
		}
		if r, ok := b.(middleware.TokenReporter); ok != (c.tokens >= 0) || (ok && r.Tokens() != c.tokens) {
			t.Errorf("%s: TokenReporter %v", c.spec.Kind, ok)
		}
	}
	// A ratio budget with no floor and nothing counted refuses a retry:
	// min_per_second 0 means no floor, not the constructor's default of 1.
	b, err := BudgetSpec{Kind: "ratio", Ratio: 0.5}.Build(clk)
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: 1}); d.Allowed {
		t.Fatalf("ratio budget without floor allowed a retry before any first try: %+v", d)
	}
}

func TestBudgetSpecValidationNamesBudgetFieldValue(t *testing.T) {
	cases := []struct {
		yaml string
		want []string
	}{
		{`{kind: leaky}`, []string{`budget "b": kind = "leaky": unknown kind (want ratio, token_bucket or throttle)`}},
		{`{ratio: 0.1}`, []string{`budget "b": kind = "": `}},
		{`{kind: ratio, ratio: -0.5}`, []string{`budget "b": ratio = -0.5: must be above 0`}},
		{`{kind: ratio, ratio: .nan}`, []string{`budget "b": ratio = NaN:`}},
		{`{kind: ratio, ratio: 0.1, window: -1s}`, []string{`budget "b": window = -1s:`}},
		{`{kind: token_bucket, capacity: 0, refill_per_second: 1}`, []string{`budget "b": capacity = 0: must be at least 1`}},
		{`{kind: token_bucket, capacity: 5, refill_per_second: -1}`, []string{`budget "b": refill_per_second = -1: must not be negative`}},
		{`{kind: throttle, max_tokens: 2000, token_ratio: 0.1}`, []string{`budget "b": max_tokens = 2000:`}},
		{`{kind: throttle, max_tokens: 10}`, []string{`budget "b": token_ratio = 0:`}},
		{`{kind: ratio, ratio: 0.1, capacity: 3}`, []string{`budget "b": capacity = 3: not a field of kind ratio (want ratio, min_per_second, window)`}},
		{`{kind: ratio, ratio: 0.1, burst: 3}`, []string{`budget "b": burst = 3: unknown field`}},
		// every error of a budget, not only the first
		{`{kind: token_bucket, capacity: -1, refill_per_second: .nan}`, []string{`capacity = -1`, `refill_per_second = NaN`}},
		{`5`, []string{`budget "b": budget = 5: must be a mapping of fields`}},
	}
	for _, c := range cases {
		_, err := Parse([]byte("budgets:\n  b: "+c.yaml+"\npolicies:\n  a.b: {}\n"), YAML)
		if err == nil {
			t.Errorf("%s: no error", c.yaml)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", c.yaml, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.yaml, err, w)
			}
		}
	}
	// The same rules hold for a BudgetSpec built in Go.
	if _, err := (BudgetSpec{Kind: "ratio", Ratio: math.NaN()}).Build(nil); err == nil || !strings.Contains(err.Error(), "ratio = NaN") {
		t.Errorf("Build(NaN ratio) = %v", err)
	}
	if _, err := (BudgetSpec{Kind: "token_bucket"}).Build(nil); err == nil || !strings.Contains(err.Error(), "capacity = 0") {
		t.Errorf("Build(zero capacity) = %v", err)
	}
}

func TestBudgetsSectionRejectsBadShapesAndNames(t *testing.T) {
	for _, doc := range []string{
		"budgets: [a]\npolicies: {a.b: {}}\n",
		"budgets: {unlimited: {kind: throttle, max_tokens: 10, token_ratio: 0.1}}\npolicies: {a.b: {}}\n",
		"budgets: {'': {kind: throttle, max_tokens: 10, token_ratio: 0.1}}\npolicies: {a.b: {}}\n",
	} {
		if _, err := Parse([]byte(doc), YAML); err == nil {
			t.Errorf("%q: no error", doc)
		}
	}
	// Duplicate budget names are the parser's: rejected in both formats.
	if _, err := Parse([]byte(`{"budgets": {"a": {"kind": "throttle"}, "a": {"kind": "throttle"}}, "policies": {"a.b": {}}}`), JSON); err == nil || !strings.Contains(err.Error(), `duplicate key "a"`) {
		t.Errorf("duplicate budget: %v", err)
	}
	// A file with only budgets declares no policies.
	if _, err := Parse([]byte("budgets: {a: {kind: throttle, max_tokens: 1, token_ratio: 1}}\n"), YAML); !errors.Is(err, ErrNoPolicies) {
		t.Errorf("budgets only: %v", err)
	}
}

// The file provider builds the declared budgets and keeps each instance
// (its state) across reloads that leave its declaration alone; a reload
// that changes it replaces it.
func TestFileProviderBudgetsSurviveUnchangedReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(budgetsYAML)
	fp, err := NewFileProvider(path, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	var src BudgetSource = fp
	hedges, ok := src.Budget("hedges")
	retries, ok2 := src.Budget("retries")
	if !ok || !ok2 {
		t.Fatal("declared budgets not served")
	}
	if _, ok := src.Budget("nope"); ok {
		t.Fatal("undeclared budget served")
	}
	if _, ok := src.Budget(BudgetUnlimited); ok {
		t.Fatal("the built-in unlimited is the executor's, not the file's")
	}
	// Drain a token: state to keep.
	hedges.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: 1})
	v := fp.Version()
	write(strings.Replace(budgetsYAML, "ratio: 0.1, min", "ratio: 0.2, min", 1) + "  other.Key: {}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if fp.Version() == v {
		t.Fatal("version unchanged by a reload")
	}
	h2, _ := fp.Budget("hedges")
	r2, _ := fp.Budget("retries")
	if h2 != hedges {
		t.Error("an unchanged budget was rebuilt (its state lost)")
	}
	if r2 == retries {
		t.Error("a changed budget was kept")
	}
	if got := fp.Set().Budgets["retries"].Ratio; got != 0.2 {
		t.Errorf("Set().Budgets[retries].Ratio = %v", got)
	}
	// A failed reload keeps the budgets in service.
	write("budgets: {hedges: {kind: nope}}\npolicies: {a.b: {}}\n")
	if err := fp.Reload(); err == nil {
		t.Fatal("bad file loaded")
	}
	if h3, ok := fp.Budget("hedges"); !ok || h3 != hedges {
		t.Error("a failed reload dropped a budget")
	}
	// A reload that removes a budget removes it.
	write("policies: {a.b: {}}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := fp.Budget("hedges"); ok {
		t.Error("a removed budget is still served")
	}
}

// Both reloading providers serve their file's budgets.
var (
	_ BudgetSource = (*FileProvider)(nil)
	_ BudgetSource = (*RemoteProvider)(nil)
)

// Whatever Parse accepts in a budgets section builds: validation in the
// parser and in BudgetSpec.Build are one.
func FuzzParseBudgets(f *testing.F) {
	f.Add([]byte(budgetsYAML), false)
	f.Add([]byte(budgetsJSON), true)
	f.Add([]byte("budgets: {b: {kind: ratio, ratio: 1e308, window: 1ns}}\npolicies: {a.b: {}}\n"), false)
	f.Add([]byte("budgets: {b: {kind: throttle, max_tokens: .inf, token_ratio: -0}}\npolicies: {a.b: {}}\n"), false)
	f.Add([]byte(`{"budgets": {"b": {"kind": "token_bucket", "capacity": 2147483647, "refill_per_second": 1e-300}}, "policies": {"a.b": {}}}`), true)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		format := YAML
		if isJSON {
			format = JSON
		}
		set, err := Parse(data, format)
		if err != nil {
			return
		}
		for name, s := range set.Budgets {
			b, err := s.Build(nil)
			if err != nil || b == nil {
				t.Fatalf("Parse accepted budget %q = %+v, Build says %v", name, s, err)
			}
			b.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: 1})
		}
	})
}
