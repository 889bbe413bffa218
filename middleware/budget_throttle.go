package middleware

import (
	"context"
	"math"
	"sync/atomic"
)

// Outcomes is implemented by budgets that learn from how tries end. The
// budget gate reports every try it let run, first tries included: success
// for a try the classifier called a success, failure for a retryable one.
// Tries that were aborted or rejected as non-retryable are not reported:
// they say nothing about the dependency's health.
type Outcomes interface {
	RecordOutcome(t Try, success bool)
}

// throttleBudget is gRPC's client-side retry throttling: a bucket of
// tokens that every failed try drains by one and every successful try
// refills by a fraction. Retries and hedges are allowed only while the
// bucket is more than half full. When a dependency goes down, a handful
// of failures empty the top half and retries stop altogether — the load
// on the dead dependency falls to about one try per call — and they
// resume once enough successes have refilled it.
type throttleBudget struct {
	max   int64 // in thousandths of a token
	ratio int64 // refill per success, thousandths
	cur   atomic.Int64
}

// NewThrottleBudget returns a full bucket of maxTokens (gRPC allows
// 1..1000; default 10 when ≤ 0) refilled by tokenRatio per success
// (default 0.1 when ≤ 0).
//
// It is gRPC's client-side retry throttling: every failed try drains the
// bucket by one token and every successful try refills it by tokenRatio.
// Retries and hedges are allowed only while the bucket is more than half
// full, so during an outage the load falls to about one try per call. The
// budget implements Outcomes (the budget gate reports each try to it) and
// TokenReporter.
func NewThrottleBudget(maxTokens, tokenRatio float64) Budget {
	return newThrottleBudget(maxTokens, tokenRatio)
}

// newThrottleBudget is NewThrottleBudget with its concrete type.
func newThrottleBudget(maxTokens, tokenRatio float64) *throttleBudget {
	if !(maxTokens > 0) || math.IsInf(maxTokens, 0) {
		maxTokens = 10
	}
	if !(tokenRatio > 0) || math.IsInf(tokenRatio, 0) {
		tokenRatio = 0.1
	}
	b := &throttleBudget{max: int64(math.Min(maxTokens, 1000) * 1000), ratio: int64(math.Min(tokenRatio, 1000) * 1000)}
	b.cur.Store(b.max)
	return b
}

// Throttle decision reasons (Decision.Reason).
const (
	reasonThrottleOpen   = "throttle_open"
	reasonThrottleClosed = "throttle_closed"
)

// Take allows a retry or hedge while more than half the tokens remain.
func (b *throttleBudget) Take(_ context.Context, t Try) Decision {
	if t.Kind == TryFirst {
		return Decision{Allowed: true, Reason: reasonFirstTry}
	}
	if b.cur.Load() > b.max/2 {
		return Decision{Allowed: true, Reason: reasonThrottleOpen}
	}
	return Decision{Allowed: false, Reason: reasonThrottleClosed}
}

// RecordOutcome drains a token for a failure and refills the ratio for a
// success, within [0, max].
func (b *throttleBudget) RecordOutcome(_ Try, success bool) {
	for {
		cur := b.cur.Load()
		next := cur - 1000
		if success {
			next = min(cur+b.ratio, b.max)
		} else if next < 0 {
			next = 0
		}
		if next == cur || b.cur.CompareAndSwap(cur, next) {
			return
		}
	}
}

// Tokens returns the tokens in the bucket.
func (b *throttleBudget) Tokens() float64 { return float64(b.cur.Load()) / 1000 }
