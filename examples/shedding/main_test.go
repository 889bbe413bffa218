package main

import (
	"regexp"
	"testing"

	"github.com/recourse-go/recourse/examples/internal/demotest"
)

// The example runs, every call succeeds, and the server shed some tries
// without ever running more than its bulkhead allows.
func TestShedding(t *testing.T) {
	out := demotest.CaptureStdout(t, main)
	t.Log("\n" + out)
	m := regexp.MustCompile(`(\d+) of 6 calls succeeded; the server shed (\d+) tries .* served (\d+), never more than (\d+) at once`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("summary line missing:\n%s", out)
	}
	if m[1] != "6" || m[2] == "0" || m[3] != "6" || (m[4] != "1" && m[4] != "2") {
		t.Fatalf("succeeded %s, shed %s, served %s, peak %s; want 6, >0, 6, ≤2", m[1], m[2], m[3], m[4])
	}
	if !regexp.MustCompile(`503 SERVICE UNAVAILABLE, waited 1s|503.*waited 1s`).MatchString(out) {
		t.Errorf("no try shows the 1s Retry-After wait:\n%s", out)
	}
}
