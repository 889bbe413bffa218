package middleware

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
)

// transitions collects a breaker's reported transitions.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) on(_ string, from, to endpoint.BreakerState) {
	tr.mu.Lock()
	tr.got = append(tr.got, from.String()+">"+to.String())
	tr.mu.Unlock()
}

func (tr *transitions) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return fmt.Sprint(tr.got)
}

func TestBreakerForceOpenHoldsPastCooldownUntilReset(t *testing.T) {
	var tr transitions
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 3, Cooldown: time.Millisecond, OnStateChange: tr.on})
	var calls atomic.Int32
	ok := breakerChain(b, func(context.Context, any) (any, error) { calls.Add(1); return "ok", nil })
	flaky := breakerChain(b, func(context.Context, any) (any, error) { calls.Add(1); return nil, errFlaky })

	_, _ = flaky(context.Background(), nil)
	_, _ = flaky(context.Background(), nil) // two of three failures counted
	b.ForceOpen()
	b.ForceOpen() // idempotent: one transition
	if !b.Forced() || b.State() != endpoint.BreakerOpen {
		t.Fatalf("after ForceOpen: forced %v, state %v", b.Forced(), b.State())
	}
	time.Sleep(20 * time.Millisecond) // 20 cooldowns
	for i := 0; i < 5; i++ {
		if _, err := ok(context.Background(), nil); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("forced open breaker admitted a try past its cooldown: %v", err)
		}
	}
	if b.State() != endpoint.BreakerOpen || calls.Load() != 2 {
		t.Fatalf("state %v, op called %d times (want open, 2)", b.State(), calls.Load())
	}
	b.Reset()
	b.Reset() // idempotent: no transition from closed
	if b.Forced() || b.State() != endpoint.BreakerClosed {
		t.Fatalf("after Reset: forced %v, state %v", b.Forced(), b.State())
	}
	// Counts were cleared: two more failures do not make three in a row.
	_, _ = flaky(context.Background(), nil)
	_, _ = flaky(context.Background(), nil)
	if b.State() != endpoint.BreakerClosed {
		t.Fatal("Reset did not clear the failures counted before it")
	}
	if _, err := ok(context.Background(), nil); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	if got := tr.String(); got != "[closed>open open>closed]" {
		t.Fatalf("transitions %s", got)
	}
}

func TestBreakerResetReopensAfterRealTrip(t *testing.T) {
	var tr transitions
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 1, Cooldown: time.Hour, OnStateChange: tr.on})
	flaky := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	_, _ = flaky(context.Background(), nil)
	b.ForceOpen() // already open: no second transition
	b.Reset()
	_, _ = flaky(context.Background(), nil) // the new machine trips again
	if got := tr.String(); got != "[closed>open open>closed closed>open]" {
		t.Fatalf("transitions %s", got)
	}
}

// An observer that calls back into the breaker from OnStateChange must not
// deadlock, whichever call delivered the transition.
func TestBreakerControlsFromOnStateChange(t *testing.T) {
	var b *CircuitBreaker
	var seen []endpoint.BreakerState
	b = NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 1, Cooldown: time.Hour,
		OnStateChange: func(_ string, _, to endpoint.BreakerState) {
			seen = append(seen, b.State())
			if to == endpoint.BreakerOpen {
				b.Reset() // an over-eager operator hook
			}
		}})
	flaky := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = flaky(context.Background(), nil)
		b.ForceOpen()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: breaker control from OnStateChange")
	}
	if b.State() != endpoint.BreakerClosed || len(seen) != 4 {
		t.Fatalf("state %v, callbacks saw %v", b.State(), seen)
	}
}

func TestBreakerControlsRaceWithCalls(t *testing.T) {
	var tr transitions
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 2, Cooldown: time.Millisecond, OnStateChange: tr.on})
	var n atomic.Int64
	ep := breakerChain(b, func(context.Context, any) (any, error) {
		if n.Add(1)%3 == 0 {
			return nil, errFlaky
		}
		return "ok", nil
	})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				_, _ = ep(context.Background(), nil)
			}
		}()
	}
	for i := 0; i < 50; i++ {
		b.ForceOpen()
		_ = b.State()
		b.Reset()
	}
	wg.Wait()
	b.Reset()
	if _, err := breakerChain(b, endpoint.Nop)(context.Background(), nil); err != nil {
		t.Fatalf("after the storm and a Reset: %v", err)
	}
	// Reported transitions chain: each one starts where the last ended.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	last := "closed"
	for _, s := range tr.got {
		var from, to string
		_, _ = fmt.Sscanf(s, "%s", &from)
		for i := range s {
			if s[i] == '>' {
				from, to = s[:i], s[i+1:]
			}
		}
		if from != last {
			t.Fatalf("transition %s does not start at %s (all: %v)", s, last, tr.got)
		}
		last = to
	}
}

// The lock-free success path must not change what the breaker decides: a
// random single-goroutine sequence of successes, counted failures and
// uncounted errors gives the same states as gobreaker alone.
func TestBreakerFastPathMatchesGobreaker(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		n := 1 + r.IntN(4)
		b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: n, Cooldown: time.Hour})
		ref := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Timeout: time.Hour,
			ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(n) },
			IsExcluded:   func(err error) bool { return err == errBreakerExcluded },
			IsSuccessful: func(err error) bool { return err == nil }})
		for i := 0; i < 200; i++ {
			var op endpoint.Endpoint
			var res error
			switch k := r.IntN(10); {
			case k < 5:
				op, res = endpoint.Nop, nil
			case k < 8:
				op, res = func(context.Context, any) (any, error) { return nil, errFlaky }, errBreakerFailure
			default:
				op, res = func(context.Context, any) (any, error) { return nil, Permanent(errFlaky) }, errBreakerExcluded
			}
			_, _ = breakerChain(b, op)(context.Background(), nil)
			_, _ = ref.Execute(func() (struct{}, error) { return struct{}{}, res })
			if got, want := b.State(), stateOf(ref.State()); got != want {
				t.Fatalf("seed %d step %d: state %v, gobreaker alone %v", seed, i, got, want)
			}
			if got, want := b.m.Load().cb.Counts().ConsecutiveFailures, ref.Counts().ConsecutiveFailures; got != want {
				t.Fatalf("seed %d step %d: consecutive failures %d, gobreaker alone %d", seed, i, got, want)
			}
		}
	}
}

// A failure of a try admitted before a transition is not counted after it,
// as gobreaker drops the result of a try from an earlier generation.
func TestBreakerLateFailureFromOldGenerationIgnored(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Millisecond, HalfOpenProbes: 1})
	release := make(chan struct{})
	started := make(chan struct{})
	slowFail := breakerChain(b, func(context.Context, any) (any, error) {
		close(started)
		<-release
		return nil, errFlaky
	})
	done := make(chan struct{})
	go func() { defer close(done); _, _ = slowFail(context.Background(), nil) }()
	<-started // admitted on the lock-free path, generation 0
	_, _ = breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	waitState(t, b, endpoint.BreakerHalfOpen) // generation 2
	close(release)
	<-done
	if s := b.State(); s != endpoint.BreakerHalfOpen {
		t.Fatalf("a failure from generation 0 moved the half-open breaker to %v", s)
	}
	if _, err := breakerChain(b, endpoint.Nop)(context.Background(), nil); err != nil {
		t.Fatalf("probe refused: the late failure took the probe slot: %v", err)
	}
	if s := b.State(); s != endpoint.BreakerClosed {
		t.Fatalf("after a successful probe: %v", s)
	}
}

// slowOp returns an operation that advances clk by d and succeeds.
func slowOp(clk *clock.Fake, d time.Duration) endpoint.Endpoint {
	return func(context.Context, any) (any, error) { clk.Advance(d); return "ok", nil }
}

func TestBreakerSlowCallsOpen(t *testing.T) {
	for _, ratio := range []float64{0, 0.5} {
		t.Run(fmt.Sprintf("failure_ratio=%g", ratio), func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_000_000, 0))
			var tr transitions
			b := NewCircuitBreaker(BreakerConfig{Name: "k", FailureRatio: ratio, ConsecutiveFailures: 100, Cooldown: time.Hour,
				MinRequests: 4, Window: time.Minute, SlowCallDuration: 500 * time.Millisecond, SlowCallRate: 0.5,
				Clock: clk, OnStateChange: tr.on})
			fast := breakerChain(b, slowOp(clk, 10*time.Millisecond))
			slow := breakerChain(b, slowOp(clk, 600*time.Millisecond))
			for i := 0; i < 10; i++ {
				if _, err := fast(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
			}
			// 1 slow of 11, 2 of 12, … the rate is reached at 10 of 20.
			for i := 0; i < 9; i++ {
				if _, err := slow(context.Background(), nil); err != nil {
					t.Fatalf("slow call %d: %v (opened before the rate was reached)", i, err)
				}
			}
			if b.State() != endpoint.BreakerClosed {
				t.Fatalf("opened at 9 slow of 19")
			}
			if _, err := slow(context.Background(), nil); err != nil {
				t.Fatalf("the slow call that reaches the rate still returns its result: %v", err)
			}
			if b.State() != endpoint.BreakerOpen {
				t.Fatalf("state %v at 10 slow of 20 calls (rate 0.5)", b.State())
			}
			if got := tr.String(); got != "[closed>open]" {
				t.Fatalf("transitions %s", got)
			}
		})
	}
}

func TestBreakerSlowCallsAgeOutOfWindow(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	b := NewCircuitBreaker(BreakerConfig{Cooldown: time.Hour, MinRequests: 2, Window: 10 * time.Second,
		SlowCallDuration: time.Second, Clock: clk})
	slow := breakerChain(b, slowOp(clk, 2*time.Second))
	_, _ = slow(context.Background(), nil) // 1 slow of 1: under MinRequests
	clk.Advance(time.Minute)
	_, _ = breakerChain(b, slowOp(clk, 0))(context.Background(), nil)
	_, _ = slow(context.Background(), nil) // the first slow call has aged out: 1 of 2
	if b.State() != endpoint.BreakerClosed {
		t.Fatalf("a slow call from a minute ago counted in a 10s window")
	}
	_, _ = slow(context.Background(), nil) // rate 1 (default) needs all slow: 2 of 3
	if b.State() != endpoint.BreakerClosed {
		t.Fatalf("opened below the default rate of 1")
	}
}

func TestBreakerSlowProbeReopens(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Millisecond, SlowCallDuration: time.Second, Clock: clk})
	_, _ = breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	waitState(t, b, endpoint.BreakerHalfOpen)
	if _, err := breakerChain(b, slowOp(clk, 2*time.Second))(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if s := b.m.Load().cb.State(); s != gobreaker.StateOpen {
		t.Fatalf("a slow half-open probe left the breaker %v, want open", s)
	}
}

func TestBreakerCooldownJitter(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	const cooldown = 10 * time.Millisecond
	seen := map[int64]bool{}
	for i := 0; i < 20; i++ {
		b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 1, Cooldown: cooldown, CooldownJitter: 0.5, Clock: clk})
		_, _ = breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
		hold := time.Duration(b.holdUntil.Load() - clk.Now().UnixNano())
		if hold < cooldown || hold > cooldown*3/2 {
			t.Fatalf("open period %v outside [%v, %v]", hold, cooldown, cooldown*3/2)
		}
		seen[int64(hold)] = true
		if i == 0 {
			// Past gobreaker's cooldown (real clock) but not the jitter
			// (fake clock): still open, the op not called.
			time.Sleep(2 * cooldown)
			var called bool
			_, err := breakerChain(b, func(context.Context, any) (any, error) { called = true; return "ok", nil })(context.Background(), nil)
			if !errors.Is(err, ErrCircuitOpen) || called || b.State() != endpoint.BreakerOpen {
				t.Fatalf("inside the jittered part of the open period: err %v, called %v, state %v", err, called, b.State())
			}
			clk.Advance(hold)
			if s := b.State(); s != endpoint.BreakerHalfOpen {
				t.Fatalf("after the whole open period: %v", s)
			}
		}
	}
	if len(seen) < 10 {
		t.Fatalf("20 breakers chose only %d distinct open periods", len(seen))
	}
}

func TestBreakerConfigClampsOddValues(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{CooldownJitter: 7, FailureRatio: -1, SlowCallDuration: time.Second, SlowCallRate: 3})
	c := b.Config()
	if c.CooldownJitter != 1 || c.FailureRatio != 0 || c.SlowCallRate != 1 {
		t.Fatalf("config %+v", c)
	}
	nan := NewCircuitBreaker(BreakerConfig{CooldownJitter: nanFloat(), FailureRatio: nanFloat(), SlowCallRate: nanFloat()}).Config()
	if nan.CooldownJitter != 0 || nan.FailureRatio != 0 || nan.SlowCallRate != 0 {
		t.Fatalf("NaN config %+v", nan)
	}
}

func nanFloat() float64 {
	var zero float64
	return zero / zero
}

// A slow try that reaches the slow-call rate after a Reset replaced the
// machine that admitted it must not leave the fresh breaker primed to
// trip on its next single failure.
func TestBreakerSlowTryAcrossResetDoesNotPrimeNewMachine(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 100, Cooldown: time.Hour, MinRequests: 1,
		SlowCallDuration: time.Second, Clock: clk})
	ep := breakerChain(b, func(context.Context, any) (any, error) {
		b.Reset() // an operator acts while the try runs
		clk.Advance(2 * time.Second)
		return "ok", nil
	})
	_, _ = ep(context.Background(), nil)
	_, _ = breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	if s := b.State(); s != endpoint.BreakerClosed {
		t.Fatalf("one failure on the new machine (100 to trip) left it %v", s)
	}
}
