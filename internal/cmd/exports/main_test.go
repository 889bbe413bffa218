package main

import (
	"os"
	"strings"
	"testing"
)

// TestSurfaceMatchesAPIFile fails when the module's exported identifiers
// differ from api.txt, naming what was added and what was removed. Change
// the API on purpose, then write api.txt anew (see the package comment).
func TestSurfaceMatchesAPIFile(t *testing.T) {
	names, counts, err := surface("../../..")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("api.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if !strings.Contains(l, " total ") { // not the summary line
			want[l] = true
		}
	}
	got := map[string]bool{}
	for _, n := range names {
		got[n] = true
		if !want[n] {
			t.Errorf("added to the public API, not in api.txt: %s", n)
		}
	}
	for n := range want {
		if !got[n] {
			t.Errorf("removed from the public API, still in api.txt: %s", n)
		}
	}
	if t.Failed() {
		t.Logf("now: %s", summary(counts))
		t.Log("if the change is deliberate: go run ./internal/cmd/exports -list > internal/cmd/exports/api.txt")
	}
}
