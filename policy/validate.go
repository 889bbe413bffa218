package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// FieldError is a hard error in one field of a policy: a value that has
// no meaning (a negative duration, an unknown jitter), as opposed to a
// meaningful value out of bounds, which Normalize clamps.
type FieldError struct {
	// Key is the policy's key ("payments.Charge"; "default" for a file's
	// default section), or for an error in a file's budgets section the
	// budget's name.
	Key string
	// Field is the field's path in the file format ("retry.max_attempts",
	// or "ratio" in a budget).
	Field string
	// Value is the offending value as written or as held.
	Value string
	// Reason says what is wrong.
	Reason string

	budget bool // Key names a budget, not a policy
}

// Error names the key (or budget), the field and the value:
// `policy "payments.Charge": retry.max_attempts = -1: must not be negative`,
// `budget "retries": ratio = NaN: must be a finite number above 0`.
func (e *FieldError) Error() string {
	what := "policy"
	if e.budget {
		what = "budget"
		if e.Key == "" { // BudgetSpec.Build: no name to give
			return fmt.Sprintf("%s: %s = %s: %s", what, e.Field, e.Value, e.Reason)
		}
	}
	return fmt.Sprintf("%s %q: %s = %s: %s", what, e.Key, e.Field, e.Value, e.Reason)
}

// ErrInvalid is matched (errors.Is) by every *FieldError.
var ErrInvalid = errors.New("recourse/policy: invalid policy")

// Is reports whether target is ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Validate reports every hard error in p, joined (errors.Join), each a
// *FieldError naming the key, the field and the value; nil if there is
// none. Values that are meaningful but out of bounds are not errors: see
// Normalize.
func Validate(p Policy) error {
	v := validator{key: p.Key.String()}
	if p.Key.IsZero() {
		v.fail("key", `""`, "a policy needs a key")
	}
	r := p.Retry
	v.nonNegative("retry.max_attempts", int64(r.MaxAttempts))
	v.duration("retry.initial_backoff", r.InitialBackoff)
	v.duration("retry.max_backoff", r.MaxBackoff)
	// A max_backoff below initial_backoff is not an error: Normalize
	// raises it to initial_backoff and reports retry.max_backoff, alike
	// for a policy built in Go and one read from a file (whose max_backoff
	// may come from the defaults).
	v.float("retry.multiplier", r.Multiplier)
	if r.Jitter > JitterDecorrelated {
		v.fail("retry.jitter", strconv.Itoa(int(r.Jitter)), "unknown jitter (want none, full, equal or decorrelated)")
	}
	v.duration("retry.timeout_per_attempt", r.TimeoutPerAttempt)
	v.duration("retry.overall_timeout", r.OverallTimeout)
	v.duration("retry.max_retry_after", r.MaxRetryAfter)

	h := p.Hedge
	v.duration("hedge.delay", h.Delay)
	switch {
	case math.IsNaN(h.Quantile):
		v.fail("hedge.quantile", "NaN", "must be in (0, 1)")
	case h.Quantile != 0 && (h.Quantile <= 0 || h.Quantile >= 1):
		v.fail("hedge.quantile", fmtFloat(h.Quantile), "must be in (0, 1)")
	}
	v.nonNegative("hedge.max_hedges", int64(h.MaxHedges))
	if h.Enabled && h.Delay <= 0 && h.Quantile == 0 && h.Trigger == "" {
		v.fail("hedge.enabled", "true", "hedging needs a delay, a quantile or a named trigger")
	}

	c := p.Circuit
	v.nonNegative("circuit.consecutive_failures", int64(c.ConsecutiveFailures))
	v.duration("circuit.cooldown", c.Cooldown)
	v.nonNegative("circuit.half_open_probes", int64(c.HalfOpenProbes))
	v.unit("circuit.failure_ratio", c.FailureRatio, "must be in (0, 1]")
	v.duration("circuit.window", c.Window)
	v.nonNegative("circuit.min_requests", int64(c.MinRequests))
	v.unit("circuit.cooldown_jitter", c.CooldownJitter, "must be in [0, 1]")
	v.duration("circuit.slow_call_duration", c.SlowCallDuration)
	switch {
	case !v.unit("circuit.slow_call_rate", c.SlowCallRate, "must be in (0, 1]"):
	case c.SlowCallRate > 0 && c.SlowCallDuration == 0:
		v.fail("circuit.slow_call_rate", fmtFloat(c.SlowCallRate), "needs circuit.slow_call_duration")
	}

	bh := p.Bulkhead
	v.nonNegative("bulkhead.max_concurrent", int64(bh.MaxConcurrent))
	v.duration("bulkhead.max_wait", bh.MaxWait)
	if bh.MaxWait > 0 && !bh.Enabled() {
		v.fail("bulkhead.max_wait", bh.MaxWait.String(), "needs bulkhead.max_concurrent or bulkhead.adaptive")
	}

	v.nonNegative("budget_cost", int64(p.BudgetCost))
	return errors.Join(v.errs...)
}

type validator struct {
	key    string
	budget bool // key names a budget
	errs   []error
}

func (v *validator) fail(field, value, reason string) {
	v.errs = append(v.errs, &FieldError{Key: v.key, Field: field, Value: value, Reason: reason, budget: v.budget})
}

// unit fails a NaN x or one outside [0, 1] (0 is the unset value of every
// such field), saying why; it reports whether x passed.
func (v *validator) unit(field string, x float64, why string) bool {
	switch {
	case math.IsNaN(x):
		v.fail(field, "NaN", why)
	case x < 0 || x > 1:
		v.fail(field, fmtFloat(x), why)
	default:
		return true
	}
	return false
}

func (v *validator) nonNegative(field string, n int64) {
	if n < 0 {
		v.fail(field, strconv.FormatInt(n, 10), "must not be negative")
	}
}

func (v *validator) duration(field string, d time.Duration) {
	if d < 0 {
		v.fail(field, d.String(), "a duration must not be negative")
	}
}

func (v *validator) float(field string, f float64) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		v.fail(field, fmtFloat(f), "must be a finite number")
	case f < 0:
		v.fail(field, fmtFloat(f), "must not be negative")
	}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
