package middleware

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
)

// setClock is a clock whose reading the test sets, backwards included.
type setClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *setClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *setClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *setClock) NewTimer(d time.Duration) clock.Timer {
	return clock.NewFake(c.Now()).NewTimer(d)
}

func (c *setClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return clock.NewFake(c.Now()).AfterFunc(d, f)
}

// oddReadings are clock readings budgets must survive.
var oddReadings = []struct {
	name string
	at   time.Time
}{
	{"zero", time.Time{}},
	{"unix0", time.Unix(0, 0)},
	{"before1970", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
	{"far_future", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	{"max", time.Unix(math.MaxInt64-62135596801, 999999999)},
	{"min", time.Unix(math.MinInt64, 0)},
	{"now", time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)},
}

var (
	first = Try{Key: "k", Kind: TryFirst, Cost: 1}
	retry = Try{Key: "k", Kind: TryRetry, Cost: 1}
	hedge = Try{Key: "k", Kind: TryHedge, Cost: 1}
)

// takeN makes n first tries and then asks for up to 1000 retries and
// hedges, returning how many were allowed. It fails the test on a refused
// first try.
func takeN(t *testing.T, b Budget, firsts int) (allowed int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < firsts; i++ {
		if d := b.Take(ctx, first); !d.Allowed {
			t.Fatalf("first try refused: %+v", d)
		}
	}
	for i := 0; i < 1000; i++ {
		try := retry
		if i%2 == 1 {
			try = hedge
		}
		if b.Take(ctx, try).Allowed {
			allowed++
		}
	}
	return allowed
}

// Every budget kind takes any clock reading — zero, far past, far future,
// the extremes of time.Time — without panicking, and at a frozen reading
// stays within its bound.
func TestRegressBudgetsSurviveOddClockReadings(t *testing.T) {
	for _, r := range oddReadings {
		t.Run(r.name, func(t *testing.T) {
			c := &setClock{now: r.at}
			ratio := newRatioBudget(Ratio(0.1), RatioFloor(0), RatioWindow(10*time.Second), WithClock(c))
			if got := takeN(t, ratio, 100); got > 10 {
				t.Errorf("ratio budget allowed %d extras for 100 firsts at 10%%", got)
			}
			tb := newTokenBucketBudget(5, 1, c)
			if got := takeN(t, tb, 1); got > 5 {
				t.Errorf("token bucket allowed %d with capacity 5 at a frozen clock", got)
			}
			th := newThrottleBudget(10, 0.1)
			if got := takeN(t, th, 1); got != 1000 {
				t.Errorf("full throttle allowed %d", got)
			}
			if got := takeN(t, UnlimitedBudget{}, 1); got != 1000 {
				t.Errorf("unlimited allowed %d", got)
			}
			_ = tb.Tokens()
		})
	}
}

// A clock that jumps between odd readings and steps backwards must not
// panic a budget, and once it runs forward normally again the budget
// recovers: retries are allowed again after a window.
func TestRegressBudgetsSurviveClockJumpsAndRecover(t *testing.T) {
	for _, from := range oddReadings {
		for _, to := range oddReadings {
			t.Run(fmt.Sprintf("%s_to_%s", from.name, to.name), func(t *testing.T) {
				c := &setClock{now: from.at}
				ratio := newRatioBudget(Ratio(0.5), RatioFloor(0), RatioWindow(time.Second), WithClock(c))
				tb := newTokenBucketBudget(3, 10, c)
				takeN(t, ratio, 10)
				takeN(t, tb, 1)
				c.set(to.at)
				if got := takeN(t, ratio, 10); got > 10 {
					t.Errorf("ratio allowed %d extras after the jump (20 firsts at 50%% bound 10)", got)
				}
				if got := takeN(t, tb, 1); got > 3 {
					t.Errorf("token bucket allowed %d after the jump (capacity 3)", got)
				}
				// The clock now runs forward from the new reading.
				base := to.at
				for step := 1; step <= 30; step++ {
					c.set(base.Add(time.Duration(step) * 100 * time.Millisecond))
					ratio.Take(context.Background(), first)
				}
				if base.Add(3*time.Second) != base { // not saturated at the end of time
					if !ratio.Take(context.Background(), retry).Allowed {
						t.Error("ratio budget refuses retries after the clock ran forward")
					}
					if !tb.Take(context.Background(), retry).Allowed {
						t.Error("token bucket did not refill after the clock ran forward")
					}
				}
			})
		}
	}
}

// A clock stepping backwards a little (less than a window) must not wipe
// the window's accounting and allow a burst.
func TestRegressRatioBudgetSmallBackwardStepKeepsAccounting(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &setClock{now: start}
	b := newRatioBudget(Ratio(0.1), RatioFloor(0), RatioWindow(10*time.Second), WithClock(c))
	total := 0
	for i := 0; i < 5; i++ {
		c.set(start.Add(time.Duration(i) * time.Second))
		total += takeN(t, b, 20)
	}
	c.set(start.Add(2 * time.Second)) // back 2s
	total += takeN(t, b, 20)
	if total > 12 { // 120 firsts at 10%
		t.Fatalf("allowed %d extras for 120 firsts at 10%%", total)
	}
}

// The budget gate over each budget kind survives odd clocks as well.
func TestRegressBudgetGateOddClocks(t *testing.T) {
	for _, r := range oddReadings {
		c := &setClock{now: r.at}
		for _, b := range []Budget{
			newRatioBudget(WithClock(c)),
			newTokenBucketBudget(2, 1, c),
			newThrottleBudget(2, 0.5),
			UnlimitedBudget{},
		} {
			var calls = new(int)
			ep := budgetChain(b, 3, func(context.Context, any) (any, error) {
				*calls++
				return nil, errFlakyRegress
			})
			_, _ = ep(context.Background(), nil)
			if *calls < 1 {
				t.Fatalf("%s %T: no try ran", r.name, b)
			}
		}
	}
}

var errFlakyRegress = fmt.Errorf("flaky")

// within runs f and fails the test if it does not return within d (a
// deadlock): the stuck goroutine is left behind, and goleak reports it.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("deadlock: call did not return")
	}
}

// An OnStateChange that reads the breaker's state must not deadlock: the
// transitions are delivered outside gobreaker's lock, in order, on the
// calling goroutine, by the time the call returns.
func TestRegressBreakerStateChangeMayCallBack(t *testing.T) {
	var (
		b      *CircuitBreaker
		mu     sync.Mutex
		events []string
	)
	b = NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 2, Cooldown: 20 * time.Millisecond,
		OnStateChange: func(_ string, from, to endpoint.BreakerState) {
			st := b.State() // calls back in
			mu.Lock()
			events = append(events, from.String()+">"+to.String()+"@"+st.String())
			mu.Unlock()
		}})
	failing := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	within(t, 5*time.Second, func() {
		for i := 0; i < 2; i++ {
			_, _ = failing(context.Background(), nil)
		}
	})
	mu.Lock()
	got := append([]string(nil), events...)
	mu.Unlock()
	if len(got) != 1 || got[0] != "closed>open@open" {
		t.Fatalf("events after the tripping call returned = %v, want [closed>open@open]", got)
	}
	// Cooldown: the next call finds it half-open (a transition State may
	// also make), probes and closes it.
	time.Sleep(30 * time.Millisecond)
	ok := breakerChain(b, func(context.Context, any) (any, error) { return "ok", nil })
	within(t, 5*time.Second, func() {
		if _, err := ok(context.Background(), nil); err != nil {
			t.Errorf("probe: %v", err)
		}
	})
	mu.Lock()
	got = append([]string(nil), events...)
	mu.Unlock()
	want := []string{"closed>open@open", "open>half_open@", "half_open>closed@closed"}
	if len(got) != 3 || got[1][:len(want[1])] != want[1] || got[2] != want[2] {
		t.Fatalf("events = %v, want %v (half_open's state read may say half_open or closed)", got, want)
	}
}

// State itself can move an open breaker to half-open; an OnStateChange
// calling State again from there must not deadlock either.
func TestRegressBreakerStateFromStateCallback(t *testing.T) {
	var b *CircuitBreaker
	var n atomic.Int32
	b = NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 1, Cooldown: 10 * time.Millisecond,
		OnStateChange: func(string, endpoint.BreakerState, endpoint.BreakerState) {
			n.Add(1)
			_ = b.State()
		}})
	failing := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	within(t, 5*time.Second, func() {
		_, _ = failing(context.Background(), nil)
		time.Sleep(20 * time.Millisecond)
		if s := b.State(); s != endpoint.BreakerHalfOpen {
			t.Errorf("state after cooldown = %v", s)
		}
	})
	if n.Load() != 2 {
		t.Fatalf("transitions delivered = %d, want 2 (closed>open, open>half_open)", n.Load())
	}
}

// Hostile: counts past uint32 in a BreakerConfig must not wrap to 0 (which
// would trip the breaker on its first failure).
func TestRegressBreakerHugeCountsDoNotWrap(t *testing.T) {
	shift := 32
	huge := 1 << shift // 2^32 where int is 64 bits (0, so defaults, on 32)
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: huge, HalfOpenProbes: huge, MinRequests: huge})
	failing := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	for i := 0; i < 3; i++ {
		_, _ = failing(context.Background(), nil)
	}
	if s := b.State(); s != endpoint.BreakerClosed {
		t.Fatalf("state after 3 failures with a threshold of 2^32 = %v", s)
	}
	r := NewCircuitBreaker(BreakerConfig{Name: "r", FailureRatio: 0.5, MinRequests: huge + 1})
	failing = breakerChain(r, func(context.Context, any) (any, error) { return nil, errFlaky })
	for i := 0; i < 3; i++ {
		_, _ = failing(context.Background(), nil)
	}
	if s := r.State(); s != endpoint.BreakerClosed {
		t.Fatalf("ratio breaker with min requests 2^32+1 tripped after 3: %v", s)
	}
}

// Hostile: an OnStateChange that panics reaches the caller, and does not
// wedge delivery: later transitions are still delivered, in order.
func TestRegressBreakerPanickingStateChange(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 1, Cooldown: 10 * time.Millisecond,
		OnStateChange: func(_ string, from, to endpoint.BreakerState) {
			mu.Lock()
			got = append(got, from.String()+">"+to.String())
			mu.Unlock()
			if to == endpoint.BreakerOpen {
				panic("observer bug")
			}
		}})
	failing := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	func() {
		defer func() {
			if r := recover(); r != "observer bug" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_, _ = failing(context.Background(), nil)
	}()
	time.Sleep(20 * time.Millisecond)
	ok := breakerChain(b, func(context.Context, any) (any, error) { return "ok", nil })
	within(t, 5*time.Second, func() {
		if _, err := ok(context.Background(), nil); err != nil {
			t.Errorf("probe: %v", err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[1] != "open>half_open" || got[2] != "half_open>closed" {
		t.Fatalf("transitions %v", got)
	}
}

// The same with the project's fake clock: starting at the zero time, then
// stepping back and forth.
func TestRegressBudgetsOnFakeClockFromZero(t *testing.T) {
	f := clock.NewFake(time.Time{})
	ratio := newRatioBudget(Ratio(0.5), RatioFloor(0), RatioWindow(time.Second), WithClock(f))
	tb := newTokenBucketBudget(2, 10, f)
	for _, step := range []time.Duration{0, -time.Hour, time.Hour, -time.Millisecond, 100 * 365 * 24 * time.Hour, -200 * 365 * 24 * time.Hour} {
		f.Advance(step)
		if got := takeN(t, ratio, 4); got > 2 {
			t.Errorf("after %v: ratio allowed %d extras for 4 firsts at 50%%", step, got)
		}
		if got := takeN(t, tb, 1); got > 2 {
			t.Errorf("after %v: token bucket allowed %d (capacity 2)", step, got)
		}
	}
	f.Advance(time.Second)
	if !tb.Take(context.Background(), retry).Allowed {
		t.Error("token bucket did not refill a second after the last step")
	}
}

// Hostile: a try that panics (recovery off) is admitted as a half-open
// probe, so its own breaker call moved the state; the transition still
// reaches OnStateChange before the panic leaves the decorator, not at some
// later call. The panic itself is not counted, as a recovered one is not.
func TestRegressBreakerTransitionDeliveredOnPanic(t *testing.T) {
	var got []endpoint.BreakerState
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 1, Cooldown: time.Millisecond,
		OnStateChange: func(_ string, _, to endpoint.BreakerState) { got = append(got, to) }})
	_, _ = breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	if len(got) != 1 || got[0] != endpoint.BreakerOpen {
		t.Fatalf("transitions %v, want [open]", got)
	}
	time.Sleep(5 * time.Millisecond) // past the cooldown (gobreaker's real clock)
	ep := Breaker(b)(func(context.Context, any) (any, error) { panic("op bug") })
	func() {
		defer func() { _ = recover() }()
		_, _ = ep(context.Background(), nil)
	}()
	if len(got) != 2 || got[1] != endpoint.BreakerHalfOpen {
		t.Fatalf("transitions delivered %v (want [open half-open] before the panic left)", got)
	}
	if s := b.m.Load().cb.State().String(); s != "half-open" {
		t.Fatalf("gobreaker state %s after a panicking probe, want half-open (a panic is not counted)", s)
	}
}
