package admissionattack

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
)

func trip(b *middleware.CircuitBreaker) {
	_ = call(through(b, func(context.Context) error { return errBoom }))
}

// Jitter that is zero, negative or NaN is unset: the open period is
// exactly Cooldown, with no wait on the (never advanced) fake clock. Above
// 1 it is taken as 1 (as BreakerConfig.CooldownJitter documents).
func TestCooldownJitterOddValuesAreUnset(t *testing.T) {
	for _, j := range []float64{math.NaN(), -1, 5, math.Inf(1), math.Inf(-1)} {
		t.Run(fmt.Sprint(j), func(t *testing.T) {
			if j > 1 {
				if cj := middleware.NewCircuitBreaker(middleware.BreakerConfig{CooldownJitter: j}).Config().CooldownJitter; cj != 1 {
					t.Fatalf("Config().CooldownJitter %v for %v, want 1", cj, j)
				}
				return
			}
			b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: 20 * time.Millisecond, CooldownJitter: j, Clock: clock.NewFake(time.Unix(0, 0))})
			if cj := b.Config().CooldownJitter; cj != 0 {
				t.Errorf("Config().CooldownJitter %v, want 0 (unset)", cj)
			}
			trip(b)
			waitFor(t, "half-open after the plain cooldown", func() bool { return b.State() == endpoint.BreakerHalfOpen })
		})
	}
}

// With jitter 1 the open period lies in [Cooldown, 2×Cooldown], the jitter
// on the breaker's clock; breakers that opened together do not all leave
// at once.
func TestCooldownJitterSpreadsAndIsBounded(t *testing.T) {
	const cooldown = 30 * time.Millisecond
	const n = 12
	fc := clock.NewFake(time.Unix(0, 0))
	var bs []*middleware.CircuitBreaker
	start := time.Now()
	for i := 0; i < n; i++ {
		b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: cooldown, CooldownJitter: 1, Clock: fc})
		trip(b)
		bs = append(bs, b)
	}
	for i, b := range bs {
		if time.Since(start) < cooldown && b.State() != endpoint.BreakerOpen {
			t.Fatalf("breaker %d left open before its cooldown", i)
		}
	}
	time.Sleep(cooldown + 20*time.Millisecond)
	// The whole open period is also measured on the breaker's clock: move
	// it by Cooldown, then step through the jittered part.
	fc.Advance(cooldown - time.Millisecond)
	at := make([]int, n)
	for i := range at {
		at[i] = -1
	}
	for step := 0; step <= 31; step++ {
		for i, b := range bs {
			if at[i] < 0 && b.State() == endpoint.BreakerHalfOpen {
				at[i] = step
			}
		}
		fc.Advance(time.Millisecond)
	}
	distinct := map[int]bool{}
	for i, a := range at {
		if a < 0 {
			t.Fatalf("breaker %d still open after 2×cooldown (fake steps: %v)", i, at)
		}
		distinct[a] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("all %d breakers left open at the same jitter step: %v", n, at)
	}
}

// ForceOpen holds past a jittered cooldown too, however far the clock goes.
func TestForceOpenHoldsPastJitteredCooldown(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: 10 * time.Millisecond, CooldownJitter: 1, Clock: fc})
	trip(b)
	b.ForceOpen()
	time.Sleep(50 * time.Millisecond)
	fc.Advance(time.Hour)
	if st := b.State(); st != endpoint.BreakerOpen {
		t.Fatalf("forced breaker: %v", st)
	}
	b.Reset()
	if st := b.State(); st != endpoint.BreakerClosed {
		t.Fatalf("after Reset: %v", st)
	}
}
