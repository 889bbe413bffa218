package policy

import "time"

// Option changes a Policy. Options apply in order; later ones win.
type Option func(*Policy)

// MaxAttempts sets the number of attempts, the first included.
func MaxAttempts(n int) Option { return func(p *Policy) { p.Retry.MaxAttempts = n } }

// Backoff sets the retry schedule: initial delay, cap, growth factor.
func Backoff(initial, max time.Duration, multiplier float64) Option {
	return func(p *Policy) {
		p.Retry.InitialBackoff, p.Retry.MaxBackoff, p.Retry.Multiplier = initial, max, multiplier
	}
}

// Jitter sets how backoff delays are randomised.
func Jitter(j JitterKind) Option { return func(p *Policy) { p.Retry.Jitter = j } }

// TimeoutPerAttempt gives each try its own deadline.
func TimeoutPerAttempt(d time.Duration) Option {
	return func(p *Policy) { p.Retry.TimeoutPerAttempt = d }
}

// OverallTimeout bounds the whole call, backoff sleeps included.
func OverallTimeout(d time.Duration) Option { return func(p *Policy) { p.Retry.OverallTimeout = d } }

// MaxRetryAfter caps how long a server may ask the client to wait.
func MaxRetryAfter(d time.Duration) Option { return func(p *Policy) { p.Retry.MaxRetryAfter = d } }

// WithHedge sets the hedging section.
func WithHedge(h HedgePolicy) Option { return func(p *Policy) { p.Hedge = h } }

// WithCircuitBreaker sets the circuit breaker section.
func WithCircuitBreaker(c CircuitPolicy) Option { return func(p *Policy) { p.Circuit = c } }

// WithBulkhead sets the bulkhead section.
func WithBulkhead(b BulkheadPolicy) Option { return func(p *Policy) { p.Bulkhead = b } }

// WithBudget names the budget retries and hedges take tokens from.
func WithBudget(name string) Option { return func(p *Policy) { p.Budget = name } }

// BudgetCost sets how many tokens each retry or hedge takes.
func BudgetCost(n int) Option { return func(p *Policy) { p.BudgetCost = n } }

// WithID sets the policy's identifier, shown in timelines.
func WithID(id string) Option { return func(p *Policy) { p.ID = id } }

// WithClassifier names the executor-registered classifier to use.
func WithClassifier(name string) Option { return func(p *Policy) { p.Classifier = name } }

// HTTPDefaults suits calls to HTTP services: 3 attempts, full jitter from
// 50ms to 1s, 2s per attempt, 10s overall, Retry-After honoured up to 10s.
// (Status codes are classified by the HTTP transport itself.)
func HTTPDefaults() Option {
	return func(p *Policy) {
		p.Retry = RetryPolicy{
			MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2,
			Jitter: JitterFull, TimeoutPerAttempt: 2 * time.Second, OverallTimeout: 10 * time.Second,
			MaxRetryAfter: 10 * time.Second,
		}
	}
}

// DatabaseDefaults suits calls to databases: 3 attempts, equal jitter from
// 10ms to 200ms, 1s per attempt, 5s overall, no hedging.
func DatabaseDefaults() Option {
	return func(p *Policy) {
		p.Retry = RetryPolicy{
			MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Multiplier: 2,
			Jitter: JitterEqual, TimeoutPerAttempt: time.Second, OverallTimeout: 5 * time.Second,
			MaxRetryAfter: defaultMaxRetryAfter,
		}
		p.Hedge = HedgePolicy{}
	}
}

// BackgroundJobDefaults suits work nobody waits on: 8 attempts, full
// jitter from 1s to 1m, no per-attempt timeout, 5m overall.
func BackgroundJobDefaults() Option {
	return func(p *Policy) {
		p.Retry = RetryPolicy{
			MaxAttempts: 8, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2,
			Jitter: JitterFull, OverallTimeout: 5 * time.Minute, MaxRetryAfter: time.Minute,
		}
	}
}

// LowLatencyDefaults suits fast, idempotent reads: 2 attempts, 5ms to
// 20ms backoff, 250ms per attempt, 1s overall, one hedge at the key's p95
// (10ms until enough latencies are known).
func LowLatencyDefaults() Option {
	return func(p *Policy) {
		p.Retry = RetryPolicy{
			MaxAttempts: 2, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Multiplier: 2,
			Jitter: JitterEqual, TimeoutPerAttempt: 250 * time.Millisecond, OverallTimeout: time.Second,
			MaxRetryAfter: 100 * time.Millisecond,
		}
		p.Hedge = HedgePolicy{Enabled: true, Delay: 10 * time.Millisecond, Quantile: 0.95, MaxHedges: 1}
	}
}
