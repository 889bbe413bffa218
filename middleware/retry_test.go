package middleware

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

var errFlaky = errors.New("flaky")

func TestRetryCancelledBeforeFirstAttemptNeverCallsOp(t *testing.T) {
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ctx, c := recordCall(ctx)
	_, err := chain(scripted(&calls))(ctx, nil)
	if !errors.Is(err, context.Canceled) || err != context.Canceled {
		t.Fatalf("err = %v, want ctx.Err() itself", err)
	}
	if calls.Load() != 0 {
		t.Fatalf("op called %d times", calls.Load())
	}
	if n := len(c.Timeline().Attempts); n != 0 {
		t.Fatalf("timeline has %d attempts, want 0", n)
	}
}

func TestRetryTwoFailuresThenSuccessWithinJitterBounds(t *testing.T) {
	const initial, max = 10 * time.Millisecond, time.Second
	for _, j := range []JitterMode{JitterNone, JitterFull, JitterEqual, JitterDecorrelated} {
		t.Run(j.String(), func(t *testing.T) {
			for run := 0; run < 20; run++ { // jitter is random: check bounds many times
				f := clock.NewFake(time.Unix(0, 0))
				var calls atomic.Int32
				ep := chain(scripted(&calls, errFlaky, errFlaky),
					MaxAttempts(3), WithClock(f),
					WithBackoff(BackoffConfig{Initial: initial, Max: max, Multiplier: 2, Jitter: j}))
				ctx, c := recordCall(context.Background())
				var resp any
				err := drive(t, f, 2, func() (err error) { resp, err = ep(ctx, nil); return })
				if err != nil || resp != "ok" {
					t.Fatalf("got %v, %v", resp, err)
				}
				tl := c.Timeline()
				if len(tl.Attempts) != 3 || calls.Load() != 3 {
					t.Fatalf("attempts %d, calls %d, want 3", len(tl.Attempts), calls.Load())
				}
				for i, a := range tl.Attempts {
					if a.Attempt != i+1 {
						t.Fatalf("record %d numbered %d", i, a.Attempt)
					}
				}
				if tl.Attempts[0].Outcome != timeline.OutcomeRetryable || tl.Attempts[2].Outcome != timeline.OutcomeSuccess {
					t.Fatalf("outcomes %v %v", tl.Attempts[0].Outcome, tl.Attempts[2].Outcome)
				}
				prev := initial
				for i, base := range []time.Duration{initial, 2 * initial} {
					got := tl.Attempts[i].Backoff
					lo, hi := base, base
					switch j {
					case JitterFull:
						lo = 0
					case JitterEqual:
						lo = base / 2
					case JitterDecorrelated:
						lo, hi = initial, 3*prev
					}
					if got < lo || got > hi {
						t.Fatalf("backoff %d = %v, want in [%v, %v]", i+1, got, lo, hi)
					}
					prev = got
				}
				if tl.Attempts[2].Backoff != 0 {
					t.Fatalf("last attempt has backoff %v", tl.Attempts[2].Backoff)
				}
			}
		})
	}
}

func TestRetryPermanentStopsAfterOneAttempt(t *testing.T) {
	for name, mark := range map[string]func(error) error{
		"recourse": Permanent,
		"backoff":  func(err error) error { return backoff.Permanent(err) },
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			root := errors.New("invalid card")
			ctx, c := recordCall(context.Background())
			_, err := chain(scripted(&calls, mark(root)), MaxAttempts(5))(ctx, nil)
			if calls.Load() != 1 {
				t.Fatalf("calls = %d, want 1", calls.Load())
			}
			if !errors.Is(err, root) {
				t.Fatalf("errors.Is(%v, root) = false", err)
			}
			if a := c.Timeline().Attempts; len(a) != 1 || a[0].Outcome != timeline.OutcomeNonRetryable || a[0].Reason != timeline.ReasonNonRetryable {
				t.Fatalf("attempts = %+v", a)
			}
		})
	}
}

func TestPermanentUnwraps(t *testing.T) {
	root := errors.New("x")
	if errors.Unwrap(Permanent(root)) != root {
		t.Fatal("Unwrap(Permanent(err)) != err")
	}
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
}

func TestRetryExhaustedReturnsLastRealError(t *testing.T) {
	var calls atomic.Int32
	e1, e2 := errors.New("first"), errors.New("second")
	f := clock.NewFake(time.Unix(0, 0))
	ep := chain(scripted(&calls, e1, e2, e2), MaxAttempts(2), WithClock(f))
	err := drive(t, f, 1, func() error { _, err := ep(context.Background(), nil); return err })
	if err != e2 {
		t.Fatalf("err = %#v, want the op's own last error", err)
	}
}

func TestRetryBackoffSleepReturnsOnCancel(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	var calls atomic.Int32
	ep := chain(scripted(&calls, errFlaky, errFlaky), MaxAttempts(3), WithClock(f),
		WithBackoff(BackoffConfig{Initial: time.Hour, Max: time.Hour, Multiplier: 2}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := ep(ctx, nil); done <- err }()
	f.BlockUntil(1) // the loop is now sleeping an (fake) hour
	cancel()
	err := <-done // no Advance: only the cancellation can wake it
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) {
		t.Fatalf("err = %v, want it to wrap context.Canceled and the last error", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", calls.Load())
	}
}

func TestRetryHonoursPushback(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	var calls atomic.Int32
	pushback := ClassifierFunc(func(ctx context.Context, resp any, err error) Verdict {
		if err != nil {
			return Verdict{Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonRetryAfter, RetryAfter: 7 * time.Second}
		}
		return Verdict{Outcome: timeline.OutcomeSuccess}
	})
	ep := endpoint.Chain(Observe("k"), Retry(WithClock(f)), Classify(pushback))(scripted(&calls, errFlaky))
	ctx, c := recordCall(context.Background())
	if err := drive(t, f, 1, func() error { _, err := ep(ctx, nil); return err }); err != nil {
		t.Fatal(err)
	}
	if got := c.Timeline().Attempts[0].Backoff; got != 7*time.Second {
		t.Fatalf("backoff = %v, want the server's 7s", got)
	}
}

func TestRetryPushbackAboveLimitEndsCall(t *testing.T) {
	var calls atomic.Int32
	pushback := ClassifierFunc(func(ctx context.Context, resp any, err error) Verdict {
		return Verdict{Outcome: timeline.OutcomeRetryable, RetryAfter: time.Hour}
	})
	ep := endpoint.Chain(Retry(MaxPushback(time.Second)), Classify(pushback))(scripted(&calls, errFlaky))
	_, err := ep(context.Background(), nil)
	if !errors.Is(err, ErrPushbackTooLong) || !errors.Is(err, errFlaky) || calls.Load() != 1 {
		t.Fatalf("err = %v, calls %d", err, calls.Load())
	}
}

func TestRetryAloneOnPlainEndpoint(t *testing.T) {
	// No Classify inside: the loop applies the default rules itself.
	f := clock.NewFake(time.Unix(0, 0))
	var calls atomic.Int32
	ep := Retry(MaxAttempts(3), WithClock(f))(scripted(&calls, errFlaky))
	if err := drive(t, f, 1, func() error { _, err := ep(context.Background(), nil); return err }); err != nil {
		t.Fatal(err)
	}
	var seen []int
	probe := Retry(MaxAttempts(2), WithClock(f), RetryKey("a.b", ""))(func(ctx context.Context, _ any) (any, error) {
		info, _ := endpoint.AttemptFromContext(ctx)
		seen = append(seen, info.Attempt)
		return nil, Permanent(errFlaky)
	})
	_, _ = probe(context.Background(), nil)
	if calls.Load() != 2 || len(seen) != 1 || seen[0] != 1 {
		t.Fatalf("calls %d, seen %v", calls.Load(), seen)
	}
}

func TestRetryFailerResponseComesBackWithNilError(t *testing.T) {
	var calls atomic.Int32
	resp := failed{err: errors.New("insufficient funds")}
	ep := chain(func(context.Context, any) (any, error) { calls.Add(1); return resp, nil }, MaxAttempts(3))
	got, err := ep(context.Background(), nil)
	if err != nil || got != resp || calls.Load() != 1 {
		t.Fatalf("got %v, %v after %d calls; want the failed response, nil, 1 call", got, err, calls.Load())
	}
}

type failed struct{ err error }

func (f failed) Failed() error { return f.err }

// Zero fields of a BackoffConfig take defaults: a schedule given only its
// first delay doubles up to 250ms (it used to wait 50ms once, then never).
func TestBackoffConfigZeroFieldsTakeDefaults(t *testing.T) {
	for _, c := range []struct {
		cfg  BackoffConfig
		want []time.Duration
	}{
		{BackoffConfig{Initial: 50 * time.Millisecond}, []time.Duration{50, 100, 200, 250, 250}},
		{BackoffConfig{Initial: 400 * time.Millisecond}, []time.Duration{400, 400, 400}},
		{BackoffConfig{Initial: 10 * time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 3}, []time.Duration{10, 10}},
		{BackoffConfig{Initial: 10 * time.Millisecond, Multiplier: 0.5}, []time.Duration{10, 20, 40}},
		{BackoffConfig{Multiplier: 1}, []time.Duration{0, 0, 0}},
		{BackoffConfig{Initial: -time.Second}, []time.Duration{0, 0}},
	} {
		s := newSchedule(c.cfg.withDefaults())
		for i, w := range c.want {
			if c.want[0] != 0 || w != 0 {
				w *= time.Millisecond
			}
			if got := s.next(); got != w {
				t.Errorf("%+v: delay %d = %v, want %v", c.cfg, i+1, got, w)
			}
		}
	}
}
