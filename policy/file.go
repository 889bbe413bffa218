package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/recourse-go/recourse/middleware"
)

// PolicySet is the content of a policy file: policies by key, and the
// default policy for keys the file does not name (nil if none).
type PolicySet struct {
	Policies map[Key]Policy
	Default  *Policy
}

// Keys returns the set's keys, sorted.
func (s *PolicySet) Keys() []Key {
	keys := make([]Key, 0, len(s.Policies))
	for k := range s.Policies {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// Format is a policy file's syntax.
type Format int

// Formats.
const (
	YAML Format = iota
	JSON
)

// FormatOf returns the format a file name's extension implies: JSON for
// ".json", YAML otherwise.
func FormatOf(path string) Format {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return JSON
	}
	return YAML
}

// DefaultSection is the key errors name for a file's default section.
const DefaultSection = "default"

// Parse reads a policy file (see the README for the format). A key's
// policy is Defaults(), then the file's default section, then the key's
// own section. Any error — bad syntax, an unknown field, a value of the
// wrong type, a hard error of Validate — is reported naming the key, the
// field and the value; all of a file's field errors are reported, joined.
func Parse(data []byte, format Format) (*PolicySet, error) {
	var doc any
	switch format {
	case JSON:
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("recourse/policy: JSON: %w", err)
		}
	default:
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("recourse/policy: YAML: %w", err)
		}
	}
	if doc == nil {
		return &PolicySet{Policies: map[Key]Policy{}}, nil
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("recourse/policy: the file must be a mapping with 'default' and 'policies', got %s", kind(doc))
	}
	var errs []error
	set := &PolicySet{Policies: map[Key]Policy{}}
	base := Defaults()
	for _, name := range sortedKeys(top) {
		switch name {
		case "default", "policies":
		default:
			errs = append(errs, fmt.Errorf("recourse/policy: unknown top-level field %q (want default, policies)", name))
		}
	}
	if raw, ok := top["default"]; ok && raw != nil {
		d := base
		c := converter{key: DefaultSection}
		c.policy(raw, &d)
		if len(c.errs) == 0 {
			d.Key = Key{Name: DefaultSection}
			if err := Validate(d); err != nil {
				c.errs = append(c.errs, err)
			}
			d.Key = Key{}
		}
		errs = append(errs, c.errs...)
		base = d
		set.Default = &d
	}
	if raw, ok := top["policies"]; ok && raw != nil {
		m, ok := raw.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("recourse/policy: 'policies' must be a mapping of key to policy, got %s", kind(raw)))
		}
		for _, name := range sortedKeys(m) {
			c := converter{key: name}
			if strings.TrimSpace(name) == "" {
				c.fail("key", strconv.Quote(name), "a key must not be empty")
			}
			p := base
			p.Key = ParseKey(name)
			c.policy(m[name], &p)
			if len(c.errs) == 0 {
				if err := Validate(p); err != nil {
					c.errs = append(c.errs, err)
				}
			}
			errs = append(errs, c.errs...)
			set.Policies[p.Key] = p
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

// converter turns one key's decoded section into Policy fields,
// collecting errors that name the key, the field and the value.
type converter struct {
	key  string
	errs []error
}

func (c *converter) fail(field, value, reason string) {
	c.errs = append(c.errs, &FieldError{Key: c.key, Field: field, Value: value, Reason: reason})
}

func (c *converter) policy(raw any, p *Policy) {
	m, ok := c.mapping("", raw)
	if !ok {
		return
	}
	for _, f := range sortedKeys(m) {
		v := m[f]
		switch f {
		case "id":
			c.str(f, v, &p.ID)
		case "budget":
			c.str(f, v, &p.Budget)
		case "budget_cost":
			c.int(f, v, &p.BudgetCost)
		case "classifier":
			c.str(f, v, &p.Classifier)
		case "retry":
			c.retry(v, &p.Retry)
		case "hedge":
			c.hedge(v, &p.Hedge)
		case "circuit":
			c.circuit(v, &p.Circuit)
		default:
			c.fail(f, show(v), "unknown field (want id, retry, hedge, circuit, budget, budget_cost, classifier)")
		}
	}
}

func (c *converter) retry(raw any, r *RetryPolicy) {
	m, ok := c.mapping("retry", raw)
	if !ok {
		return
	}
	for _, f := range sortedKeys(m) {
		v, path := m[f], "retry."+f
		switch f {
		case "max_attempts":
			if c.int(path, v, &r.MaxAttempts) && r.MaxAttempts == 0 {
				c.fail(path, "0", "must be at least 1")
			}
		case "initial_backoff":
			c.dur(path, v, &r.InitialBackoff)
		case "max_backoff":
			c.dur(path, v, &r.MaxBackoff)
		case "multiplier":
			c.float(path, v, &r.Multiplier)
		case "jitter":
			var s string
			if c.str(path, v, &s) {
				j, ok := middleware.ParseJitter(s)
				if !ok {
					c.fail(path, strconv.Quote(s), "unknown jitter (want none, full, equal or decorrelated)")
				}
				r.Jitter = j
			}
		case "timeout_per_attempt":
			c.dur(path, v, &r.TimeoutPerAttempt)
		case "overall_timeout":
			c.dur(path, v, &r.OverallTimeout)
		case "max_retry_after":
			c.dur(path, v, &r.MaxRetryAfter)
		default:
			c.fail(path, show(v), "unknown field (want max_attempts, initial_backoff, max_backoff, multiplier, jitter, timeout_per_attempt, overall_timeout, max_retry_after)")
		}
	}
}

func (c *converter) hedge(raw any, h *HedgePolicy) {
	m, ok := c.mapping("hedge", raw)
	if !ok {
		return
	}
	for _, f := range sortedKeys(m) {
		v, path := m[f], "hedge."+f
		switch f {
		case "enabled":
			c.bool(path, v, &h.Enabled)
		case "delay":
			c.dur(path, v, &h.Delay)
		case "quantile":
			c.float(path, v, &h.Quantile)
		case "max_hedges":
			c.int(path, v, &h.MaxHedges)
		case "budget":
			c.str(path, v, &h.Budget)
		case "trigger":
			c.str(path, v, &h.Trigger)
		default:
			c.fail(path, show(v), "unknown field (want enabled, delay, quantile, max_hedges, budget, trigger)")
		}
	}
}

func (c *converter) circuit(raw any, b *CircuitPolicy) {
	m, ok := c.mapping("circuit", raw)
	if !ok {
		return
	}
	for _, f := range sortedKeys(m) {
		v, path := m[f], "circuit."+f
		switch f {
		case "enabled":
			c.bool(path, v, &b.Enabled)
		case "consecutive_failures":
			c.int(path, v, &b.ConsecutiveFailures)
		case "cooldown":
			c.dur(path, v, &b.Cooldown)
		case "half_open_probes":
			c.int(path, v, &b.HalfOpenProbes)
		case "failure_ratio":
			c.float(path, v, &b.FailureRatio)
		case "window":
			c.dur(path, v, &b.Window)
		case "min_requests":
			c.int(path, v, &b.MinRequests)
		default:
			c.fail(path, show(v), "unknown field (want enabled, consecutive_failures, cooldown, half_open_probes, failure_ratio, window, min_requests)")
		}
	}
}

func (c *converter) mapping(path string, raw any) (map[string]any, bool) {
	if raw == nil {
		return map[string]any{}, true
	}
	m, ok := raw.(map[string]any)
	if !ok {
		if path == "" {
			path = "policy"
		}
		c.fail(path, show(raw), "must be a mapping of fields")
	}
	return m, ok
}

func (c *converter) str(path string, v any, dst *string) bool {
	s, ok := v.(string)
	if !ok {
		c.fail(path, show(v), "must be a string")
		return false
	}
	*dst = s
	return true
}

func (c *converter) bool(path string, v any, dst *bool) bool {
	b, ok := v.(bool)
	if !ok {
		c.fail(path, show(v), "must be true or false")
		return false
	}
	*dst = b
	return true
}

func (c *converter) int(path string, v any, dst *int) bool {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt32 {
			c.fail(path, show(v), "is too large")
			return false
		}
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			c.fail(path, show(v), "must be an integer")
			return false
		}
		n = i
	default:
		c.fail(path, show(v), "must be an integer")
		return false
	}
	if n > math.MaxInt32 || n < math.MinInt32 {
		c.fail(path, show(v), "is out of range")
		return false
	}
	*dst = int(n)
	return true
}

func (c *converter) float(path string, v any, dst *float64) bool {
	switch x := v.(type) {
	case float64:
		*dst = x
	case int:
		*dst = float64(x)
	case int64:
		*dst = float64(x)
	case uint64:
		*dst = float64(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			c.fail(path, show(v), "must be a number")
			return false
		}
		*dst = f
	default:
		c.fail(path, show(v), "must be a number")
		return false
	}
	return true
}

// dur parses a Go duration string ("250ms", "2s").
func (c *converter) dur(path string, v any, dst *time.Duration) bool {
	s, ok := v.(string)
	if !ok {
		if n, isNum := v.(int); isNum && n == 0 {
			*dst = 0
			return true
		}
		c.fail(path, show(v), `must be a duration string such as "250ms" or "2s"`)
		return false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		c.fail(path, strconv.Quote(s), `must be a duration such as "250ms" or "2s"`)
		return false
	}
	*dst = d
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// show renders a decoded value for an error message.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	case map[string]any:
		return "{…}"
	case []any:
		return "[…]"
	}
	return fmt.Sprint(v)
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", v)
}
