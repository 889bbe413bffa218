package middleware

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

// breakerChain runs single attempts through b, classified.
func breakerChain(b *CircuitBreaker, ep endpoint.Endpoint) endpoint.Endpoint {
	return endpoint.Chain(Observe("k"), Retry(MaxAttempts(1)), Breaker(b), Classify(nil))(ep)
}

// waitState polls the breaker's own clock-driven state: gobreaker reads
// time.Now itself, so cooldowns here are real and short.
func waitState(t *testing.T, b *CircuitBreaker, want endpoint.BreakerState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("breaker stayed %v, want %v", b.State(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBreakerTripsFailsFastProbesAndCloses(t *testing.T) {
	var changes []string
	var mu sync.Mutex
	b := NewCircuitBreaker(BreakerConfig{Name: "k", ConsecutiveFailures: 3, Cooldown: 30 * time.Millisecond, HalfOpenProbes: 2,
		OnStateChange: func(_ string, from, to endpoint.BreakerState) {
			mu.Lock()
			changes = append(changes, from.String()+">"+to.String())
			mu.Unlock()
		}})
	var calls atomic.Int32
	failing := breakerChain(b, func(context.Context, any) (any, error) { calls.Add(1); return nil, errFlaky })
	for i := 0; i < 3; i++ {
		if _, err := failing(context.Background(), nil); !errors.Is(err, errFlaky) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if b.State() != endpoint.BreakerOpen {
		t.Fatalf("state after 3 failures = %v", b.State())
	}
	ctx, c := recordCall(context.Background())
	for i := 0; i < 5; i++ {
		if _, err := failing(ctx, nil); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("open breaker: err = %v", err)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("op called %d times; an open breaker must not call it", calls.Load())
	}
	if a := c.Timeline().Attempts; len(a) != 1 || a[0].Reason != timeline.ReasonCircuitOpen {
		t.Fatalf("timeline = %v", c.Timeline())
	}

	// After the cooldown: exactly 2 probes get through, concurrently.
	waitState(t, b, endpoint.BreakerHalfOpen)
	release := make(chan struct{})
	var probes atomic.Int32
	var seenState atomic.Int32
	probing := breakerChain(b, func(ctx context.Context, _ any) (any, error) {
		info, _ := endpoint.AttemptFromContext(ctx)
		seenState.Store(int32(info.Breaker))
		probes.Add(1)
		<-release
		return "ok", nil
	})
	var wg sync.WaitGroup
	var refused atomic.Int32
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := probing(context.Background(), nil); errors.Is(err, ErrCircuitOpen) {
				refused.Add(1)
			}
		}()
	}
	for refused.Load() < 4 { // four are refused at once; two are probing
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if probes.Load() != 2 || refused.Load() != 4 {
		t.Fatalf("probes %d refused %d, want 2 and 4", probes.Load(), refused.Load())
	}
	if endpoint.BreakerState(seenState.Load()) != endpoint.BreakerHalfOpen {
		t.Fatalf("probe saw breaker %v in its AttemptInfo", endpoint.BreakerState(seenState.Load()))
	}
	if b.State() != endpoint.BreakerClosed {
		t.Fatalf("state after 2 successful probes = %v", b.State())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 3 || changes[0] != "closed>open" || changes[1] != "open>half_open" || changes[2] != "half_open>closed" {
		t.Fatalf("transitions = %v", changes)
	}
}

func TestBreakerIgnoresNonRetryableAndCancellation(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 2, Cooldown: time.Hour})
	bad := breakerChain(b, func(context.Context, any) (any, error) { return nil, Permanent(errors.New("400")) })
	for i := 0; i < 10; i++ {
		_, _ = bad(context.Background(), nil)
	}
	for i := 0; i < 3; i++ { // the caller gives up mid-try, three times
		ctx, cancel := context.WithCancel(context.Background())
		slow := breakerChain(b, func(ctx context.Context, _ any) (any, error) { cancel(); <-ctx.Done(); return nil, ctx.Err() })
		_, _ = slow(ctx, nil)
		cancel()
	}
	if b.State() != endpoint.BreakerClosed {
		t.Fatalf("breaker %v after non-retryable errors and cancellations", b.State())
	}
	// One retryable failure is not two.
	flaky := breakerChain(b, func(context.Context, any) (any, error) { return nil, errFlaky })
	_, _ = flaky(context.Background(), nil)
	if b.State() != endpoint.BreakerClosed {
		t.Fatal("tripped after one failure")
	}
	_, _ = flaky(context.Background(), nil)
	if b.State() != endpoint.BreakerOpen {
		t.Fatal("did not trip after two consecutive retryable failures")
	}
}

func TestBreakerRatioMode(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{FailureRatio: 0.5, MinRequests: 10, Window: time.Minute, Cooldown: time.Hour})
	var n atomic.Int32
	ep := breakerChain(b, func(context.Context, any) (any, error) {
		if n.Add(1)%2 == 0 {
			return nil, errFlaky
		}
		return "ok", nil
	})
	for i := 0; i < 9; i++ {
		_, _ = ep(context.Background(), nil)
		if b.State() != endpoint.BreakerClosed {
			t.Fatalf("tripped after %d calls, before MinRequests", i+1)
		}
	}
	_, _ = ep(context.Background(), nil) // 10th call: 5/10 failed
	if b.State() != endpoint.BreakerOpen {
		t.Fatalf("state %v at a 50%% failure ratio", b.State())
	}
}

func TestBreakerSuccessPathAllocatesNothing(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{})
	ep := Breaker(b)(endpoint.Nop)
	ctx := endpoint.WithAttempt(context.Background(), endpoint.AttemptInfo{Attempt: 1})
	if n := testing.AllocsPerRun(200, func() { _, _ = ep(ctx, nil) }); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}
