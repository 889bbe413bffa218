package config_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
)

type cliResult struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	if cliBin == "" {
		t.Skip("CLI did not build")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("recourse %v hung", args)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCLICheckValidSample(t *testing.T) {
	r := runCLI(t, "", "check", "../../../examples/policies.yaml")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	mustContainAll(t, "stdout", r.stdout, "payments.Charge", "inventory.Get", "pricing.Get", "hedges", "retries", "outage")
}

func TestCLICheckInvalidListsEveryError(t *testing.T) {
	p := tempPolicy(t, "bad.yaml", "budgets:\n  r: {kind: ratio, ratio: -0.5}\npolicies:\n  a.b: {retry: {max_attempts: -1}}\n  c.d: {retry: {jitter: sideways}, budget_cost: -2}\n")
	r := runCLI(t, "", "check", p)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	mustContainAll(t, "stderr", r.stderr, `budget "r"`, "ratio", "-0.5", "a.b", "retry.max_attempts", "-1", "c.d", "retry.jitter", "sideways", "budget_cost", "-2")
}

func TestCLICheckUnresolvedNamesAndExternal(t *testing.T) {
	p := tempPolicy(t, "names.yaml", "default:\n  budget: dflt\npolicies:\n  a.b: {budget: ghost, classifier: cls, hedge: {enabled: true, delay: 1ms, trigger: p100, budget: hb}}\n")
	r := runCLI(t, "", "check", p)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	mustContainAll(t, "stderr", r.stderr, "ghost", "cls", "p100", "hb", "dflt", "hedge.trigger", "hedge.budget", "classifier", "default")
	r = runCLI(t, "", "check", "--external", "ghost", "--external=cls", "--external", "p100", "--external", "hb", "--external=dflt", p)
	if r.code != 0 {
		t.Errorf("with --external: exit %d: %s", r.code, r.stderr)
	}
	mustContainAll(t, "stdout", r.stdout, "external")
}

func TestCLICheckRefusesNonRegularAndEmpty(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	writeFile(t, empty, "")
	comments := filepath.Join(dir, "c.yaml")
	writeFile(t, comments, "# a\n# b\n")
	for _, p := range []string{fifo, dir, empty, comments, filepath.Join(dir, "missing.yaml"), "/dev/zero", "/dev/null"} {
		r := runCLI(t, "", "check", p)
		if r.code != 1 || r.stderr == "" {
			t.Errorf("check %s: exit %d stderr %q", p, r.code, r.stderr)
		}
		if r.elapsed > 3*time.Second {
			t.Errorf("check %s took %v", p, r.elapsed)
		}
	}
}

func TestCLICheckOverCap(t *testing.T) {
	big := goodV1 + strings.Repeat("# "+strings.Repeat("z", 1021)+"\n", 4*1024+10)
	p := tempPolicy(t, "big.yaml", big)
	r := runCLI(t, "", "check", p)
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	mustContainAll(t, "stderr", r.stderr, fmt.Sprint(policy.DefaultMaxPolicyBytes), fmt.Sprint(len(big)))
}

func TestCLICheckJSONByExtension(t *testing.T) {
	p := tempPolicy(t, "p.json", `{"policies": {"a.b": {"retry": {"max_attempts": 2}}}}`)
	if r := runCLI(t, "", "check", p); r.code != 0 {
		t.Errorf("json: exit %d %s", r.code, r.stderr)
	}
	p2 := tempPolicy(t, "p.json", "policies:\n  a.b: {}\n")
	if r := runCLI(t, "", "check", p2); r.code != 1 {
		t.Errorf("YAML in a .json file: exit %d", r.code)
	}
	p3 := tempPolicy(t, "p.json", `{"policies": {"a.b": {}, "a.b": {}}}`)
	if r := runCLI(t, "", "check", p3); r.code != 1 || !strings.Contains(r.stderr, "a.b") {
		t.Errorf("dup JSON key: exit %d %s", r.code, r.stderr)
	}
}

func TestCLIExplain(t *testing.T) {
	r := runCLI(t, "", "explain", "../../../examples/policies.yaml", "payments.Charge")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	mustContainAll(t, "explain", r.stdout, "payments-v3", "hedge", "breaker", "p99")
	p := tempPolicy(t, "nodef.yaml", "policies:\n  a.b: {}\n")
	r = runCLI(t, "", "explain", p, "x.y")
	if r.code == 0 || !strings.Contains(r.stderr, "x.y") {
		t.Errorf("explain of a key the file lacks (no default): exit %d stderr %q", r.code, r.stderr)
	}
	// A key spelled differently but the same key (".x" vs "x") finds the policy.
	p2 := tempPolicy(t, "dot.yaml", "policies:\n  x: {id: the-x}\n")
	r = runCLI(t, "", "explain", p2, ".x")
	if r.code != 0 || !strings.Contains(r.stdout, "the-x") {
		t.Errorf("explain .x: exit %d out %q err %q", r.code, r.stdout, r.stderr)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"check"}, {"explain", "x.yaml"}, {"frobnicate"}, {"check", "a.yaml", "b.yaml"}, {"check", "--external"}} {
		r := runCLI(t, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "usage") {
			t.Errorf("%v: exit %d stderr %q", args, r.code, r.stderr)
		}
	}
}

func callLine(id string, dur float64, tries ...map[string]any) string {
	m := map[string]any{"level": "info", "event": "call", "key": "k.K", "call_id": id,
		"start": "2026-11-25T19:42:27.417639577Z", "duration_ms": dur, "outcome": "success",
		"attempts": len(tries), "timeline": tries, "message": "recourse call"}
	b, _ := json.Marshal(m)
	return string(b)
}

func try(attempt int, start, dur float64, outcome, reason string) map[string]any {
	m := map[string]any{"attempt": attempt, "hedge_index": 0, "start_ms": start, "duration_ms": dur, "outcome": outcome}
	if reason != "" {
		m["reason"] = reason
	}
	return m
}

// A try that succeeded in under half a microsecond is logged with duration_ms 0;
// the waterfall must not draw it with ×, the mark of a try refused before it ran.
func TestCLITimelineZeroDurationSuccessIsNotRefused(t *testing.T) {
	in := callLine("aaaa000000000001", 3, try(1, 0, 2, "retryable", ""), try(2, 3, 0, "success", "")) + "\n"
	r := runCLI(t, in, "timeline", "-")
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "#2") && strings.Contains(l, "×") {
			t.Errorf("successful try drawn as refused: %q", l)
		}
	}
}

// A refused try (budget_denied) is drawn with ×.
func TestCLITimelineRefusedTryMarked(t *testing.T) {
	in := callLine("aaaa000000000002", 3, try(1, 0, 2, "retryable", ""), try(2, 3, 0, "abort", "budget_denied")) + "\n"
	r := runCLI(t, in, "timeline", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "×") {
		t.Errorf("exit %d out %q", r.code, r.stdout)
	}
}

// A megabyte of non-JSON between two calls: both calls drawn, the line counted.
func TestCLITimelineLongGarbageLine(t *testing.T) {
	in := callLine("aaaa000000000003", 5, try(1, 0, 5, "success", "")) + "\n" +
		strings.Repeat("x", 1<<20) + "\n" +
		callLine("aaaa000000000004", 5, try(1, 0, 5, "success", "")) + "\n"
	r := runCLI(t, in, "timeline", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "aaaa000000000003") || !strings.Contains(r.stdout, "aaaa000000000004") {
		t.Errorf("exit %d out %q err %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "not JSON") {
		t.Errorf("garbage line not counted: %q", r.stderr)
	}
}

// Hostile numbers (huge attempt numbers, 1e308 durations, negatives) neither
// crash nor allocate wildly, and nothing drawable means exit 1.
func TestCLITimelineHostileNumbers(t *testing.T) {
	in := callLine("c1", 5, map[string]any{"attempt": 500000000, "hedge_index": 500000000, "start_ms": 0, "duration_ms": 5, "outcome": "success"}) + "\n" +
		callLine("c2", 1e308, map[string]any{"attempt": 1, "hedge_index": 0, "start_ms": 1e308, "duration_ms": 1e308, "outcome": "success", "backoff_ms": 1e308}) + "\n" +
		callLine("c3", -5, map[string]any{"attempt": 1, "hedge_index": 0, "start_ms": -100, "duration_ms": -3, "outcome": "success"}) + "\n"
	r := runCLI(t, in, "timeline", "-svg", filepath.Join(t.TempDir(), "o.svg"), "-")
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("crashed: %s", r.stderr)
	}
	if r.elapsed > 3*time.Second {
		t.Errorf("took %v", r.elapsed)
	}
}

func TestCLITimelineNothingToDraw(t *testing.T) {
	r := runCLI(t, "hello\n{\"event\":\"other\"}\n", "timeline", "-")
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	r = runCLI(t, "", "timeline", filepath.Join(t.TempDir(), "none.log"))
	if r.code != 1 {
		t.Errorf("missing file: exit %d", r.code)
	}
}

// Many calls: 5k call lines are drawn in reasonable time.
func TestCLITimelineManyCalls(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 5000; i++ {
		b.WriteString(callLine(fmt.Sprintf("%016x", i), 5, try(1, 0, 5, "success", "")))
		b.WriteByte('\n')
	}
	p := filepath.Join(t.TempDir(), "many.log")
	os.WriteFile(p, []byte(b.String()), 0o644)
	r := runCLI(t, "", "timeline", p)
	if r.code != 0 || strings.Count(r.stdout, "(call ") != 5000 {
		t.Errorf("exit %d calls drawn %d", r.code, strings.Count(r.stdout, "(call "))
	}
}
