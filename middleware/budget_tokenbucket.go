package middleware

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/internal/clockx"
)

// tokenBucketBudget rations retries and hedges with a token bucket
// (golang.org/x/time/rate): it starts full with capacity tokens and refills
// at refillPerSecond. Each retry or hedge takes its cost in tokens; first
// tries take none.
//
// Any clock reading is accepted. A clock that steps back restarts refill
// from the earlier reading, keeping the tokens there are (rate.Limiter
// alone would refill nothing until the clock caught up again); a jump
// forward refills at most to capacity.
type tokenBucketBudget struct {
	lim   *rate.Limiter
	clock clock.Clock

	mu   sync.Mutex
	last time.Time // latest reading given to lim
}

// NewTokenBucketBudget returns a budget of capacity tokens refilled at
// refillPerSecond. A capacity of 0 refuses every retry and hedge; a
// negative or NaN refill rate is taken as 0 (no refill), and one above a
// token per nanosecond (+Inf included) as a token per nanosecond.
//
// The bucket (golang.org/x/time/rate) starts full; each retry or hedge
// takes its cost in tokens, first tries take none. The budget implements
// TokenReporter. It reads the option WithClock.
func NewTokenBucketBudget(capacity int, refillPerSecond float64, opts ...Option) Budget {
	var c clockOnly
	applyOptions(&c, opts)
	return newTokenBucketBudget(capacity, refillPerSecond, c.clock)
}

// newTokenBucketBudget is NewTokenBucketBudget with its concrete type, on clock c (nil: clock.Real).
func newTokenBucketBudget(capacity int, refillPerSecond float64, c clock.Clock) *tokenBucketBudget {
	if capacity < 0 {
		capacity = 0
	}
	if refillPerSecond < 0 || math.IsNaN(refillPerSecond) {
		refillPerSecond = 0
	}
	// The limiter keeps time in nanoseconds: at more than a token per
	// nanosecond a debt rounds to no wait at all and every try would pass
	// (and +Inf overflows its arithmetic), so faster refills are capped.
	if refillPerSecond > maxRefillPerSecond {
		refillPerSecond = maxRefillPerSecond
	}
	// rate.Limiter starts full.
	return &tokenBucketBudget{lim: rate.NewLimiter(rate.Limit(refillPerSecond), capacity), clock: clockx.Or(c)}
}

const maxRefillPerSecond = 1e9 // a token per nanosecond

// Token bucket decision reasons (Decision.Reason).
const (
	reasonTokensAvailable = "tokens_available"
	reasonTokensExhausted = "tokens_exhausted"
	reasonFirstTry        = "first_try"
)

// Take takes t.Cost tokens for a retry or hedge, if there are enough.
func (b *tokenBucketBudget) Take(_ context.Context, t Try) Decision {
	if t.Kind == TryFirst {
		return Decision{Allowed: true, Reason: reasonFirstTry}
	}
	now := b.clock.Now()
	b.mu.Lock()
	if now.Before(b.last) {
		b.lim.SetLimitAt(now, b.lim.Limit()) // rebase refill on now
	}
	b.last = now
	ok := b.lim.AllowN(now, costOf(t))
	b.mu.Unlock()
	if ok {
		return Decision{Allowed: true, Reason: reasonTokensAvailable}
	}
	return Decision{Allowed: false, Reason: reasonTokensExhausted}
}

// Tokens returns the tokens available now.
func (b *tokenBucketBudget) Tokens() float64 { return b.lim.TokensAt(b.clock.Now()) }

func costOf(t Try) int {
	if t.Cost < 1 {
		return 1
	}
	return t.Cost
}
