//go:build unix

package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A FIFO is refused at once, for check and explain, instead of blocking
// on a read no writer will ever answer.
func TestRegressFIFOIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, args := range [][]string{{"check", path}, {"explain", path, "a.b"}} {
		code, _, stderr := runBounded(t, args...)
		if code != 1 || !strings.Contains(stderr, "not a regular file") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}
