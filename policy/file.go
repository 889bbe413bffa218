package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// PolicySet is the content of a policy file: policies by key, the
// default policy for keys the file does not name (nil if none), and the
// budgets the file declares.
type PolicySet struct {
	// Policies holds each key's policy, the default section's fields
	// filled in for those the key does not set.
	Policies map[Key]Policy
	// Default is the default section's policy (its Key zero), served for
	// keys the file does not name; nil when the file has none.
	Default *Policy
	// Budgets holds the budgets section: each declared budget by name
	// (nil when the file declares none). A FileProvider or RemoteProvider
	// builds them and serves them as a BudgetSource.
	Budgets map[string]BudgetSpec
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
	// YAML is YAML 1.2 (one document; JSON is valid YAML too).
	YAML Format = iota
	// JSON is one JSON object.
	JSON
)

// formatOf returns the format a file name's extension implies: JSON for
// ".json", YAML otherwise.
func formatOf(path string) Format {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return JSON
	}
	return YAML
}

// DefaultSection is the key errors name for a file's default section.
const DefaultSection = "default"

// Parse reads a policy file (the format is in the package documentation).
// A key's policy is Defaults(), then the file's default section, then the
// key's own section. Any error — bad syntax, an unknown field, a value of
// the wrong type, a hard error of Validate, a budget declared wrongly — is
// reported naming the key (or budget), the field and the value; every
// field error of every key and budget is reported, joined (errors.Join),
// one per line (the first 1000, then how many more), each a *FieldError
// (errors.Is ErrInvalid). An error of the
// default section is reported once, not again under each key inheriting
// it. A key or field given twice (in JSON as in YAML, at any depth, or a
// key spelled two ways, as "x" and ".x") is an error naming it, and so is
// a document with no policies and no default section (ErrNoPolicies): an
// empty or comment-only file is never an empty set.
//
// Parse does not check that the budget, trigger and classifier names the
// policies use exist: names may be registered in code. The recourse
// command's check does (see cmd/recourse).
func Parse(data []byte, format Format) (*PolicySet, error) {
	return parse(context.Background(), data, format)
}

// parse is Parse, given up with ctx's error once ctx ends, so that closing
// a provider need not wait for a large file to be read.
func parse(ctx context.Context, data []byte, format Format) (*PolicySet, error) {
	var (
		doc  any
		errs []error // problems that do not stop the reading: all are reported
	)
	switch format {
	case JSON:
		var err error
		if doc, err = decodeJSON(bytes.TrimPrefix(data, []byte("\ufeff")), &errs); err != nil { // a BOM, as YAML allows
			return nil, fmt.Errorf("recourse/policy: JSON: %w", err)
		}
		for i, e := range errs {
			errs[i] = fmt.Errorf("recourse/policy: JSON: %w", e)
		}
	default:
		var err error
		if doc, err = decodeYAML(ctx, data, &errs); err != nil {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx) // yaml.v3 reports its reader's error as text
			}
			return nil, fmt.Errorf("recourse/policy: YAML: %w", err)
		}
		for i, e := range errs {
			errs[i] = fmt.Errorf("recourse/policy: YAML: %w", e)
		}
	}
	if doc == nil {
		return nil, fmt.Errorf("%w: the document is empty", ErrNoPolicies)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("recourse/policy: the file must be a mapping with 'default', 'policies' and 'budgets', got %s", kind(doc))
	}
	set := &PolicySet{Policies: map[Key]Policy{}}
	base := Defaults()
	for _, name := range sortedKeys(top) {
		switch name {
		case "default", "policies", "budgets":
		default:
			errs = append(errs, fmt.Errorf("recourse/policy: unknown top-level field %q (want default, policies, budgets)", name))
		}
	}
	if raw, ok := top["budgets"]; ok {
		budgets, berrs := parseBudgets(raw)
		errs = append(errs, berrs...)
		if len(budgets) > 0 {
			set.Budgets = budgets
		}
	}
	// inherited are the default section's errors, as "field = value": a
	// key that inherits the value is not blamed for it again.
	inherited := map[string]bool{}
	for _, name := range []string{"default", "policies", "budgets"} {
		if raw, ok := top[name]; ok && raw == nil {
			errs = append(errs, fmt.Errorf("recourse/policy: top-level %q is empty (null): a file cut short? Write {} for a section that sets nothing", name))
		}
	}
	if raw, ok := top["default"]; ok && raw != nil {
		d := base
		c := converter{key: DefaultSection}
		c.policy(raw, &d)
		d.Key = Key{Name: DefaultSection}
		c.errs = merge(c.errs, Validate(d))
		d.Key = Key{}
		for _, err := range c.errs {
			var fe *FieldError
			if errors.As(err, &fe) {
				inherited[fe.Field+" = "+fe.Value] = true
			}
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
		spelled := make(map[Key]string, len(m))
		for i, name := range sortedKeys(m) {
			if i%1024 == 1023 && ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			c := converter{key: name}
			if strings.TrimSpace(name) == "" {
				c.fail("key", strconv.Quote(name), "a key must not be empty")
			}
			p := base
			p.Key = ParseKey(name)
			if prev, dup := spelled[p.Key]; dup {
				c.fail("key", strconv.Quote(name), fmt.Sprintf("duplicate of %q: both are the key %q", prev, p.Key.String()))
			}
			spelled[p.Key] = name
			c.policy(m[name], &p)
			for _, err := range merge(c.errs, Validate(p)) {
				var fe *FieldError
				if errors.As(err, &fe) && fe.Key == name && inherited[fe.Field+" = "+fe.Value] {
					continue // the default section's, reported there
				}
				errs = append(errs, err)
			}
			set.Policies[p.Key] = p
		}
	}
	if len(set.Policies) == 0 && set.Default == nil {
		errs = append(errs, fmt.Errorf("%w: the document has neither", ErrNoPolicies))
	}
	if len(errs) > maxReported {
		errs = append(errs[:maxReported:maxReported], fmt.Errorf("recourse/policy: and %d more problems", len(errs)-maxReported))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

// maxReported bounds the problems Parse reports one by one: a file of a
// million bad fields gives an error a person can read and a log can hold.
const maxReported = 1000

// ErrNoPolicies is returned (wrapped) by Parse for a document that sets no
// policies and no default section: an empty or comment-only file, or one
// caught while being rewritten. Serving it would drop every policy.
var ErrNoPolicies = errors.New("recourse/policy: no policies and no default section")

// maxDepth bounds the nesting of a JSON document; a policy file needs 3.
const maxDepth = 64

// decodeJSON decodes one JSON document as encoding/json does into an any
// (numbers as json.Number), except that it rejects a key repeated in an
// object, naming it and where, as YAML does, and anything after the
// document. An empty document decodes to nil.
func decodeJSON(data []byte, problems *[]error) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := jsonValue(dec, tok, "", 0, problems)
	if err != nil {
		return nil, err
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("data after the document (%v at offset %d)", tok, dec.InputOffset())
		}
		return nil, err
	}
	return doc, nil
}

// jsonValue decodes the value that starts with tok at path.
// A key given twice is added to problems (its later value is read and
// dropped), so that every other problem of the file is still reported.
func jsonValue(dec *json.Decoder, tok json.Token, path string, depth int, problems *[]error) (any, error) {
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // a string, json.Number, bool or nil
	}
	if depth >= maxDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", where(path), maxDepth)
	}
	next := func() (json.Token, error) {
		tok, err := dec.Token()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return tok, err
	}
	switch delim {
	case '{':
		m := map[string]any{}
		for dec.More() {
			tok, err := next()
			if err != nil {
				return nil, err
			}
			k, _ := tok.(string) // dec.Token checks that object keys are strings
			_, dup := m[k]
			if dup {
				*problems = append(*problems, fmt.Errorf("duplicate key %q in %s", k, where(path)))
			}
			if tok, err = next(); err != nil {
				return nil, err
			}
			v, err := jsonValue(dec, tok, join(path, k), depth+1, problems)
			if err != nil {
				return nil, err
			}
			if !dup {
				m[k] = v
			}
		}
		_, err := next() // '}'
		return m, err
	case '[':
		l := []any{}
		for i := 0; dec.More(); i++ {
			tok, err := next()
			if err != nil {
				return nil, err
			}
			v, err := jsonValue(dec, tok, path+"["+strconv.Itoa(i)+"]", depth+1, problems)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err := next() // ']'
		return l, err
	}
	return nil, fmt.Errorf("unexpected %q at offset %d", delim, dec.InputOffset())
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "the top level"
	}
	return strconv.Quote(path)
}

// decodeYAML decodes a YAML stream into an any. A stream with more than
// one non-empty document is an error (all but one would be silently
// ignored); an empty one decodes to nil. The document is parsed into
// yaml.v3's nodes and turned into values here (see yamlValue): yaml.v3's
// own decoding checks keys for duplicates in time quadratic in a
// mapping's size, minutes for a file within DefaultMaxPolicyBytes.
func decodeYAML(ctx context.Context, data []byte, problems *[]error) (any, error) {
	dec := yaml.NewDecoder(ctxReader{ctx, bytes.NewReader(data)})
	var doc *yaml.Node
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		if empty(&n) {
			continue
		}
		if doc != nil {
			return nil, errors.New("more than one document (separated by ---): a policy file holds one")
		}
		doc = &n
	}
	if doc == nil {
		return nil, nil
	}
	y := yamlReader{ctx: ctx, budget: len(data) + maxAliasNodes, problems: problems}
	return y.value(doc, "", 0)
}

// ctxReader reads r until ctx ends, then fails with ctx's cause: yaml.v3
// reads its input as it parses, so parsing stops there.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// maxAliasNodes bounds the nodes aliases may add to a document beyond one
// per byte of it, which no document without aliases reaches: a "billion
// laughs" document stops there.
const maxAliasNodes = 100_000

// empty reports whether n is a document that holds nothing (or null).
func empty(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// yamlReader turns yaml.v3 nodes into the values Parse reads: mappings
// become map[string]any, sequences []any, and scalars what yaml.v3 decodes
// them to. A key given twice and a merge key (<<, YAML 1.1's, not part of
// the format) are added to problems and their values dropped, so that
// every other problem is still reported.
type yamlReader struct {
	ctx      context.Context // checked every few thousand nodes
	budget   int             // nodes left to visit, aliases' included
	problems *[]error
}

func (y *yamlReader) value(n *yaml.Node, path string, depth int) (any, error) {
	if y.budget--; y.budget < 0 {
		return nil, fmt.Errorf("%s: aliases expand the document to more than %d nodes", where(path), maxAliasNodes)
	}
	if y.budget%4096 == 0 && y.ctx.Err() != nil {
		return nil, context.Cause(y.ctx)
	}
	if depth >= maxDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", where(path), maxDepth)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return y.value(n.Content[0], path, depth)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, fmt.Errorf("%s: alias *%s names no anchor (line %d)", where(path), n.Value, n.Line)
		}
		return y.value(n.Alias, path, depth+1)
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return n.Value, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			v, err := y.value(c, path+"["+strconv.Itoa(i)+"]", depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		lines := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			for kn.Kind == yaml.AliasNode && kn.Alias != nil {
				kn = kn.Alias
			}
			if kn.Kind != yaml.ScalarNode {
				*y.problems = append(*y.problems, fmt.Errorf("%s: a key must be a string, got a %s (line %d)", where(path), nodeKind(kn), kn.Line))
				continue
			}
			if kn.ShortTag() == "!!merge" {
				*y.problems = append(*y.problems, fmt.Errorf("%s: merge keys (<<) are not part of the format (YAML 1.2): give each field once (line %d)", where(path), kn.Line))
				continue
			}
			k := kn.Value
			if line, dup := lines[k]; dup {
				*y.problems = append(*y.problems, fmt.Errorf("duplicate key %q in %s (lines %d and %d)", k, where(path), line, kn.Line))
				continue
			}
			v, err := y.value(vn, join(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			m[k], lines[k] = v, kn.Line
		}
		return m, nil
	}
	return nil, fmt.Errorf("%s: unexpected YAML node (line %d)", where(path), n.Line)
}

// nodeKind names a node's kind for errors.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	}
	return "value"
}

// converter turns one key's decoded section into Policy fields,
// collecting errors that name the key, the field and the value.
type converter struct {
	key    string
	budget bool // key names a budget of the budgets section
	errs   []error
}

func (c *converter) fail(field, value, reason string) {
	c.errs = append(c.errs, &FieldError{Key: c.key, Field: field, Value: value, Reason: reason, budget: c.budget})
}

// field is one field of the file format and how to store its value.
type field struct {
	name string
	set  func(c *converter, path string, v any)
}

func strField(dst *string) func(*converter, string, any) {
	return func(c *converter, path string, v any) { c.str(path, v, dst) }
}

func intField(dst *int) func(*converter, string, any) {
	return func(c *converter, path string, v any) { c.int(path, v, dst) }
}

func boolField(dst *bool) func(*converter, string, any) {
	return func(c *converter, path string, v any) { c.bool(path, v, dst) }
}

func floatField(dst *float64) func(*converter, string, any) {
	return func(c *converter, path string, v any) { c.float(path, v, dst) }
}

func durField(dst *time.Duration) func(*converter, string, any) {
	return func(c *converter, path string, v any) { c.dur(path, v, dst) }
}

// section stores a decoded mapping's fields through the table, reporting
// unknown fields with the list of known ones.
func (c *converter) section(prefix string, raw any, fields []field) {
	m, ok := c.mapping(prefix, raw)
	if !ok {
		return
	}
	for _, name := range sortedKeys(m) {
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == name })
		if i < 0 {
			known := make([]string, len(fields))
			for j, f := range fields {
				known[j] = f.name
			}
			c.fail(path, show(m[name]), "unknown field (want "+strings.Join(known, ", ")+")")
			continue
		}
		fields[i].set(c, path, m[name])
	}
}

func (c *converter) policy(raw any, p *Policy) {
	r, h, b := &p.Retry, &p.Hedge, &p.Circuit
	c.section("", raw, []field{
		{"id", strField(&p.ID)},
		{"retry", func(c *converter, _ string, v any) {
			c.section("retry", v, []field{
				{"max_attempts", func(c *converter, path string, v any) {
					if c.int(path, v, &r.MaxAttempts) && r.MaxAttempts == 0 {
						c.fail(path, "0", "must be at least 1")
					}
				}},
				{"initial_backoff", durField(&r.InitialBackoff)},
				{"max_backoff", durField(&r.MaxBackoff)},
				{"multiplier", floatField(&r.Multiplier)},
				{"jitter", func(c *converter, path string, v any) {
					var s string
					if c.str(path, v, &s) {
						j, ok := parseJitter(s)
						if !ok {
							c.fail(path, strconv.Quote(s), "unknown jitter (want none, full, equal or decorrelated)")
						}
						r.Jitter = j
					}
				}},
				{"timeout_per_attempt", durField(&r.TimeoutPerAttempt)},
				{"overall_timeout", durField(&r.OverallTimeout)},
				{"max_retry_after", durField(&r.MaxRetryAfter)},
			})
		}},
		{"hedge", func(c *converter, _ string, v any) {
			c.section("hedge", v, []field{
				{"enabled", boolField(&h.Enabled)},
				{"delay", durField(&h.Delay)},
				{"quantile", floatField(&h.Quantile)},
				{"max_hedges", intField(&h.MaxHedges)},
				{"budget", strField(&h.Budget)},
				{"trigger", strField(&h.Trigger)},
			})
		}},
		{"circuit", func(c *converter, _ string, v any) {
			c.section("circuit", v, []field{
				{"enabled", boolField(&b.Enabled)},
				{"consecutive_failures", intField(&b.ConsecutiveFailures)},
				{"cooldown", durField(&b.Cooldown)},
				{"half_open_probes", intField(&b.HalfOpenProbes)},
				{"failure_ratio", floatField(&b.FailureRatio)},
				{"window", durField(&b.Window)},
				{"min_requests", intField(&b.MinRequests)},
				{"cooldown_jitter", floatField(&b.CooldownJitter)},
				{"slow_call_duration", durField(&b.SlowCallDuration)},
				{"slow_call_rate", floatField(&b.SlowCallRate)},
			})
		}},
		{"bulkhead", func(c *converter, _ string, v any) {
			c.section("bulkhead", v, []field{
				{"max_concurrent", intField(&p.Bulkhead.MaxConcurrent)},
				{"max_wait", durField(&p.Bulkhead.MaxWait)},
				{"adaptive", boolField(&p.Bulkhead.Adaptive)},
			})
		}},
		{"budget", strField(&p.Budget)},
		{"budget_cost", intField(&p.BudgetCost)},
		{"classifier", strField(&p.Classifier)},
	})
}

func (c *converter) mapping(path string, raw any) (map[string]any, bool) {
	if path == "" {
		path = "policy"
		if c.budget {
			path = "budget"
		}
	}
	if raw == nil {
		// A key with nothing after it is what a file cut short while being
		// written looks like; a section that sets nothing is written {}.
		c.fail(path, "null", "empty section (write {} for a section that sets nothing)")
		return nil, false
	}
	m, ok := raw.(map[string]any)
	if !ok {
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
		if n, isNum := v.(int); isNum && n == 0 || v == json.Number("0") {
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
	case map[any]any:
		return "a mapping with keys that are not strings"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", v)
}

// parseJitter parses a jitter name as JitterKind.String prints it.
func parseJitter(s string) (JitterKind, bool) {
	for j := JitterNone; j <= JitterDecorrelated; j++ {
		if j.String() == s {
			return j, true
		}
	}
	return 0, false
}
