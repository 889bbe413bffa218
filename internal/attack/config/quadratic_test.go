package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/policy"
)

func manyKeysYAML(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  k%d.x: {}\n", i)
	}
	return b.String()
}

func manyKeysJSON(n int) string {
	var b strings.Builder
	b.WriteString(`{"policies": {`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d.x": {}`, i)
	}
	b.WriteString("}}")
	return b.String()
}

// The JSON twin parses fast: 50k keys (~0.7 MB) in well under a second.
func TestParseManyKeysJSONLinear(t *testing.T) {
	doc := manyKeysJSON(50000)
	start := time.Now()
	ps, err := policy.Parse([]byte(doc), policy.JSON)
	if err != nil || len(ps.Policies) != 50000 {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("50k JSON keys took %v", el)
	}
}

// A YAML policy file far under the 4 MiB cap must not take seconds to parse:
// the cost of a file within the cap is what the cap is there to bound.
// 50k keys are ~0.7 MB; a 4 MiB file of keys (~270k) took 4m47s here.
func TestParseManyKeysYAMLIsNotQuadratic(t *testing.T) {
	doc := manyKeysYAML(50000)
	start := time.Now()
	ps, err := policy.Parse([]byte(doc), policy.YAML)
	if err != nil || len(ps.Policies) != 50000 {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("50k YAML keys (%d bytes, cap %d) took %v", len(doc), policy.DefaultMaxPolicyBytes, el)
	}
}

// Close stops polling promptly even when the poller is busy with a large
// (within-the-cap) file.
func TestFileCloseDuringLargeParse(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(time.Second), policy.WatchClock(fc))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, manyKeysYAML(50000))
	fc.BlockUntil(1)
	fc.Advance(time.Second)
	time.Sleep(100 * time.Millisecond) // the poller is now reading/parsing
	start := time.Now()
	fp.Close()
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Close took %v", el)
	}
}
