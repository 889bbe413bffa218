package fleet

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

var (
	first = middleware.Try{Key: "svc.Op", Kind: middleware.TryFirst, Cost: 1}
	retry = middleware.Try{Key: "svc.Op", Kind: middleware.TryRetry, Cost: 1}
	hedge = middleware.Try{Key: "svc.Op", Kind: middleware.TryHedge, Cost: 1}
)

// newBudget returns a budget closed when the test ends. Its decisions
// wait up to 2s for Redis unless opts say otherwise: on a loaded machine
// under -race, a round trip can outlast the 20ms default, and tests that
// count fleet decisions must not see the fallback's.
func newBudget(t testing.TB, rdb redis.UniversalClient, name string, opts ...BudgetOption) *Budget {
	b := NewBudget(rdb, name, append([]BudgetOption{DecisionTimeout(2 * time.Second)}, opts...)...)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// firsts counts n first tries on b.
func firsts(b *Budget, n int) {
	for range n {
		b.Take(context.Background(), first)
	}
}

// The fleet-wide ratio holds across 10 budget instances, each with its
// own client, asking at once: exactly ratio × first tries are allowed.
func TestRatioAcrossTenInstances(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client()
	const n = 10
	bs := make([]*Budget, n)
	for i := range bs {
		bs[i] = newBudget(t, srv.client(), "ten", Ratio(0.1), Floor(0), MaxLease(1), FlushInterval(20*time.Millisecond))
		firsts(bs[i], 100)
	}
	key := bs[0].Key()
	waitFor(t, 2*time.Second, "1000 first tries in Redis", func() bool { return hashSum(t, admin, key, "f") == 1000 })

	var allowed atomic.Int64
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				d := b.Take(context.Background(), retry)
				if d.Allowed {
					allowed.Add(1)
				}
				if d.Reason != reasonAvailable && d.Reason != reasonExceeded {
					t.Errorf("reason %q: want a fleet decision", d.Reason)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("allowed %d retries fleet-wide after 1000 first tries at ratio 0.1; want 100", got)
	}
	if got := hashSum(t, admin, key, "e"); got != 100 {
		t.Fatalf("Redis counts %d extras; want 100", got)
	}
}

// With leases, the fleet never exceeds the ratio either (leased tokens
// are charged when taken), and few tokens are lost to expired leases.
func TestLeasesKeepTheBound(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client()
	bs := make([]*Budget, 4)
	for i := range bs {
		bs[i] = newBudget(t, srv.client(), "lease", Ratio(0.1), Floor(0), MaxLease(8), FlushInterval(20*time.Millisecond))
		firsts(bs[i], 500)
	}
	waitFor(t, 2*time.Second, "first tries in Redis", func() bool { return hashSum(t, admin, bs[0].Key(), "f") == 2000 })
	var allowed, leased atomic.Int64
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				d := b.Take(context.Background(), hedge)
				if d.Allowed {
					allowed.Add(1)
				}
				if d.Reason == reasonLeased {
					leased.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got > 200 || got < 200-4*8 {
		t.Fatalf("allowed %d hedges after 2000 first tries at ratio 0.1; want ≤ 200 and ≥ %d", got, 200-4*8)
	}
	if leased.Load() == 0 {
		t.Fatal("no decision was paid from a lease at 100 back-to-back decisions")
	}
	if got := hashSum(t, admin, bs[0].Key(), "e"); got > 200 {
		t.Fatalf("Redis charged %d extras; want ≤ 200", got)
	}
}

// The floor counts once for the fleet, not once per replica.
func TestFloorIsFleetWide(t *testing.T) {
	srv := startRedis(t)
	var allowed int
	for range 10 {
		b := newBudget(t, srv.client(), "floor", Ratio(0), Floor(2), Window(time.Second), MaxLease(1))
		for range 3 {
			if b.Take(context.Background(), retry).Allowed {
				allowed++
			}
		}
	}
	if allowed != 2 {
		t.Fatalf("10 replicas got %d retries from a floor of 2/s over 1s; want 2", allowed)
	}
}

// Budgets of different names share nothing.
func TestNamesAreIndependent(t *testing.T) {
	srv := startRedis(t)
	a := newBudget(t, srv.client(), "a", Ratio(1), Floor(0), MaxLease(1))
	b := newBudget(t, srv.client(), "b", Ratio(1), Floor(0), MaxLease(1))
	if a.Key() == b.Key() {
		t.Fatalf("both budgets use key %q", a.Key())
	}
	firsts(a, 3)
	for i := range 3 {
		if d := a.Take(context.Background(), retry); !d.Allowed {
			t.Fatalf("a: retry %d refused (%s) after 3 first tries at ratio 1", i, d.Reason)
		}
	}
	if d := a.Take(context.Background(), retry); d.Allowed {
		t.Fatal("a: fourth retry allowed after 3 first tries at ratio 1")
	}
	if d := b.Take(context.Background(), retry); d.Allowed || d.Reason != reasonExceeded {
		t.Fatalf("b: %+v; want refused by the fleet: b has seen no first try", d)
	}
	firsts(b, 1)
	if d := b.Take(context.Background(), retry); !d.Allowed {
		t.Fatalf("b: %+v after its own first try; a's use must not count against b", d)
	}
}

// The key carries a hash tag (one Redis Cluster slot) and expires.
func TestKeyHashTagAndTTL(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client()
	b := newBudget(t, srv.client(), "payments", Window(2*time.Second))
	if want := "recourse:fleet:{payments}:budget"; b.Key() != want {
		t.Fatalf("key %q; want %q", b.Key(), want)
	}
	firsts(b, 1)
	b.Take(context.Background(), retry)
	ttl, err := admin.PTTL(context.Background(), b.Key()).Result()
	if err != nil || ttl <= 0 || ttl > 4*time.Second {
		t.Fatalf("PTTL = %v, %v; want in (0, 2 windows]", ttl, err)
	}
}

// First tries never wait on Redis: with Redis refusing connections, hung
// (SIGSTOP) or absent, each is allowed in well under 5 ms.
func TestFirstTriesDoNotWaitOnRedis(t *testing.T) {
	srv := startRedis(t)
	check := func(name string, b *Budget) {
		t.Helper()
		var worst time.Duration
		for range 2000 {
			start := time.Now()
			d := b.Take(context.Background(), first)
			worst = max(worst, time.Since(start))
			if !d.Allowed || d.Reason != reasonFirstTry {
				t.Fatalf("%s: first try %+v", name, d)
			}
		}
		if worst >= 5*time.Millisecond {
			t.Fatalf("%s: slowest first try took %v; want < 5ms", name, worst)
		}
	}
	hung := newBudget(t, srv.client(), "hung", FlushInterval(time.Millisecond))
	srv.pause()
	check("hung", hung)
	srv.resume()

	rdb := newClient("127.0.0.1:" + itoa(freePort(t)))
	defer rdb.Close()
	refused := newBudget(t, rdb, "refused", FlushInterval(time.Millisecond))
	check("refused", refused)
	check("nil client", newBudget(t, nil, "nil"))
}

// With Redis down, the fallback decides retries: bounded (a local ratio
// budget by default, never unlimited), marked in the reason, and quickly.
func TestFallbackIsBoundedAndMarked(t *testing.T) {
	rdb := newClient("127.0.0.1:" + itoa(freePort(t)))
	defer rdb.Close()
	b := newBudget(t, rdb, "down", Ratio(0.1), Floor(0))
	firsts(b, 100)
	var allowed int
	for range 1000 {
		start := time.Now()
		d := b.Take(context.Background(), retry)
		if el := time.Since(start); el > 200*time.Millisecond {
			t.Fatalf("retry decision took %v with Redis down", el)
		}
		if !strings.HasPrefix(d.Reason, "fleet_fallback:") {
			t.Fatalf("reason %q; want fleet_fallback:…", d.Reason)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("fallback allowed %d retries after 100 first tries at ratio 0.1; want 10", allowed)
	}
	if !b.Degraded() {
		t.Fatal("Degraded() = false with Redis down")
	}
}

// A hung Redis (SIGSTOP) costs a retry decision no more than the decision
// timeout; the fallback decides, and later decisions do not wait at all
// until Redis is probed again.
func TestHungRedisCostsOneTimeout(t *testing.T) {
	srv := startRedis(t)
	b := newBudget(t, srv.client(), "hung", DecisionTimeout(20*time.Millisecond), ProbeInterval(time.Hour), MaxLease(1))
	firsts(b, 10)
	if d := b.Take(context.Background(), retry); d.Reason != reasonAvailable {
		t.Fatalf("before the hang: %+v", d)
	}
	srv.pause()
	defer srv.resume()
	start := time.Now()
	d := b.Take(context.Background(), retry)
	if el := time.Since(start); el > 150*time.Millisecond || !strings.HasPrefix(d.Reason, reasonFallback) {
		t.Fatalf("first decision with Redis hung: %+v after %v; want the fallback's within ~20ms", d, el)
	}
	start = time.Now()
	for range 100 {
		if d := b.Take(context.Background(), retry); !strings.HasPrefix(d.Reason, reasonFallback) {
			t.Fatalf("decision with Redis hung: %+v", d)
		}
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Fatalf("100 decisions with Redis known down took %v; they must not wait on it", el)
	}
}

// When Redis comes back — restarted empty, its script cache gone — the
// fleet budget resumes by itself.
func TestRecoversAfterRedisRestart(t *testing.T) {
	srv := startRedis(t)
	b := newBudget(t, srv.client(), "restart", Ratio(1), Floor(0), MaxLease(1),
		ProbeInterval(50*time.Millisecond), FlushInterval(10*time.Millisecond))
	firsts(b, 5)
	if d := b.Take(context.Background(), retry); d.Reason != reasonAvailable {
		t.Fatalf("before the restart: %+v", d)
	}
	srv.kill()
	waitFor(t, 2*time.Second, "fallback after Redis died", func() bool {
		return strings.HasPrefix(b.Take(context.Background(), retry).Reason, reasonFallback)
	})
	srv.start()
	firsts(b, 5)
	waitFor(t, 3*time.Second, "fleet decisions after Redis restarted", func() bool {
		firsts(b, 1)
		d := b.Take(context.Background(), retry)
		return d.Reason == reasonAvailable || d.Reason == reasonExceeded
	})
	if b.Degraded() {
		t.Fatal("Degraded() = true after Redis answered again")
	}
}

// After Close the budget's goroutine is gone and the fallback decides.
func TestClose(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client()
	b := NewBudget(srv.client(), "close", FlushInterval(time.Hour))
	firsts(b, 7)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := hashSum(t, admin, b.Key(), "f"); got != 7 {
		t.Fatalf("Close sent %d first tries; want the 7 counted", got)
	}
	if d := b.Take(context.Background(), retry); !strings.HasPrefix(d.Reason, reasonFallback) {
		t.Fatalf("after Close: %+v", d)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	firsts(b, 1) // no goroutine is started again (goleak checks)
}

// A caller's cancelled context does not make Redis look down.
func TestCancelledCallerIsNotARedisFailure(t *testing.T) {
	srv := startRedis(t)
	b := newBudget(t, srv.client(), "cancel", MaxLease(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Take(ctx, retry)
	if b.Degraded() {
		t.Fatal("Degraded() after a cancelled caller")
	}
}

// Bad input degrades, never panics.
func TestBadInput(t *testing.T) {
	var nb *Budget
	if d := nb.Take(context.Background(), first); !d.Allowed {
		t.Fatalf("nil budget refused a first try: %+v", d)
	}
	if d := nb.Take(context.Background(), retry); d.Allowed || d.Reason != reasonNil {
		t.Fatalf("nil budget allowed a retry: %+v", d)
	}
	nb.RecordOutcome(retry, false)
	_ = nb.Close()
	if !nb.Degraded() || nb.Name() != "" || nb.Key() != "" {
		t.Fatal("nil budget accessors")
	}

	var zero Budget
	if zero.Take(context.Background(), first).Allowed != true || zero.Take(context.Background(), retry).Allowed || !zero.Degraded() || zero.Close() != nil {
		t.Fatal("zero Budget: want first tries allowed, retries refused, degraded")
	}
	var zs BreakerSignal
	zs.OnBreakerState(timeline.BreakerStateChange{Key: "k", To: "open"})
	if err := zs.Run(context.Background(), noBreakers{}); err == nil {
		t.Fatal("zero BreakerSignal: Run without a client succeeded")
	}

	b := newBudget(t, nil, "", nil, Ratio(math.NaN()), Floor(math.Inf(-1)), Window(-1), DecisionTimeout(-1),
		FlushInterval(0), ProbeInterval(-5), MaxLease(-1), LeaseTTL(-1), Fallback(nil), KeyPrefix(""))
	if b.Name() != "default" || b.Key() != "recourse:fleet:{default}:budget" {
		t.Fatalf("name %q key %q", b.Name(), b.Key())
	}
	var nilCtx context.Context // a nil context must not panic
	b.Take(nilCtx, first)
	b.Take(nilCtx, retry)
	if d := b.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: -3}); d.Allowed {
		t.Fatalf("ratio NaN→0 and floor -Inf→0 allowed a retry: %+v", d)
	}
}

// A fallback that learns from outcomes is told of them.
func TestOutcomesReachTheFallback(t *testing.T) {
	fb := middleware.NewThrottleBudget(2, 0.1)
	b := newBudget(t, nil, "throttle", Fallback(fb))
	for range 3 {
		b.RecordOutcome(retry, false)
	}
	if d := b.Take(context.Background(), retry); d.Allowed || d.Reason != "fleet_fallback:throttle_closed" {
		t.Fatalf("%+v; want the drained throttle to refuse", d)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
