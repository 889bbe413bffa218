package policy

import (
	"math"
	"time"
)

// Bounds and defaults Normalize applies (see the table in its doc). A zero
// field means "unset" and takes its default silently; a set field outside
// its bounds is clamped to the nearest bound and reported.
const (
	defaultMaxAttempts = 3
	minMaxAttempts     = 1
	maxMaxAttempts     = 10

	defaultInitialBackoff = 10 * time.Millisecond
	minBackoff            = time.Millisecond
	maxInitialBackoff     = time.Minute
	defaultMaxBackoff     = 250 * time.Millisecond
	maxMaxBackoff         = 5 * time.Minute

	defaultMultiplier = 2.0
	minMultiplier     = 1.0
	maxMultiplier     = 10.0

	// Timeouts: 0 means none; otherwise between minTimeout and maxTimeout.
	minTimeout = time.Millisecond
	maxTimeout = 5 * time.Minute

	defaultMaxRetryAfter = 10 * time.Second
	maxMaxRetryAfter     = 5 * time.Minute

	defaultHedgeDelay = 10 * time.Millisecond
	minHedgeDelay     = time.Millisecond
	maxHedgeDelay     = time.Minute
	minQuantile       = 0.5
	maxQuantile       = 0.999
	maxMaxHedges      = 3

	defaultConsecutiveFailures = 5
	maxConsecutiveFailures     = 1000
	defaultCooldown            = 10 * time.Second
	minCooldown                = 10 * time.Millisecond
	maxCooldown                = 5 * time.Minute
	maxHalfOpenProbes          = 100
	defaultWindow              = time.Minute
	minWindow                  = time.Second
	maxWindow                  = 10 * time.Minute
	defaultMinRequests         = 10
	maxMinRequests             = 10000

	maxBudgetCost = 1000

	maxBulkhead            = 100000
	defaultAdaptiveCeiling = 1000
)

// Normalize returns p with every field inside its bounds, and the names of
// the fields it clamped ("retry.max_attempts", …, as in the policy file
// format). Unset (zero) fields take their defaults and are not reported.
// Every section is normalized, enabled or not. Normalize is idempotent:
// normalizing its result changes nothing and reports nothing.
//
// The defaults and bounds, by field as the policy file names it:
//
//	field                          default   min        max
//	retry.max_attempts             3         1          10
//	retry.initial_backoff          10ms      1ms        1m
//	retry.max_backoff              250ms *   initial    5m
//	retry.multiplier               2         1          10
//	retry.jitter                   full **   none       decorrelated (else full)
//	retry.timeout_per_attempt      0 (none)  1ms        5m
//	retry.overall_timeout          0 (none)  1ms        5m
//	retry.max_retry_after          10s       1ms        5m
//	hedge.delay                    10ms      1ms        1m
//	hedge.quantile                 0 (fixed) 0.5        0.999
//	hedge.max_hedges               1         1          3
//	circuit.consecutive_failures   5         1          1000
//	circuit.cooldown               10s       10ms       5m
//	circuit.half_open_probes       1         1          100
//	circuit.failure_ratio          0 (off)   0.01       1
//	circuit.window                 1m        1s         10m
//	circuit.min_requests           10        1          10000
//	circuit.cooldown_jitter        0 (none)  0          1
//	circuit.slow_call_duration     0 (off)   1ms        5m
//	circuit.slow_call_rate         1         0.01       1  (0 without slow_call_duration)
//	bulkhead.max_concurrent        0 (off) † 1          100000
//	bulkhead.max_wait              0         1µs        5m
//	budget_cost                    1         1          1000
//
// (*) or initial_backoff, if larger. (**) see below. (†) 1000 with
// bulkhead.adaptive. A negative timeout is
// clamped to 0 (none); a NaN multiplier, quantile (0.999) or failure
// ratio (0.5) takes a default and is reported.
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
	r.MaxAttempts = in(&n, "retry.max_attempts", r.MaxAttempts, defaultMaxAttempts, minMaxAttempts, maxMaxAttempts)
	r.InitialBackoff = in(&n, "retry.initial_backoff", r.InitialBackoff, defaultInitialBackoff, minBackoff, maxInitialBackoff)
	defMax := defaultMaxBackoff
	if defMax < r.InitialBackoff {
		defMax = r.InitialBackoff
	}
	r.MaxBackoff = in(&n, "retry.max_backoff", r.MaxBackoff, defMax, r.InitialBackoff, maxMaxBackoff)
	r.Multiplier = n.floatIn("retry.multiplier", r.Multiplier, defaultMultiplier, minMultiplier, maxMultiplier)
	if r.Jitter > JitterDecorrelated {
		r.Jitter = JitterFull
		n.clamped("retry.jitter")
	}
	r.TimeoutPerAttempt = n.optionalDur("retry.timeout_per_attempt", r.TimeoutPerAttempt, minTimeout, maxTimeout)
	r.OverallTimeout = n.optionalDur("retry.overall_timeout", r.OverallTimeout, minTimeout, maxTimeout)
	r.MaxRetryAfter = in(&n, "retry.max_retry_after", r.MaxRetryAfter, defaultMaxRetryAfter, minTimeout, maxMaxRetryAfter)

	h := &p.Hedge
	h.Delay = in(&n, "hedge.delay", h.Delay, defaultHedgeDelay, minHedgeDelay, maxHedgeDelay)
	if h.Quantile != 0 || math.IsNaN(h.Quantile) {
		h.Quantile = n.floatIn("hedge.quantile", h.Quantile, maxQuantile, minQuantile, maxQuantile)
	}
	h.MaxHedges = in(&n, "hedge.max_hedges", h.MaxHedges, 1, 1, maxMaxHedges)

	c := &p.Circuit
	c.ConsecutiveFailures = in(&n, "circuit.consecutive_failures", c.ConsecutiveFailures, defaultConsecutiveFailures, 1, maxConsecutiveFailures)
	c.Cooldown = in(&n, "circuit.cooldown", c.Cooldown, defaultCooldown, minCooldown, maxCooldown)
	c.HalfOpenProbes = in(&n, "circuit.half_open_probes", c.HalfOpenProbes, 1, 1, maxHalfOpenProbes)
	if c.FailureRatio != 0 || math.IsNaN(c.FailureRatio) {
		c.FailureRatio = n.floatIn("circuit.failure_ratio", c.FailureRatio, 0.5, 0.01, 1)
	}
	c.Window = in(&n, "circuit.window", c.Window, defaultWindow, minWindow, maxWindow)
	c.MinRequests = in(&n, "circuit.min_requests", c.MinRequests, defaultMinRequests, 1, maxMinRequests)
	if c.CooldownJitter != 0 || math.IsNaN(c.CooldownJitter) {
		c.CooldownJitter = n.floatIn("circuit.cooldown_jitter", c.CooldownJitter, 0, 0, 1)
	}
	c.SlowCallDuration = n.optionalDur("circuit.slow_call_duration", c.SlowCallDuration, minTimeout, maxTimeout)
	if c.SlowCallDuration == 0 {
		if c.SlowCallRate != 0 {
			c.SlowCallRate = 0 // meaningless without a duration; not a clamp
		}
	} else {
		c.SlowCallRate = n.floatIn("circuit.slow_call_rate", c.SlowCallRate, 1, 0.01, 1)
	}

	bh := &p.Bulkhead
	if bh.MaxConcurrent != 0 || bh.Adaptive {
		def := 0
		if bh.Adaptive {
			def = defaultAdaptiveCeiling
		}
		bh.MaxConcurrent = in(&n, "bulkhead.max_concurrent", bh.MaxConcurrent, def, 1, maxBulkhead)
	}
	bh.MaxWait = n.optionalDur("bulkhead.max_wait", bh.MaxWait, time.Microsecond, maxTimeout)

	p.BudgetCost = in(&n, "budget_cost", p.BudgetCost, 1, 1, maxBudgetCost)
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
