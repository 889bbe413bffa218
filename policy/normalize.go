package policy

import (
	"math"
	"time"
)

// Bounds and defaults Normalize applies. A zero field means "unset" and
// takes its default silently; a set field outside its bounds is clamped to
// the nearest bound and reported.
const (
	DefaultMaxAttempts = 3
	MinMaxAttempts     = 1
	MaxMaxAttempts     = 10

	DefaultInitialBackoff = 10 * time.Millisecond
	MinBackoff            = time.Millisecond
	MaxInitialBackoff     = time.Minute
	DefaultMaxBackoff     = 250 * time.Millisecond
	MaxMaxBackoff         = 5 * time.Minute

	DefaultMultiplier = 2.0
	MinMultiplier     = 1.0
	MaxMultiplier     = 10.0

	// Timeouts: 0 means none; otherwise between MinTimeout and MaxTimeout.
	MinTimeout = time.Millisecond
	MaxTimeout = 5 * time.Minute

	DefaultMaxRetryAfter = 10 * time.Second
	MaxMaxRetryAfter     = 5 * time.Minute

	DefaultHedgeDelay = 10 * time.Millisecond
	MinHedgeDelay     = time.Millisecond
	MaxHedgeDelay     = time.Minute
	MinQuantile       = 0.5
	MaxQuantile       = 0.999
	MaxMaxHedges      = 3

	DefaultConsecutiveFailures = 5
	MaxConsecutiveFailures     = 1000
	DefaultCooldown            = 10 * time.Second
	MinCooldown                = 10 * time.Millisecond
	MaxCooldown                = 5 * time.Minute
	MaxHalfOpenProbes          = 100
	DefaultWindow              = time.Minute
	MinWindow                  = time.Second
	MaxWindow                  = 10 * time.Minute
	DefaultMinRequests         = 10
	MaxMinRequests             = 10000

	MaxBudgetCost = 1000
)

// Normalize returns p with every field inside its bounds, and the names of
// the fields it clamped ("retry.max_attempts", …, as in the policy file
// format). Unset (zero) fields take their defaults and are not reported.
// Every section is normalized, enabled or not. Normalize is idempotent:
// normalizing its result changes nothing and reports nothing.
//
// Jitter's zero value is JitterNone, so a zero Jitter cannot tell "unset"
// from "none" by itself. A retry section that sets no part of the backoff
// schedule (InitialBackoff, MaxBackoff, Multiplier and Jitter all zero)
// takes the default schedule, full jitter included; a section that sets
// any of them keeps its Jitter as given. So a zero Policy normalizes to
// exactly what Defaults() normalizes to, and hand-built policies do not
// retry in lockstep unless they ask to.
func (p Policy) Normalize() (Policy, []string) {
	n := normalizer{}
	r := &p.Retry
	if r.InitialBackoff == 0 && r.MaxBackoff == 0 && r.Multiplier == 0 && r.Jitter == JitterNone {
		r.Jitter = JitterFull
	}
	r.MaxAttempts = in(&n, "retry.max_attempts", r.MaxAttempts, DefaultMaxAttempts, MinMaxAttempts, MaxMaxAttempts)
	r.InitialBackoff = in(&n, "retry.initial_backoff", r.InitialBackoff, DefaultInitialBackoff, MinBackoff, MaxInitialBackoff)
	defMax := DefaultMaxBackoff
	if defMax < r.InitialBackoff {
		defMax = r.InitialBackoff
	}
	r.MaxBackoff = in(&n, "retry.max_backoff", r.MaxBackoff, defMax, r.InitialBackoff, MaxMaxBackoff)
	r.Multiplier = n.floatIn("retry.multiplier", r.Multiplier, DefaultMultiplier, MinMultiplier, MaxMultiplier)
	if r.Jitter > JitterDecorrelated {
		r.Jitter = JitterFull
		n.clamped("retry.jitter")
	}
	r.TimeoutPerAttempt = n.optionalDur("retry.timeout_per_attempt", r.TimeoutPerAttempt, MinTimeout, MaxTimeout)
	r.OverallTimeout = n.optionalDur("retry.overall_timeout", r.OverallTimeout, MinTimeout, MaxTimeout)
	r.MaxRetryAfter = in(&n, "retry.max_retry_after", r.MaxRetryAfter, DefaultMaxRetryAfter, MinTimeout, MaxMaxRetryAfter)

	h := &p.Hedge
	h.Delay = in(&n, "hedge.delay", h.Delay, DefaultHedgeDelay, MinHedgeDelay, MaxHedgeDelay)
	if h.Quantile != 0 || math.IsNaN(h.Quantile) {
		h.Quantile = n.floatIn("hedge.quantile", h.Quantile, MaxQuantile, MinQuantile, MaxQuantile)
	}
	h.MaxHedges = in(&n, "hedge.max_hedges", h.MaxHedges, 1, 1, MaxMaxHedges)

	c := &p.Circuit
	c.ConsecutiveFailures = in(&n, "circuit.consecutive_failures", c.ConsecutiveFailures, DefaultConsecutiveFailures, 1, MaxConsecutiveFailures)
	c.Cooldown = in(&n, "circuit.cooldown", c.Cooldown, DefaultCooldown, MinCooldown, MaxCooldown)
	c.HalfOpenProbes = in(&n, "circuit.half_open_probes", c.HalfOpenProbes, 1, 1, MaxHalfOpenProbes)
	if c.FailureRatio != 0 || math.IsNaN(c.FailureRatio) {
		c.FailureRatio = n.floatIn("circuit.failure_ratio", c.FailureRatio, 0.5, 0.01, 1)
	}
	c.Window = in(&n, "circuit.window", c.Window, DefaultWindow, MinWindow, MaxWindow)
	c.MinRequests = in(&n, "circuit.min_requests", c.MinRequests, DefaultMinRequests, 1, MaxMinRequests)

	p.BudgetCost = in(&n, "budget_cost", p.BudgetCost, 1, 1, MaxBudgetCost)
	return p, n.fields
}

type normalizer struct{ fields []string }

func (n *normalizer) clamped(field string) { n.fields = append(n.fields, field) }

// in returns def for an unset (zero) v, v clamped to [lo, hi] otherwise,
// reporting a clamp.
func in[T int | time.Duration | float64](n *normalizer, field string, v, def, lo, hi T) T {
	switch {
	case v == 0:
		return def
	case v < lo:
		n.clamped(field)
		return lo
	case v > hi:
		n.clamped(field)
		return hi
	}
	return v
}

// optionalDur keeps 0 (feature off); a negative value is clamped to 0.
func (n *normalizer) optionalDur(field string, v, lo, hi time.Duration) time.Duration {
	switch {
	case v == 0:
		return 0
	case v < 0:
		n.clamped(field)
		return 0
	}
	return in(n, field, v, 0, lo, hi)
}

// floatIn is in for floats, with NaN taking the default (and reported).
func (n *normalizer) floatIn(field string, v, def, lo, hi float64) float64 {
	if math.IsNaN(v) {
		n.clamped(field)
		return def
	}
	return in(n, field, v, def, lo, hi)
}
