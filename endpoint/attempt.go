package endpoint

import (
	"context"

	"github.com/recourse-go/recourse/internal/tryctx"
)

// BreakerState is the state of a key's circuit breaker as inner decorators
// see it. The zero value, BreakerClosed, is also what is seen when the
// policy has no breaker.
type BreakerState uint8

const (
	// BreakerClosed: calls flow normally.
	BreakerClosed BreakerState = iota
	// BreakerHalfOpen: a bounded number of probes are let through.
	BreakerHalfOpen
	// BreakerOpen: calls fail fast without reaching the dependency.
	BreakerOpen
)

// String returns "closed", "half_open" or "open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half_open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

// AttemptInfo describes the try an Endpoint is running. The retry loop sets
// it for each attempt; the breaker records its state; the hedge decorator
// gives each hedged try its own copy with HedgeIndex set.
type AttemptInfo struct {
	// Key is the policy key of the call ("payments.Charge").
	Key string
	// PolicyID is the optional identifier of the policy in force.
	PolicyID string
	// Attempt is the 1-based number of the attempt within the call. Hedged
	// tries share the number of the attempt they hedge.
	Attempt int
	// HedgeIndex is 0 for the primary try of an attempt and 1, 2, … for
	// the hedges spawned beside it.
	HedgeIndex int
	// Breaker is the key's breaker state when the attempt was admitted.
	Breaker BreakerState
}

// RetryIndex returns the 0-based index of the attempt: 0 for the first
// try of the call, 1 for the first retry, and so on.
func (a AttemptInfo) RetryIndex() int {
	if a.Attempt < 1 {
		return 0
	}
	return a.Attempt - 1
}

// IsHedge reports whether the try is a hedge rather than a primary try.
func (a AttemptInfo) IsHedge() bool { return a.HedgeIndex > 0 }

// IsFirst reports whether this is the call's first try: attempt 1, not a
// hedge. Budgets never charge it.
func (a AttemptInfo) IsFirst() bool { return a.Attempt <= 1 && a.HedgeIndex == 0 }

// WithAttempt returns a context carrying info. The retry loop and the
// hedge decorator call it for each try; tests of an operation can use it
// to run the operation as a given try.
func WithAttempt(ctx context.Context, info AttemptInfo) context.Context {
	return tryctx.WithAttempt(ctx, info)
}

// AttemptFromContext returns the AttemptInfo of the innermost try in ctx.
func AttemptFromContext(ctx context.Context) (AttemptInfo, bool) {
	if c, ok := tryctx.AttemptOf[AttemptInfo](ctx); ok {
		return c.Info, true
	}
	return AttemptInfo{}, false
}
