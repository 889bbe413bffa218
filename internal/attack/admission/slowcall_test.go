package admissionattack

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

// slowBreaker is a breaker with slow-call detection on a fake clock; run
// calls through it taking d of fake time each.
type slowBreaker struct {
	b  *middleware.CircuitBreaker
	fc *clock.Fake
	l  *stateLog
}

func newSlowBreaker(cfg middleware.BreakerConfig) *slowBreaker {
	s := &slowBreaker{fc: clock.NewFake(time.Unix(1000, 0)), l: &stateLog{}}
	cfg.Clock = s.fc
	cfg.OnStateChange = s.l.on
	s.b = middleware.NewCircuitBreaker(cfg)
	return s
}

func (s *slowBreaker) run(d time.Duration, err error) error {
	return call(through(s.b, func(context.Context) error { s.fc.Advance(d); return err }))
}

func TestSlowCallsOpenBreaker(t *testing.T) {
	s := newSlowBreaker(middleware.BreakerConfig{SlowCallDuration: 100 * time.Millisecond, MinRequests: 3, ConsecutiveFailures: 1000})
	for i := 0; i < 2; i++ {
		if err := s.run(time.Second, nil); err != nil {
			t.Fatal(err)
		}
	}
	if s.b.State() != endpoint.BreakerClosed {
		t.Fatal("opened before MinRequests")
	}
	_ = s.run(time.Second, nil)
	if st := s.b.State(); st != endpoint.BreakerOpen {
		t.Fatalf("three slow successes of three: %v, want open", st)
	}
}

func TestSlowCallRateDefaultNeedsAllSlow(t *testing.T) {
	for _, rate := range []float64{0, math.NaN(), -1, 1.5, math.Inf(1)} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			s := newSlowBreaker(middleware.BreakerConfig{SlowCallDuration: 100 * time.Millisecond, SlowCallRate: rate, MinRequests: 4})
			if got := s.b.Config().SlowCallRate; got != 1 {
				t.Errorf("Config().SlowCallRate %v, want the default 1", got)
			}
			_ = s.run(time.Millisecond, nil)
			for i := 0; i < 10; i++ {
				_ = s.run(time.Second, nil)
			}
			if st := s.b.State(); st != endpoint.BreakerClosed {
				t.Fatalf("rate %v: one fast call in 11 but opened", rate)
			}
		})
	}
}

func TestSlowCallRateHalf(t *testing.T) {
	s := newSlowBreaker(middleware.BreakerConfig{SlowCallDuration: 100 * time.Millisecond, SlowCallRate: 0.5, MinRequests: 4})
	_ = s.run(time.Millisecond, nil)
	_ = s.run(time.Millisecond, nil)
	_ = s.run(99*time.Millisecond, nil)
	if s.b.State() != endpoint.BreakerClosed {
		t.Fatal("opened on fast calls")
	}
	_ = s.run(100*time.Millisecond, nil) // exactly the duration: slow ("at least")
	_ = s.run(time.Second, nil)          // 2 slow of 5
	if s.b.State() != endpoint.BreakerClosed {
		t.Fatal("opened at 2/5 with rate 0.5")
	}
	_ = s.run(time.Second, nil) // 3 of 6
	if st := s.b.State(); st != endpoint.BreakerOpen {
		t.Fatalf("3 slow of 6 at rate 0.5: %v", st)
	}
}

// Non-retryable failures and aborts are not counted: slow or not, they
// neither make up MinRequests nor count as slow.
func TestSlowCallsIgnoreUncountedTries(t *testing.T) {
	s := newSlowBreaker(middleware.BreakerConfig{SlowCallDuration: 100 * time.Millisecond, MinRequests: 3})
	for i := 0; i < 10; i++ {
		_ = s.run(time.Second, middleware.Permanent(errBoom))
	}
	_ = call(through(s.b, func(context.Context) error { s.fc.Advance(time.Second); return context.Canceled }))
	if st := s.b.State(); st != endpoint.BreakerClosed {
		t.Fatalf("uncounted tries opened the breaker: %v", st)
	}
}

// Odd durations: negative means off; clocks that go backwards or sit at
// the zero time do not panic or open the breaker.
type backwardsClock struct {
	clock.Real
	t time.Time
}

func (b *backwardsClock) Now() time.Time { b.t = b.t.Add(-time.Hour); return b.t }

func TestSlowCallOddInputs(t *testing.T) {
	for i, cfg := range []middleware.BreakerConfig{
		{SlowCallDuration: -time.Second, MinRequests: 1},
		{SlowCallDuration: math.MinInt64, MinRequests: 1},
		{SlowCallDuration: math.MaxInt64, MinRequests: 1},
		{SlowCallDuration: time.Nanosecond, MinRequests: 1, Clock: &backwardsClock{}},
		{SlowCallDuration: time.Nanosecond, MinRequests: 1, Clock: clock.NewFake(time.Time{})},
	} {
		b := middleware.NewCircuitBreaker(cfg)
		for k := 0; k < 20; k++ {
			_ = call(through(b, func(context.Context) error { return nil }))
		}
		if st := b.State(); st != endpoint.BreakerClosed {
			t.Fatalf("config %d: instant successes opened the breaker: %v", i, st)
		}
	}
}

// A slow half-open probe counts as a failed one: back to open. A fast one
// closes the breaker. (Cooldown is on the real clock.)
func TestSlowHalfOpenProbeFails(t *testing.T) {
	s := newSlowBreaker(middleware.BreakerConfig{SlowCallDuration: 100 * time.Millisecond, MinRequests: 1, Cooldown: 20 * time.Millisecond})
	_ = s.run(time.Second, nil)
	if s.b.State() != endpoint.BreakerOpen {
		t.Fatalf("not open: %v", s.b.State())
	}
	waitFor(t, "half-open", func() bool { return s.b.State() == endpoint.BreakerHalfOpen })
	if err := s.run(time.Second, nil); err != nil {
		t.Fatalf("slow probe's own result: %v", err)
	}
	if st := s.b.State(); st != endpoint.BreakerOpen {
		t.Fatalf("after a slow probe: %v, want open", st)
	}
	waitFor(t, "half-open again", func() bool { return s.b.State() == endpoint.BreakerHalfOpen })
	_ = s.run(time.Millisecond, nil)
	if st := s.b.State(); st != endpoint.BreakerClosed {
		t.Fatalf("after a fast probe: %v, want closed", st)
	}
	checkChain(t, s.l.get(), endpoint.BreakerClosed)
}

// The window rolls: slow calls older than Window no longer count.
func TestSlowCallWindowRolls(t *testing.T) {
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{SlowCallDuration: 2 * time.Millisecond, MinRequests: 3, Window: 200 * time.Millisecond})
	slow := through(b, func(context.Context) error { time.Sleep(5 * time.Millisecond); return nil })
	_ = call(slow)
	_ = call(slow)
	time.Sleep(600 * time.Millisecond)
	_ = call(slow)
	if st := b.State(); st != endpoint.BreakerClosed {
		t.Fatalf("slow calls from three windows ago still counted: %v", st)
	}
}

// The slow-call fields of a policy reach the executor's breaker; the policy
// bounds are applied.
func TestSlowCallPolicyThroughExecutor(t *testing.T) {
	const key = "adm.slow.exec"
	e, err := recourse.New(recourse.WithPolicy(key, opts(fastRetry(1), policy.WithCircuitBreaker(policy.CircuitPolicy{
		Enabled: true, SlowCallDuration: 30 * time.Millisecond, SlowCallRate: 0.5, MinRequests: 2, Cooldown: time.Minute,
	}))...))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := e.Do(context.Background(), key, func(context.Context) error { time.Sleep(60 * time.Millisecond); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.Breaker(key).State(); st != endpoint.BreakerOpen {
		t.Fatalf("two slow calls of two at rate 0.5: %v", st)
	}
	cfg := e.Breaker(key).Config()
	if cfg.SlowCallDuration != 30*time.Millisecond || cfg.SlowCallRate != 0.5 {
		t.Fatalf("config %+v", cfg)
	}
}

func TestCircuitPolicyOddSlowAndJitterValues(t *testing.T) {
	for i, cp := range []policy.CircuitPolicy{
		{Enabled: true, SlowCallDuration: time.Nanosecond, SlowCallRate: math.NaN(), CooldownJitter: math.NaN()},
		{Enabled: true, SlowCallDuration: 1 << 62, SlowCallRate: math.Inf(1), CooldownJitter: math.Inf(1)},
		{Enabled: true, SlowCallDuration: time.Second, SlowCallRate: 0.001, CooldownJitter: 1e-9},
		{Enabled: true, SlowCallDuration: time.Second, SlowCallRate: 5, CooldownJitter: 7},
	} {
		p := policy.New("adm.slow.odd", policy.WithCircuitBreaker(cp))
		n, _ := p.Normalize()
		c := n.Circuit
		if c.SlowCallDuration == 0 {
			t.Logf("%d: slow calls off: %+v", i, c)
		} else if c.SlowCallRate < 0.01 || c.SlowCallRate > 1 || math.IsNaN(c.SlowCallRate) || c.CooldownJitter < 0 || c.CooldownJitter > 1 || math.IsNaN(c.CooldownJitter) {
			t.Errorf("%d: normalized out of bounds: %+v", i, c)
		}
		if c.SlowCallDuration != 0 && (c.SlowCallDuration < time.Millisecond || c.SlowCallDuration > 5*time.Minute) {
			t.Errorf("%d: slow_call_duration %v", i, c.SlowCallDuration)
		}
		e := recourse.NewExecutor(recourse.WithPolicy("adm.slow.odd", policy.WithCircuitBreaker(cp)))
		if err := e.Do(context.Background(), "adm.slow.odd", func(context.Context) error { return nil }); err != nil {
			t.Errorf("%d: %v", i, err)
		}
	}
	for _, cp := range []policy.CircuitPolicy{
		{Enabled: true, SlowCallDuration: -time.Second},
		{Enabled: true, SlowCallRate: -0.5},
		{Enabled: true, CooldownJitter: -0.5},
	} {
		err := policy.Validate(policy.New("adm.slow.neg", policy.WithCircuitBreaker(cp)))
		t.Logf("%+v: Validate: %v", cp, err)
		e := recourse.NewExecutor(recourse.WithPolicy("adm.slow.neg", policy.WithCircuitBreaker(cp)))
		_ = e.Do(context.Background(), "adm.slow.neg", func(context.Context) error { return nil })
	}
}
