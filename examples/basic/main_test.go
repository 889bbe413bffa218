package main

import (
	"strings"
	"testing"

	"github.com/recourse-go/recourse/examples/internal/demotest"
)

// Piped into another program, the demo writes no ANSI escapes.
func TestOutputHasNoEscapesWhenPiped(t *testing.T) {
	out := demotest.CaptureStdout(t, main)
	if i := strings.IndexByte(out, 0x1b); i >= 0 {
		t.Fatalf("ANSI escape at byte %d of the piped output:\n%s", i, out)
	}
	for _, want := range []string{"WRN recourse attempt", "INF recourse call", "duration_ms=", "== inventory.Get"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
