package middleware

import (
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
)

// TestWithClockReachesEveryConstructor: the one clock option sets the
// clock of every constructor that keeps time, and options meant for
// another constructor are ignored rather than misapplied.
func TestWithClockReachesEveryConstructor(t *testing.T) {
	fake := clock.NewFake(time.Unix(100, 0))
	opts := []Option{WithClock(fake), MaxAttempts(7), AdaptiveMaxLimit(5), Ratio(0.5), nil}

	r := defaultRetrier()
	applyOptions(r, opts)
	ob := &observer{}
	applyOptions(ob, opts)
	b := NewBulkhead(2, time.Second, opts...)
	l := NewAdaptiveLimit(opts...)
	rb := newRatioBudget(opts...)
	tb := NewTokenBucketBudget(1, 1, opts...).(*tokenBucketBudget)

	for name, got := range map[string]clock.Clock{
		"Retry": r.clock, "Observe": ob.clock, "NewBulkhead": b.clock,
		"NewAdaptiveLimit": l.clock, "NewRatioBudget": rb.clock, "NewTokenBucketBudget": tb.clock,
	} {
		if got != clock.Clock(fake) {
			t.Errorf("%s: clock = %T, want the fake", name, got)
		}
	}
	if r.maxAttempts != 7 || l.maxLimit != 5 || rb.ratio != 0.5 {
		t.Errorf("own options not applied: attempts %d, max limit %d, ratio %g", r.maxAttempts, l.maxLimit, rb.ratio)
	}
	if cap(b.sem) != 2 {
		t.Errorf("bulkhead changed by foreign options: max %d", cap(b.sem))
	}
}

// TestWithClockNilIsReal: WithClock(nil) gives the real clock.
func TestWithClockNilIsReal(t *testing.T) {
	r := defaultRetrier()
	applyOptions(r, []Option{WithClock(nil)})
	if _, ok := r.clock.(clock.Real); !ok {
		t.Fatalf("clock = %T, want clock.Real", r.clock)
	}
}
