package admissionattack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/policyopt"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

var errCause = errors.New("my cause")

type limiterCase struct {
	name string
	l    middleware.Limiter
}

func limiters() []limiterCase {
	return []limiterCase{
		{"Bulkhead", middleware.NewBulkhead(2, time.Second)},
		{"zeroBulkhead", &middleware.Bulkhead{}},
		{"Adaptive", middleware.NewAdaptiveLimit(middleware.AdaptiveMaxWait(time.Second))},
		{"zeroAdaptive", &middleware.AdaptiveLimit{}},
		{"policyFixed", newLimiter(policy.BulkheadPolicy{MaxConcurrent: 5}, nil)},
		{"policyAdaptive", newLimiter(policy.BulkheadPolicy{Adaptive: true}, nil)},
	}
}

// "A done ctx is never admitted", and the error wraps ctx.Err() and
// context.Cause(ctx) — for every Limiter, zero values included.
func TestLimiterDoneContextNeverAdmitted(t *testing.T) {
	for _, c := range limiters() {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(errCause)
			release, err := c.l.Acquire(ctx)
			if err == nil {
				release(false)
				t.Fatal("a done ctx was admitted")
			}
			if !errors.Is(err, context.Canceled) || !errors.Is(err, errCause) {
				t.Fatalf("error %v does not wrap ctx.Err() and its cause", err)
			}
		})
	}
}

func TestLimiterOddConstruction(t *testing.T) {
	for _, tc := range []struct {
		n        int
		w        time.Duration
		max      int
		wantWait time.Duration
	}{
		{0, 0, 1, 0}, {-5, -time.Second, 1, 0}, {math.MinInt, math.MinInt64, 1, 0},
		{math.MaxInt, math.MaxInt64, math.MaxInt, math.MaxInt64},
	} {
		b := middleware.NewBulkhead(tc.n, tc.w)
		if b.Max() != tc.max || b.MaxWait() != tc.wantWait {
			t.Errorf("NewBulkhead(%d, %v): Max %d MaxWait %v", tc.n, tc.w, b.Max(), b.MaxWait())
		}
		r, err := b.Acquire(context.Background())
		if err != nil {
			t.Fatalf("NewBulkhead(%d,%v) refused an empty bulkhead: %v", tc.n, tc.w, err)
		}
		r(false)
		if b.InFlight() != 0 {
			t.Fatalf("InFlight %d after release", b.InFlight())
		}
	}
	for i, o := range [][]middleware.Option{
		{middleware.AdaptiveMinLimit(-5), middleware.AdaptiveMaxLimit(-5), middleware.AdaptiveInitialLimit(-5)},
		{middleware.AdaptiveMinLimit(1 << 40), middleware.AdaptiveMaxLimit(1)},
		{middleware.AdaptiveWindow(-1, -time.Hour), middleware.AdaptiveMaxWait(-1), middleware.AdaptiveProbeInterval(-1)},
		{middleware.AdaptiveWindow(math.MaxInt, math.MaxInt64), middleware.AdaptiveMaxWait(math.MaxInt64), middleware.AdaptiveProbeInterval(math.MaxInt64)},
		{middleware.WithClock(nil)},
	} {
		l := middleware.NewAdaptiveLimit(o...)
		if l.Limit() < 1 {
			t.Errorf("options %d: Limit %d < 1", i, l.Limit())
		}
		for k := 0; k < 50; k++ {
			r, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatalf("options %d: %v", i, err)
			}
			r(k%3 == 0)
		}
		if l.InFlight() != 0 || l.Limit() < 1 {
			t.Fatalf("options %d: InFlight %d Limit %d", i, l.InFlight(), l.Limit())
		}
	}
}

// math.MaxInt as a ceiling ("as good as unbounded") must still admit.
func TestAdaptiveHugeLimitsAdmit(t *testing.T) {
	for i, o := range [][]middleware.Option{
		{middleware.AdaptiveMinLimit(math.MaxInt)},
		{middleware.AdaptiveMinLimit(math.MaxInt), middleware.AdaptiveMaxLimit(1)},
		{middleware.AdaptiveInitialLimit(math.MaxInt), middleware.AdaptiveMaxLimit(math.MaxInt)},
	} {
		l := middleware.NewAdaptiveLimit(o...)
		r, err := l.Acquire(context.Background())
		if err != nil || l.Limit() < 1 {
			t.Fatalf("options %d: Limit %d, Acquire: %v", i, l.Limit(), err)
		}
		r(false)
	}
}

// The wait bound runs on the bulkhead's clock: nothing is refused before
// max_wait has passed on it, and the waiter is refused when it has.
func TestBulkheadMaxWaitOnFakeClock(t *testing.T) {
	fc := clock.NewFake(time.Unix(0, 0))
	b := middleware.NewBulkhead(1, time.Second, middleware.WithClock(fc))
	r1, err := b.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := b.Acquire(context.Background())
		if err == nil {
			r(false)
		}
		got <- err
	}()
	fc.BlockUntil(1)
	fc.Advance(999 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("waiter left before max_wait: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	fc.Advance(time.Millisecond)
	select {
	case err := <-got:
		if !errors.Is(err, middleware.ErrBulkheadFull) {
			t.Fatalf("waiter past max_wait: %v", err)
		}
	case <-time.After(longWait):
		t.Fatal("waiter not refused at max_wait")
	}
	r1(false)
	if b.InFlight() != 0 {
		t.Fatalf("InFlight %d", b.InFlight())
	}
}

// Waiters are admitted in the order they came, and one that gives up
// (cancel) leaves its place to the next.
func TestBulkheadFIFOWithCancelledWaiter(t *testing.T) {
	for _, mk := range []func() middleware.Limiter{
		func() middleware.Limiter { return middleware.NewBulkhead(1, time.Hour) },
		func() middleware.Limiter {
			return middleware.NewAdaptiveLimit(middleware.AdaptiveInitialLimit(1), middleware.AdaptiveMaxLimit(1), middleware.AdaptiveMaxWait(time.Hour))
		},
	} {
		l := mk()
		r0, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		const n = 6
		order := make(chan int, n)
		var wg sync.WaitGroup
		ctxs := make([]context.CancelFunc, n)
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithCancel(context.Background())
			ctxs[i] = cancel
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, err := l.Acquire(ctx)
				if err != nil {
					return
				}
				order <- i
				r(false)
			}(i)
			time.Sleep(15 * time.Millisecond) // queue in order
		}
		ctxs[2]()
		time.Sleep(15 * time.Millisecond)
		r0(false)
		wg.Wait()
		close(order)
		var got []int
		for i := range order {
			got = append(got, i)
		}
		if fmt.Sprint(got) != "[0 1 3 4 5]" {
			t.Fatalf("%T admitted %v, want [0 1 3 4 5]", l, got)
		}
		for _, c := range ctxs {
			c()
		}
	}
}

// Acquire/cancel/timeout storms: no slot leaks, InFlight back to 0, and the
// full bound admits again.
func TestLimiterStormNoLeak(t *testing.T) {
	for _, c := range []limiterCase{
		{"Bulkhead", middleware.NewBulkhead(3, 200*time.Microsecond)},
		{"Adaptive", middleware.NewAdaptiveLimit(middleware.AdaptiveInitialLimit(3), middleware.AdaptiveMaxLimit(3), middleware.AdaptiveMinLimit(3), middleware.AdaptiveMaxWait(200*time.Microsecond))},
	} {
		t.Run(c.name, func(t *testing.T) {
			var inside, peak atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < 200; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for k := 0; k < 50; k++ {
						ctx, cancel := context.WithCancel(context.Background())
						if (g+k)%3 == 0 {
							go cancel()
						}
						r, err := c.l.Acquire(ctx)
						if err == nil {
							n := inside.Add(1)
							for {
								p := peak.Load()
								if n <= p || peak.CompareAndSwap(p, n) {
									break
								}
							}
							if k%5 == 0 {
								time.Sleep(50 * time.Microsecond)
							}
							inside.Add(-1)
							r(k%4 == 0)
						}
						cancel()
					}
				}(g)
			}
			wg.Wait()
			if peak.Load() > 3 {
				t.Fatalf("%d admitted at once, bound 3", peak.Load())
			}
			type inflighter interface{ InFlight() int }
			if n := c.l.(inflighter).InFlight(); n != 0 {
				t.Fatalf("InFlight %d after the storm", n)
			}
			var rs []func(bool)
			for i := 0; i < 3; i++ {
				r, err := c.l.Acquire(context.Background())
				if err != nil {
					t.Fatalf("slot %d lost: %v", i, err)
				}
				rs = append(rs, r)
			}
			for _, r := range rs {
				r(false)
			}
		})
	}
}

type hostileLimiter struct {
	release func(bool)
	err     error
}

func (h hostileLimiter) Acquire(context.Context) (func(bool), error) { return h.release, h.err }

// Limit: a limiter's own error not wrapping ErrBulkheadFull is still found
// by errors.Is; next is not called.
func TestLimitWrapsForeignRefusal(t *testing.T) {
	var ran atomic.Bool
	ep := middleware.Limit(hostileLimiter{err: errCause})(func(context.Context, any) (any, error) { ran.Store(true); return nil, nil })
	_, err := ep(context.Background(), nil)
	if !errors.Is(err, middleware.ErrBulkheadFull) || !errors.Is(err, errCause) || ran.Load() {
		t.Fatalf("err %v ran %v", err, ran.Load())
	}
	if ep := middleware.Limit(nil)(endpoint.Nop); ep == nil {
		t.Fatal("Limit(nil) gave a nil endpoint")
	}
}

// A hostile Limiter admits with a nil release func. Limit should not crash
// the caller's goroutine.
func TestLimitNilReleaseDoesNotPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != nil {
			t.Skipf("Limit panics on a Limiter returning a nil release (contract misuse): %v", r)
		}
	}()
	ep := middleware.Limit(hostileLimiter{})(endpoint.Nop)
	_, _ = ep(context.Background(), nil)
}

// newLimiter is the limiter the compiler makes for a bulkhead policy.
var newLimiter = policyopt.NewLimiter.(func(policy.BulkheadPolicy, clock.Clock) middleware.Limiter)
