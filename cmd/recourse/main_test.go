package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPrintsEveryKeysChain(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check", "../../examples/policies.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	got := out.String()
	for _, want := range []string{
		"payments.Charge", "inventory.Get", "default (for keys the file does not name)",
		"1. observe", "2. overall_timeout  2s", "3. retry", "4. breaker", "5. hedge", "6. budget", "7. attempt_timeout  800ms", "8. classify",
		"trigger=p99 of the key's latencies", "failure_ratio=0.5",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// Stages appear numbered in the chain's order for payments.Charge.
	section := got[strings.Index(got, "payments.Charge"):]
	section = section[:strings.Index(section, "\n\n")]
	for i, stage := range []string{"observe", "overall_timeout", "retry", "breaker", "hedge", "budget", "attempt_timeout", "classify"} {
		if !strings.Contains(section, fmt.Sprintf("%d. %s ", i+1, stage)) {
			t.Fatalf("stage %d is not %s:\n%s", i+1, stage, section)
		}
	}
}

func TestCheckBrokenFileFailsNamingKeyFieldValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(path, []byte("policies:\n  ok.Key: {retry: {max_attempts: 2}}\n  bad.Key: {retry: {initial_backoff: soon}}\n"), 0o644)
	var out, errb bytes.Buffer
	code := run([]string{"check", path}, &out, &errb)
	if code == 0 {
		t.Fatal("exit 0 on a broken file")
	}
	if !strings.Contains(errb.String(), `policy "bad.Key": retry.initial_backoff = "soon"`) {
		t.Fatalf("stderr = %s", errb.String())
	}
}

func TestExplainOneKey(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"explain", "../../examples/policies.yaml", "payments.Charge"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "id: payments-v3") || strings.Contains(out.String(), "inventory.Get") {
		t.Fatalf("output:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"explain", "../../examples/policies.yaml", "unknown.Key"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "from the default section") {
		t.Fatalf("exit %d output:\n%s", code, out.String())
	}
	if code := run([]string{"explain"}, &out, &errb); code != 2 {
		t.Fatalf("usage exit %d", code)
	}
}
