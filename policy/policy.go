package policy

import (
	"time"

	"github.com/recourse-go/recourse/middleware"
)

// Policy is everything recourse needs to know to run calls for one key.
// Build one with New; a zero Policy normalizes to exactly what Defaults()
// normalizes to (see Normalize).
type Policy struct {
	// Key is the key the policy applies to.
	Key Key
	// ID optionally identifies the policy (a version, a config hash); it
	// appears in timelines.
	ID string
	// Retry bounds attempts, backoff and timeouts.
	Retry RetryPolicy
	// Hedge configures concurrent tries against slow attempts.
	Hedge HedgePolicy
	// Circuit configures the key's circuit breaker.
	Circuit CircuitPolicy
	// Bulkhead bounds how many of the key's tries run at once.
	Bulkhead BulkheadPolicy
	// Budget names the executor budget every retry and hedge must take a
	// token from; empty means no budget.
	Budget string
	// BudgetCost is the number of tokens each retry or hedge takes (≥ 1).
	BudgetCost int
	// Classifier names an executor-registered classifier; empty means the
	// executor's default classifier.
	Classifier string
}

// JitterKind selects how backoff delays are randomised.
type JitterKind = middleware.JitterMode

// Jitter kinds.
const (
	JitterNone         = middleware.JitterNone
	JitterFull         = middleware.JitterFull
	JitterEqual        = middleware.JitterEqual
	JitterDecorrelated = middleware.JitterDecorrelated
)

// RetryPolicy bounds the attempt loop.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts, the first included.
	MaxAttempts int
	// InitialBackoff is the delay before the first retry; it grows by
	// Multiplier per retry up to MaxBackoff. Normalize keeps it between
	// 1ms and 1m; 0 means unset and normalizes to 10ms.
	InitialBackoff time.Duration
	// MaxBackoff caps each delay, before jitter. Normalize keeps it
	// between InitialBackoff and 5m; 0 means unset and normalizes to
	// 250ms, or to InitialBackoff if that is larger.
	MaxBackoff time.Duration
	// Multiplier is the factor each delay grows by over the one before,
	// up to MaxBackoff: 2 doubles it, 1 keeps it constant. Normalize keeps
	// it between 1 and 10; 0 means unset and normalizes to 2.
	Multiplier float64
	// Jitter randomises each delay.
	Jitter JitterKind
	// TimeoutPerAttempt is each try's own deadline; 0 means none.
	TimeoutPerAttempt time.Duration
	// OverallTimeout bounds the whole call, sleeps included; 0 means none.
	OverallTimeout time.Duration
	// MaxRetryAfter caps a server-requested delay (Retry-After, gRPC
	// pushback); a longer request ends the call with a clear error.
	MaxRetryAfter time.Duration
}

// HedgePolicy configures hedging: a concurrent try spawned when the
// running one is slow. Hedging is for idempotent operations only.
type HedgePolicy struct {
	// Enabled turns hedging on.
	Enabled bool
	// Delay is how long a try runs before a hedge is spawned (the fixed
	// trigger), and the fallback of the latency trigger before it has
	// enough samples.
	Delay time.Duration
	// Quantile, when in (0, 1), selects the latency-aware trigger: hedge
	// when a try outlives this quantile (0.99 = p99) of the key's recent
	// latencies. 0 selects the fixed-delay trigger.
	Quantile float64
	// MaxHedges bounds the hedges spawned per attempt.
	MaxHedges int
	// Budget names a budget hedges take tokens from, in place of the
	// policy's Budget; empty means the policy's Budget.
	Budget string
	// Trigger names an executor-registered trigger; empty means the one
	// Delay and Quantile describe.
	Trigger string
}

// CircuitPolicy configures the key's circuit breaker.
type CircuitPolicy struct {
	// Enabled turns the breaker on.
	Enabled bool
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row (the default mode).
	ConsecutiveFailures int
	// Cooldown is how long the breaker stays open before probing.
	Cooldown time.Duration
	// HalfOpenProbes is how many probe calls a half-open breaker admits;
	// that many consecutive successes close it.
	HalfOpenProbes int
	// FailureRatio, when in (0, 1], switches to ratio mode: trip when the
	// failure ratio over Window reaches it, once MinRequests were seen.
	FailureRatio float64
	// Window is the rolling window of ratio mode.
	Window time.Duration
	// MinRequests is the minimum number of calls in Window before ratio
	// mode or slow-call detection may trip.
	MinRequests int
	// CooldownJitter, in [0, 1], lengthens each open period by a random
	// fraction of Cooldown up to it, so that the replicas of a fleet do not
	// probe in lockstep (0: every open period lasts exactly Cooldown).
	CooldownJitter float64
	// SlowCallDuration, when set, turns on slow-call detection: a
	// successful try that took at least this long is slow, and the breaker
	// opens when slow tries reach SlowCallRate of the tries it counted in
	// Window (once MinRequests were seen). A slow half-open probe fails.
	SlowCallDuration time.Duration
	// SlowCallRate is the share of slow tries, in (0, 1], that opens the
	// breaker (default 1: all of them). Used only with SlowCallDuration.
	SlowCallRate float64
}

// BulkheadPolicy bounds how many of a key's tries — first tries, retries
// and hedges alike — run at once in this process. A try that finds no room
// waits up to MaxWait and is then refused with middleware.ErrBulkheadFull
// (reason "bulkhead_full"): not retried, not counted by the breaker, and a
// hedge that finds no room is simply not sent. The zero BulkheadPolicy
// means no bulkhead.
type BulkheadPolicy struct {
	// MaxConcurrent is how many tries may run at once; 0 means no
	// bulkhead. With Adaptive it is the ceiling of the adaptive limit.
	MaxConcurrent int
	// MaxWait is how long a try may wait for room (0: refused at once).
	MaxWait time.Duration
	// Adaptive makes the limit follow measured latency (see
	// middleware.NewAdaptiveLimit) between 1 and MaxConcurrent (default
	// ceiling 1000 when MaxConcurrent is 0).
	Adaptive bool
}

// Enabled reports whether the policy asks for a bulkhead.
func (b BulkheadPolicy) Enabled() bool { return b.MaxConcurrent > 0 || b.Adaptive }

// New returns the policy for key with the defaults and then opts applied.
// Nil options are skipped.
func New(key string, opts ...Option) Policy {
	p := Defaults()
	p.Key = ParseKey(key)
	for _, o := range opts {
		if o != nil {
			o(&p)
		}
	}
	return p
}

// Defaults returns the safe default policy (no key): 3 attempts with full
// jitter from 10ms doubling to 250ms, server pushback up to 10s, no
// timeouts, no hedging, no breaker, no budget.
func Defaults() Policy {
	return Policy{
		Retry: RetryPolicy{
			MaxAttempts:    defaultMaxAttempts,
			InitialBackoff: defaultInitialBackoff,
			MaxBackoff:     defaultMaxBackoff,
			Multiplier:     defaultMultiplier,
			Jitter:         JitterFull,
			MaxRetryAfter:  defaultMaxRetryAfter,
		},
		BudgetCost: 1,
	}
}
