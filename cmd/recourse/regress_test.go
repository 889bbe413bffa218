package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
)

// runBounded runs the command, failing the test if it does not return
// within 10s (a read that blocks, on a FIFO say).
func runBounded(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		c := run(args, &out, &errb)
		done <- result{c, out.String(), errb.String()}
	}()
	select {
	case r := <-done:
		return r.code, r.out, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("recourse %v did not return", args)
	}
	return 0, "", ""
}

func TestRegressEmptyFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty.yaml":    "",
		"comments.yaml": "# nothing here\n",
		"empty.json":    "",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"check", path}, {"explain", path, "a.b"}} {
			code, out, stderr := runBounded(t, args...)
			if code != 1 || !strings.Contains(stderr, policy.ErrNoPolicies.Error()) || strings.Contains(out, "valid") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, stderr)
			}
		}
	}
}

func TestRegressFileOverTheCapIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	// A valid document padded with a comment past the cap.
	doc := "policies:\n  a.b: {retry: {max_attempts: 2}}\n#" + strings.Repeat("x", policy.DefaultMaxPolicyBytes) + "\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", path}, {"explain", path, "a.b"}} {
		code, _, stderr := runBounded(t, args...)
		if code != 1 || !strings.Contains(stderr, "over the cap") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestRegressDirectoryIsAnError(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runBounded(t, "check", dir)
	if code != 1 || !strings.Contains(stderr, "not a regular file") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestRegressMissingFileIsAnError(t *testing.T) {
	code, _, stderr := runBounded(t, "check", filepath.Join(t.TempDir(), "nope.yaml"))
	if code != 1 || !strings.Contains(stderr, "nope.yaml") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
