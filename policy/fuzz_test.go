package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"payments.Charge", "db.Users.Query", "standalone", "", ".", "x.", ".x", "a..b", "ключ.имя"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := ParseKey(s)
		if again := ParseKey(k.String()); again != k {
			t.Fatalf("ParseKey(%q) = %+v, but ParseKey(%q) = %+v", s, k, k.String(), again)
		}
		if k.Namespace+"."+k.Name != s && k.Name != s {
			t.Fatalf("ParseKey(%q) = %+v loses characters", s, k)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("default:\n  retry: {max_attempts: 3, initial_backoff: 10ms}\npolicies:\n  a.b:\n    hedge: {enabled: true, delay: 20ms}\n"), false)
	f.Add([]byte(`{"policies": {"a.b": {"circuit": {"enabled": true, "failure_ratio": 0.5}}}}`), true)
	f.Add([]byte("policies:\n  a.b: {retry: {max_attempts: 99999999999999999999}}\n"), false)
	f.Add([]byte("policies: {x: {hedge: {quantile: .nan}}}"), false)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		format := YAML
		if isJSON {
			format = JSON
		}
		set, err := Parse(data, format)
		if err != nil {
			return
		}
		for k, p := range set.Policies {
			if err := Validate(p); err != nil {
				t.Fatalf("Parse accepted an invalid policy for %q: %v", k, err)
			}
			checkNormalized(t, p)
		}
	})
}

func FuzzNormalize(f *testing.F) {
	f.Add(3, int64(10*time.Millisecond), int64(250*time.Millisecond), 2.0, uint8(1), int64(0), int64(0), 0.99, 1, 5, int64(10*time.Second), 1, 0.0, 1)
	f.Add(-1, int64(-1), int64(math.MaxInt64), math.Inf(1), uint8(200), int64(-5), int64(math.MaxInt64), math.NaN(), -3, -9, int64(-1), 1000, 7.5, -2)
	f.Fuzz(func(t *testing.T, attempts int, initial, maxB int64, mult float64, jitter uint8, perAttempt, overall int64,
		q float64, hedges, failures int, cooldown int64, probes int, ratio float64, cost int) {
		p := Policy{
			Key: ParseKey("a.b"),
			Retry: RetryPolicy{MaxAttempts: attempts, InitialBackoff: time.Duration(initial), MaxBackoff: time.Duration(maxB),
				Multiplier: mult, Jitter: JitterKind(jitter), TimeoutPerAttempt: time.Duration(perAttempt), OverallTimeout: time.Duration(overall)},
			Hedge:      HedgePolicy{Enabled: true, Quantile: q, MaxHedges: hedges},
			Circuit:    CircuitPolicy{Enabled: true, ConsecutiveFailures: failures, Cooldown: time.Duration(cooldown), HalfOpenProbes: probes, FailureRatio: ratio},
			BudgetCost: cost,
		}
		checkNormalized(t, p)
	})
}

// checkNormalized asserts that Normalize puts every field in bounds and
// that normalizing again changes and reports nothing.
func checkNormalized(t *testing.T, p Policy) {
	t.Helper()
	n, _ := p.Normalize()
	r, h, c := n.Retry, n.Hedge, n.Circuit
	in := func(name string, ok bool) {
		if !ok {
			t.Fatalf("%s out of bounds after Normalize: %+v", name, n)
		}
	}
	in("max_attempts", r.MaxAttempts >= minMaxAttempts && r.MaxAttempts <= maxMaxAttempts)
	in("initial_backoff", r.InitialBackoff >= minBackoff && r.InitialBackoff <= maxInitialBackoff)
	in("max_backoff", r.MaxBackoff >= r.InitialBackoff && r.MaxBackoff <= maxMaxBackoff)
	in("multiplier", r.Multiplier >= minMultiplier && r.Multiplier <= maxMultiplier)
	in("jitter", r.Jitter <= JitterDecorrelated)
	in("timeout_per_attempt", r.TimeoutPerAttempt == 0 || (r.TimeoutPerAttempt >= minTimeout && r.TimeoutPerAttempt <= maxTimeout))
	in("overall_timeout", r.OverallTimeout == 0 || (r.OverallTimeout >= minTimeout && r.OverallTimeout <= maxTimeout))
	in("max_retry_after", r.MaxRetryAfter >= minTimeout && r.MaxRetryAfter <= maxMaxRetryAfter)
	in("hedge.delay", h.Delay >= minHedgeDelay && h.Delay <= maxHedgeDelay)
	in("hedge.quantile", h.Quantile == 0 || (h.Quantile >= minQuantile && h.Quantile <= maxQuantile))
	in("hedge.max_hedges", h.MaxHedges >= 1 && h.MaxHedges <= maxMaxHedges)
	in("circuit.consecutive_failures", c.ConsecutiveFailures >= 1 && c.ConsecutiveFailures <= maxConsecutiveFailures)
	in("circuit.cooldown", c.Cooldown >= minCooldown && c.Cooldown <= maxCooldown)
	in("circuit.half_open_probes", c.HalfOpenProbes >= 1 && c.HalfOpenProbes <= maxHalfOpenProbes)
	in("circuit.failure_ratio", c.FailureRatio == 0 || (c.FailureRatio > 0 && c.FailureRatio <= 1))
	in("budget_cost", n.BudgetCost >= 1 && n.BudgetCost <= maxBudgetCost)
	again, clamped := n.Normalize()
	if len(clamped) != 0 || !reflect.DeepEqual(again, n) {
		t.Fatalf("Normalize is not idempotent: clamped %v on the second pass", clamped)
	}
}

// FuzzDecodeJSON checks decodeJSON against encoding/json: it accepts what
// json.Valid accepts (but for deep nesting), rejects the rest, and decodes
// to what a json.Decoder with UseNumber does, but for duplicate keys,
// which it reports as problems (keeping the first value).
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a": {"b": [1, 2.5, "x", null, true]}}`, `{"a": 1, "a": 2}`, `[]`, `"s"`, ` 1 `, `{} {}`, `{"a":}`, "", `[[[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var problems []error
		got, err := decodeJSON(data, &problems)
		if len(bytes.Trim(data, " \t\r\n")) == 0 { // JSON's whitespace
			if err != nil || got != nil {
				t.Fatalf("empty input: %v, %v", got, err)
			}
			return
		}
		valid := json.Valid(data)
		if err != nil {
			msg := err.Error()
			if valid && !strings.Contains(msg, "nested deeper") {
				t.Fatalf("decodeJSON rejected valid JSON %q: %v", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("decodeJSON accepted invalid JSON %q as %v", data, got)
		}
		for _, p := range problems {
			if !strings.Contains(p.Error(), "duplicate key") {
				t.Fatalf("decodeJSON(%q): problem %v", data, p)
			}
		}
		if len(problems) > 0 {
			return // encoding/json keeps the last of duplicate keys
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeJSON(%q) = %#v, encoding/json says %#v", data, got, want)
		}
	})
}

// FuzzDecodeYAML checks decodeYAML against yaml.v3's own decoding into an
// any: where yaml.v3 decodes a one-document stream to string-keyed
// mappings without error, decodeYAML gives the same value and reports no
// problem; where decodeYAML reports no problem and no error, yaml.v3
// accepts the document too.
func FuzzDecodeYAML(f *testing.F) {
	for _, s := range []string{
		"policies:\n  a.b: {retry: {max_attempts: 2, initial_backoff: 10ms}}\n",
		"default: {retry: {jitter: full}}\nbudgets: {r: {kind: ratio, ratio: 0.1}}\n",
		"a: &x {b: 1}\nc: *x\n", "a: [1, 2.5, true, null, ~, '3', 2001-12-14, 0x1f, .inf]\n",
		"a: 1\na: 2\n", "a: {<<: {b: 1}, b: 2}\n", "--- \n---\na: 1\n", "", "# only a comment\n", "[1, [2, [3]]]",
		"? [a]\n: 1\n", "1: x\n", "a: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var problems []error
		got, err := decodeYAML(context.Background(), data, &problems)
		want, werr := yamlV3Decode(data)
		if werr == nil && err == nil && len(problems) == 0 && stringKeyed(want) {
			if !reflect.DeepEqual(got, want) && !nanIn(want) {
				t.Fatalf("decodeYAML(%q) = %#v, yaml.v3 says %#v", data, got, want)
			}
		}
		if err == nil && len(problems) == 0 && werr != nil {
			t.Fatalf("decodeYAML accepted %q, which yaml.v3 rejects: %v", data, werr)
		}
	})
}

// yamlV3Decode decodes the stream's one non-empty document with yaml.v3
// into an any, as Parse did before it read nodes itself.
func yamlV3Decode(data []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	for {
		var d any
		if err := dec.Decode(&d); err == io.EOF {
			return doc, nil
		} else if err != nil {
			return nil, err
		}
		if d != nil && doc != nil {
			return nil, errors.New("more than one document")
		}
		if d != nil {
			doc = d
		}
	}
}

// stringKeyed reports whether every mapping in v has string keys (yaml.v3
// decodes the others to map[any]any, which a policy file never holds).
func stringKeyed(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			if !stringKeyed(x) {
				return false
			}
		}
	case []any:
		for _, x := range v {
			if !stringKeyed(x) {
				return false
			}
		}
	case map[any]any:
		return false
	}
	return true
}

// nanIn reports whether v holds a NaN, which DeepEqual never finds equal.
func nanIn(v any) bool {
	switch v := v.(type) {
	case float64:
		return v != v
	case map[string]any:
		for _, x := range v {
			if nanIn(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if nanIn(x) {
				return true
			}
		}
	}
	return false
}
