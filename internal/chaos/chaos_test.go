package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	callers        = 64
	callsPerCaller = 120
	overall        = 150 * time.Millisecond
	slack          = 250 * time.Millisecond // scheduling under -race on 2 cores
)

// keys and the envelopes the suite runs them under.
var keys = []string{"flaky.Read", "stall.Read", "panic.Write", "garbage.Get", "mixed.Query"}

func executor(ratio, bucket middleware.Budget) *recourse.Executor {
	base := []policy.Option{
		policy.MaxAttempts(3), policy.Backoff(time.Millisecond, 5*time.Millisecond, 2),
		policy.TimeoutPerAttempt(40 * time.Millisecond), policy.OverallTimeout(overall),
	}
	with := func(extra ...policy.Option) []policy.Option {
		return append(append([]policy.Option{}, base...), extra...)
	}
	return recourse.NewExecutor(
		recourse.WithBudget("ratio", ratio),
		recourse.WithBudget("bucket", bucket),
		recourse.WithPolicy("flaky.Read", with(
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 8, Cooldown: 20 * time.Millisecond, HalfOpenProbes: 2}),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 3 * time.Millisecond, MaxHedges: 2}),
			policy.WithBudget("ratio"))...),
		recourse.WithPolicy("stall.Read", with(
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Quantile: 0.9, Delay: 2 * time.Millisecond, MaxHedges: 1, Budget: "bucket"}))...),
		recourse.WithPolicy("panic.Write", with(policy.WithBudget("bucket"))...),
		recourse.WithPolicy("garbage.Get", with(
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, FailureRatio: 0.5, MinRequests: 10, Window: time.Second, Cooldown: 20 * time.Millisecond}))...),
		recourse.WithPolicy("mixed.Query", with(
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 5, Cooldown: 10 * time.Millisecond}),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 2 * time.Millisecond, MaxHedges: 3}),
			policy.WithBudget("ratio"))...),
	)
}

// nilErr is a typed nil pointer: as an error interface it is not nil.
type nilErr struct{}

func (*nilErr) Error() string { return "typed nil" }

type failedResponse struct{ err error }

func (f failedResponse) Failed() error { return f.err }

// dependency misbehaves per key, randomly. Hedged tries run it
// concurrently, so it draws from the goroutine-safe global source.
func dependency(key string, tries *atomic.Int64) func(context.Context) error {
	return func(ctx context.Context) error {
		tries.Add(1)
		sleep := func(d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		n := rand.IntN(100)
		switch key {
		case "flaky.Read": // flaps: fails in alternating 30ms phases
			if time.Now().UnixMilli()/30%2 == 0 && n < 90 {
				return errors.New("flapping")
			}
			return sleep(time.Duration(n%4) * time.Millisecond)
		case "stall.Read": // mostly fast, sometimes stalls until cancelled
			if n < 15 {
				<-ctx.Done()
				return ctx.Err()
			}
			return sleep(time.Millisecond)
		case "panic.Write":
			if n < 30 {
				panic(fmt.Sprintf("nil map write #%d", n))
			}
			return nil
		case "garbage.Get":
			switch {
			case n < 20:
				var e *nilErr
				return e // a typed nil: non-nil error
			case n < 40:
				return fmt.Errorf("wrapped cancel while alive: %w", context.Canceled)
			case n < 50:
				return recourse.Permanent(errors.Join(nil, errors.New("joined")))
			}
			return nil
		default: // mixed
			switch {
			case n < 10:
				panic(errors.New("panic with an error value"))
			case n < 30:
				return sleep(50 * time.Millisecond) // past the per-attempt timeout
			case n < 50:
				return errors.New("boom")
			}
			return sleep(time.Duration(n%3) * time.Millisecond)
		}
	}
}

type result struct {
	key     string
	elapsed time.Duration
	err     error
	tl      *timeline.Timeline
}

func TestChaos(t *testing.T) {
	ratio := middleware.NewRatioBudget(middleware.Ratio(0.2), middleware.RatioFloor(50))
	bucket := middleware.NewTokenBucketBudget(30, 200, middleware.WithClock(nil))
	exec := executor(ratio, bucket)

	var tries, escaped atomic.Int64
	results := make(chan result, callers*callsPerCaller)
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					escaped.Add(1)
				}
			}()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for i := 0; i < callsPerCaller; i++ {
				key := keys[rng.IntN(len(keys))]
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				switch rng.IntN(10) {
				case 0: // the caller gives up early
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(20))*time.Millisecond)
				case 1: // or cancels at a random moment
					ctx, cancel = context.WithCancel(ctx)
					stop := time.AfterFunc(time.Duration(rng.IntN(10))*time.Millisecond, cancel)
					defer stop.Stop()
				}
				ctx, capture := timeline.Record(ctx)
				op := dependency(key, &tries)
				start := time.Now()
				var err error
				if key == "garbage.Get" && i%2 == 0 {
					// Through the go-kit path, with responses of odd shapes.
					ep := exec.Endpoint(key, func(ctx context.Context, req any) (any, error) {
						if e := op(ctx); e != nil {
							return nil, e
						}
						return failedResponse{}, nil
					})
					_, err = ep(ctx, nil)
				} else {
					err = exec.Do(ctx, key, op)
				}
				results <- result{key: key, elapsed: time.Since(start), err: err, tl: capture.Timeline()}
				cancel()
			}
		}(g)
	}
	wg.Wait()
	close(results)

	var (
		n, panics, late int
		perKey          = map[string]int{}
		reasons         = map[string]int{}
		hedges          int
	)
	for r := range results {
		if r.tl != nil {
			for _, a := range r.tl.Attempts {
				reasons[a.Reason]++
				if a.Hedge {
					hedges++
				}
			}
		}
		n++
		perKey[r.key]++
		if r.elapsed > overall+slack {
			late++
			t.Errorf("%s took %v, overall timeout %v", r.key, r.elapsed, overall)
		}
		var pe *recourse.PanicError
		if errors.As(r.err, &pe) {
			panics++
		}
		checkTimeline(t, r)
	}
	if escaped.Load() != 0 {
		t.Fatalf("%d panics escaped to callers", escaped.Load())
	}
	if n != callers*callsPerCaller {
		t.Fatalf("%d results for %d calls", n, callers*callsPerCaller)
	}
	// The suite must have exercised what it claims to.
	if panics == 0 || hedges == 0 || reasons[timeline.ReasonCircuitOpen] == 0 || reasons[timeline.ReasonTimeout] == 0 ||
		reasons[timeline.ReasonCanceled]+reasons[timeline.ReasonHedgeLost] == 0 {
		t.Fatalf("the run did not exercise every behaviour: panics %d, hedges %d, reasons %v", panics, hedges, reasons)
	}
	// Consistent shared state.
	for _, k := range []string{"flaky.Read", "garbage.Get", "mixed.Query"} {
		switch s := exec.Breaker(k).State(); s {
		case endpoint.BreakerClosed, endpoint.BreakerHalfOpen, endpoint.BreakerOpen:
		default:
			t.Errorf("breaker %s in state %v", k, s)
		}
	}
	if tok := bucket.(middleware.TokenReporter).Tokens(); tok < 0 || tok > 30 {
		t.Errorf("token bucket holds %v tokens, capacity 30", tok)
	}
	maxTries := int64(n) * 3 * 4 // attempts × (primary + up to 3 hedges)
	if tries.Load() > maxTries {
		t.Errorf("%d tries for %d calls: more than the policies allow", tries.Load(), n)
	}
	t.Logf("%d calls by %d callers (%v), %d tries, %d hedged tries, %d panics recovered, 0 escaped, %d late; reasons %v",
		n, callers, perKey, tries.Load(), hedges, panics, late, reasons)
}

// checkTimeline asserts a call's timeline is well formed.
func checkTimeline(t *testing.T, r result) {
	t.Helper()
	tl := r.tl
	if tl == nil {
		t.Errorf("%s: no timeline captured", r.key)
		return
	}
	if tl.Key != r.key || tl.End.Before(tl.Start) {
		t.Errorf("%s: bad timeline header %v..%v key %q", r.key, tl.Start, tl.End, tl.Key)
	}
	if !errors.Is(tl.Err, r.err) && tl.Err != r.err {
		t.Errorf("%s: timeline err %v, call err %v", r.key, tl.Err, r.err)
	}
	attempts := map[int]bool{}
	won := map[int]int{}
	for _, a := range tl.Attempts {
		if a.EndTime.Before(a.StartTime) || a.StartTime.Before(tl.Start) || a.EndTime.After(tl.End) {
			t.Errorf("%s: record outside its call or ending before it starts: %+v", r.key, a)
		}
		if a.Attempt < 1 || a.Hedge != (a.HedgeIndex > 0) {
			t.Errorf("%s: bad record numbering %+v", r.key, a)
		}
		attempts[a.Attempt] = true
		if a.Reason == timeline.ReasonHedgeWon {
			won[a.Attempt]++
			if a.Outcome != timeline.OutcomeSuccess {
				t.Errorf("%s: a hedge winner that did not succeed: %+v", r.key, a)
			}
		}
		if a.Reason == "" || a.Outcome == timeline.OutcomeUnknown {
			t.Errorf("%s: unclassified record %+v", r.key, a)
		}
	}
	var nums []int
	for k := range attempts {
		nums = append(nums, k)
	}
	sort.Ints(nums)
	for i, k := range nums {
		if k != i+1 {
			t.Errorf("%s: attempts numbered %v: a gap", r.key, nums)
			break
		}
	}
	for a, w := range won {
		if w > 1 {
			t.Errorf("%s: attempt %d has %d hedge winners", r.key, a, w)
		}
	}
}
