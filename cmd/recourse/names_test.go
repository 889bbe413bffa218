package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePolicyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const undeclared = `
budgets:
  retries: {kind: ratio, ratio: 0.1, min_per_second: 1}
default:
  classifier: grpc
policies:
  a.B:
    budget: retries
    hedge: {enabled: true, delay: 10ms, budget: hedges, trigger: fast}
  c.D:
    budget: unlimited
    hedge: {enabled: true, trigger: p99.9}
    classifier: http
  e.F:
    budget: nope
    classifier: http
`

// A file naming a budget, trigger or classifier that is neither declared
// nor built in fails the check, naming key, field and name.
func TestCheckFailsOnUndeclaredNames(t *testing.T) {
	path := writePolicyFile(t, undeclared)
	code, out, errs := runBounded(t, "check", path)
	if code == 0 {
		t.Fatalf("exit 0; stdout:\n%s", out)
	}
	for _, want := range []string{
		`policy "a.B": hedge.budget = "hedges": `,
		`policy "a.B": hedge.trigger = "fast": `,
		`policy "c.D": classifier = "http": `,
		`policy "default": classifier = "grpc": `,
		`policy "e.F": budget = "nope": no such budget`,
		"--external",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	for _, not := range []string{`= "retries"`, `= "unlimited"`, `= "p99.9"`} {
		if strings.Contains(errs, not) {
			t.Errorf("stderr blames %s, which is declared or built in:\n%s", not, errs)
		}
	}
	if strings.Contains(out, "valid") && !strings.Contains(out, "invalid") {
		t.Errorf("stdout says valid:\n%s", out)
	}
}

// --external accepts names registered in code, and each key's needs are
// printed with where each name comes from.
func TestCheckExternalNamesAndNeeds(t *testing.T) {
	path := writePolicyFile(t, undeclared)
	code, out, errs := runBounded(t, "check", "--external", "hedges", "--external=fast", path, "--external", "http", "-external", "grpc", "--external", "nope")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		`budget "retries" (declared in the file: ratio)`,
		`hedge.budget "hedges" (external: registered in code)`,
		`hedge.trigger "fast" (external: registered in code)`,
		`budget "unlimited" (built in)`,
		`hedge.trigger "p99.9" (built in: latency quantile 0.999)`,
		`classifier "http" (external: registered in code)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := runBounded(t, "check", "--external"); code != 2 {
		t.Errorf("--external without a name: exit %d, want 2", code)
	}
}

// The sample file is self-contained: check passes with no --external.
func TestCheckSampleIsSelfContained(t *testing.T) {
	code, out, errs := runBounded(t, "check", "../../examples/policies.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{`budget "retries" (declared in the file: ratio)`, `hedge.budget "hedges" (declared in the file: token_bucket)`,
		`hedge.trigger "p90" (built in`, "budgets declared: hedges (token_bucket), outage (throttle), retries (ratio)"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}
