package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/middleware"
)

// BudgetSpec declares a named budget: an entry of a policy file's budgets
// section. Kind selects the budget and which of the other fields apply;
// a field of another kind must be zero. Zero never silently stands for a
// default, except Window.
type BudgetSpec struct {
	// Kind is "ratio" (middleware.NewRatioBudget), "token_bucket"
	// (middleware.NewTokenBucketBudget) or "throttle"
	// (middleware.NewThrottleBudget).
	Kind string
	// Ratio (kind ratio) is the retries and hedges allowed per first try
	// over Window: 0.1 allows 10 % extra tries. Required, above 0.
	Ratio float64
	// MinPerSecond (kind ratio) is the extra tries per second allowed
	// whatever the traffic, so a quiet key can still retry; 0 means none.
	MinPerSecond float64
	// Window (kind ratio) is the sliding window the ratio is counted over,
	// at least 10ms; 0 means 10s.
	Window time.Duration
	// Capacity (kind token_bucket) is the bucket's size in tokens; it
	// starts full. Required, at least 1.
	Capacity int
	// RefillPerSecond (kind token_bucket) is the tokens added per second;
	// 0 means none (the bucket only ever empties).
	RefillPerSecond float64
	// MaxTokens (kind throttle) is the bucket's size, above 0 and at most
	// 1000 (gRPC's retry throttling bounds). Retries and hedges are allowed
	// while more than half of it remains; each failed try drains one token.
	MaxTokens float64
	// TokenRatio (kind throttle) is the tokens each successful try refills,
	// above 0 and at most 1000.
	TokenRatio float64
}

// Budget kinds and the fields each takes, in the file format.
var budgetKinds = map[string][]string{
	"ratio":        {"ratio", "min_per_second", "window"},
	"token_bucket": {"capacity", "refill_per_second"},
	"throttle":     {"max_tokens", "token_ratio"},
}

const budgetKindList = "ratio, token_bucket or throttle"

// minRatioWindow is the shortest window a RatioBudget counts over.
const minRatioWindow = 10 * time.Millisecond

// defaultRatioWindow is the window of a ratio budget that sets none.
const defaultRatioWindow = 10 * time.Second

// Build returns the budget s declares, on clock c (nil means clock.Real),
// or the errors of s (see Parse for the rules) as *FieldError values naming
// the field and the value. Each call builds a new budget with its own
// state.
func (s BudgetSpec) Build(c clock.Clock) (middleware.Budget, error) {
	if err := s.validate(""); err != nil {
		return nil, err
	}
	return s.build(c), nil
}

// build builds a valid s.
func (s BudgetSpec) build(c clock.Clock) middleware.Budget {
	c = clockx.Or(c)
	switch s.Kind {
	case "ratio":
		w := s.Window
		if w == 0 {
			w = defaultRatioWindow
		}
		return middleware.NewRatioBudget(middleware.Ratio(s.Ratio), middleware.RatioFloor(s.MinPerSecond),
			middleware.RatioWindow(w), middleware.WithClock(c))
	case "token_bucket":
		return middleware.NewTokenBucketBudget(s.Capacity, s.RefillPerSecond, middleware.WithClock(c))
	default:
		return middleware.NewThrottleBudget(s.MaxTokens, s.TokenRatio)
	}
}

// validate reports every error of the budget declared as name, joined.
func (s BudgetSpec) validate(name string) error {
	v := validator{key: name, budget: true}
	fields, ok := budgetKinds[s.Kind]
	if !ok {
		reason := "unknown kind (want " + budgetKindList + ")"
		if s.Kind == "" {
			reason = "a budget needs a kind (" + budgetKindList + ")"
		}
		v.fail("kind", strconv.Quote(s.Kind), reason)
		return errors.Join(v.errs...)
	}
	// Fields of another kind must be unset.
	set := map[string]string{}
	if s.Ratio != 0 {
		set["ratio"] = fmtFloat(s.Ratio)
	}
	if s.MinPerSecond != 0 {
		set["min_per_second"] = fmtFloat(s.MinPerSecond)
	}
	if s.Window != 0 {
		set["window"] = s.Window.String()
	}
	if s.Capacity != 0 {
		set["capacity"] = strconv.Itoa(s.Capacity)
	}
	if s.RefillPerSecond != 0 {
		set["refill_per_second"] = fmtFloat(s.RefillPerSecond)
	}
	if s.MaxTokens != 0 {
		set["max_tokens"] = fmtFloat(s.MaxTokens)
	}
	if s.TokenRatio != 0 {
		set["token_ratio"] = fmtFloat(s.TokenRatio)
	}
	for _, f := range []string{"ratio", "min_per_second", "window", "capacity", "refill_per_second", "max_tokens", "token_ratio"} {
		if val, ok := set[f]; ok && !slices.Contains(fields, f) {
			v.fail(f, val, notOfKind(s.Kind))
		}
	}
	switch s.Kind {
	case "ratio":
		v.positive("ratio", s.Ratio, math.Inf(1))
		v.float("min_per_second", s.MinPerSecond)
		switch {
		case s.Window < 0:
			v.fail("window", s.Window.String(), "a duration must not be negative")
		case s.Window > 0 && s.Window < minRatioWindow:
			v.fail("window", s.Window.String(), "must be at least "+minRatioWindow.String()+" (0 means 10s)")
		}
	case "token_bucket":
		if s.Capacity < 1 {
			v.fail("capacity", strconv.Itoa(s.Capacity), "must be at least 1")
		}
		v.float("refill_per_second", s.RefillPerSecond)
	case "throttle":
		v.positive("max_tokens", s.MaxTokens, 1000)
		v.positive("token_ratio", s.TokenRatio, 1000)
	}
	return errors.Join(v.errs...)
}

func notOfKind(kind string) string {
	return "not a field of kind " + kind + " (want " + strings.Join(budgetKinds[kind], ", ") + ")"
}

// positive requires f in (0, hi].
func (v *validator) positive(field string, f, hi float64) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		v.fail(field, fmtFloat(f), "must be a finite number above 0")
	case f <= 0 && math.IsInf(hi, 1):
		v.fail(field, fmtFloat(f), "must be above 0")
	case f <= 0 || f > hi:
		v.fail(field, fmtFloat(f), "must be above 0 and at most "+fmtFloat(hi))
	}
}

// budgetFields is the file format of a budget: every field of every kind,
// the kind-specific check being validate's.
func budgetFields(s *BudgetSpec) []field {
	return []field{
		{"kind", strField(&s.Kind)},
		{"ratio", floatField(&s.Ratio)},
		{"min_per_second", floatField(&s.MinPerSecond)},
		{"window", durField(&s.Window)},
		{"capacity", intField(&s.Capacity)},
		{"refill_per_second", floatField(&s.RefillPerSecond)},
		{"max_tokens", floatField(&s.MaxTokens)},
		{"token_ratio", floatField(&s.TokenRatio)},
	}
}

// parseBudgets converts a file's budgets section, collecting every error.
func parseBudgets(raw any) (map[string]BudgetSpec, []error) {
	if raw == nil {
		return nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, []error{fmt.Errorf("recourse/policy: 'budgets' must be a mapping of budget name to budget, got %s", kind(raw))}
	}
	var errs []error
	out := make(map[string]BudgetSpec, len(m))
	for _, name := range sortedKeys(m) {
		c := converter{key: name, budget: true}
		switch {
		case strings.TrimSpace(name) == "":
			c.fail("name", strconv.Quote(name), "a budget needs a name")
		case name == BudgetUnlimited:
			c.fail("name", strconv.Quote(name), "is built in (it admits every try); declare a budget under another name")
		}
		var s BudgetSpec
		if sm, ok := c.mapping("", m[name]); ok {
			fields := budgetFields(&s)
			if k, _ := sm["kind"].(string); budgetKinds[k] != nil {
				// Only the kind's fields are known; the others are
				// validate's to report ("not a field of kind …").
				want := append([]string{"kind"}, budgetKinds[k]...)
				for _, f := range sortedKeys(sm) {
					if !slices.ContainsFunc(fields, func(x field) bool { return x.name == f }) {
						c.fail(f, show(sm[f]), "unknown field (want "+strings.Join(want, ", ")+")")
						delete(sm, f)
					}
				}
			}
			c.section("", sm, fields)
			c.errs = merge(c.errs, s.validate(name))
		}
		errs = append(errs, c.errs...)
		out[name] = s
	}
	return out, errs
}

// merge appends the errors of a validation to those of the conversion,
// leaving out those of fields the conversion already reported (a value
// that did not convert leaves its field at a value validation may
// reject).
func merge(conv []error, val error) []error {
	if val == nil {
		return conv
	}
	seen := map[string]bool{}
	for _, err := range conv {
		var fe *FieldError
		if errors.As(err, &fe) {
			seen[fe.Field] = true
		}
	}
	for _, err := range unjoin(val) {
		var fe *FieldError
		if errors.As(err, &fe) && seen[fe.Field] {
			continue
		}
		conv = append(conv, err)
	}
	return conv
}

// unjoin returns the errors errors.Join joined into err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// BudgetSource is implemented by providers that declare named budgets,
// as FileProvider and RemoteProvider do from a policy file's budgets
// section. An executor resolves a budget name a policy uses from its
// code-registered budgets first, then from its provider's BudgetSource,
// then from the built-in BudgetUnlimited.
type BudgetSource interface {
	// Budget returns the budget declared as name, built. It returns the
	// same instance, and so the same state (tokens, counts), for as long
	// as its declaration is unchanged; a reload that changes the
	// declaration builds a new one. Budget must be safe for concurrent use
	// and should be cheap: executors call it when they compile a key's
	// chain, which they do again whenever the provider's Version changes.
	Budget(name string) (middleware.Budget, bool)
}

// builtBudget is a declared budget and the budget built from it.
type builtBudget struct {
	spec BudgetSpec
	b    middleware.Budget
}

// rebuild returns the budgets of specs, keeping from old each whose
// declaration is unchanged.
func rebuild(old map[string]builtBudget, specs map[string]BudgetSpec, c clock.Clock) map[string]builtBudget {
	if len(specs) == 0 {
		return nil
	}
	out := make(map[string]builtBudget, len(specs))
	for name, s := range specs {
		if o, ok := old[name]; ok && o.spec == s {
			out[name] = o
			continue
		}
		out[name] = builtBudget{spec: s, b: s.build(c)}
	}
	return out
}
