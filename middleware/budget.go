package middleware

import (
	"context"
	"errors"
)

// ErrBudgetExhausted is returned (wrapped) when a budget refuses a try and
// no earlier try of the call produced a real error to return instead.
var ErrBudgetExhausted = errors.New("recourse: retry budget exhausted")

// TryKind says what kind of try asks a budget for tokens.
type TryKind uint8

const (
	// TryFirst is a call's first try. Budgets are told of it so ratio
	// budgets can count calls, but it is never charged or refused.
	TryFirst TryKind = iota
	// TryRetry is a retry after a failed attempt.
	TryRetry
	// TryHedge is a hedged try beside a slow one.
	TryHedge
)

// String returns "first", "retry" or "hedge".
func (k TryKind) String() string {
	switch k {
	case TryFirst:
		return "first"
	case TryRetry:
		return "retry"
	case TryHedge:
		return "hedge"
	}
	return "unknown"
}

// Try describes one try asking a budget for tokens.
type Try struct {
	// Key is the call's policy key.
	Key string
	// Kind is first, retry or hedge.
	Kind TryKind
	// Cost is the number of tokens asked for (≥ 1).
	Cost int
}

// Decision is a budget's answer.
type Decision struct {
	// Allowed reports whether the try may run.
	Allowed bool
	// Reason explains the decision. The budgets of this package give
	// "first_try" (a first try, always allowed), "tokens_available" /
	// "tokens_exhausted" (token bucket), "ratio_available" /
	// "ratio_exceeded" (ratio) and "throttle_open" / "throttle_closed"
	// (throttle), "unlimited" (UnlimitedBudget); the executor adds
	// "budget_missing" for a budget it cannot resolve.
	Reason string
}

// TokenReporter is implemented by budgets that can say how many tokens
// they hold now — those of NewTokenBucketBudget
// and NewThrottleBudget — for metrics and tests:
//
//	if r, ok := b.(middleware.TokenReporter); ok { gauge.Set(r.Tokens()) }
type TokenReporter interface {
	Tokens() float64
}

// Budget rations the tries beyond a call's first: retries and hedges take
// tokens, so that a failing dependency does not receive a multiple of its
// normal load. Implementations must be safe for concurrent use and must
// allow every TryFirst.
type Budget interface {
	// Take decides whether t may run, taking its tokens if so.
	Take(ctx context.Context, t Try) Decision
}

// Releaser is implemented by budgets that bound tries in flight rather
// than tries per unit of time: Release is called when an allowed try ends.
type Releaser interface {
	Release(t Try)
}

// UnlimitedBudget allows every try.
type UnlimitedBudget struct{}

// Take allows t.
func (UnlimitedBudget) Take(context.Context, Try) Decision {
	return Decision{Allowed: true, Reason: "unlimited"}
}
