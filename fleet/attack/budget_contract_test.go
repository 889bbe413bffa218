package fleetattack

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/fleet"
	"github.com/recourse-go/recourse/middleware"
	"go.uber.org/goleak"
)

// Twelve Budget instances with separate clients, each on its own goroutines
// with leases on, interleave first tries and retries/hedges as fast as they
// can: fleet-wide extras stay within ratio × first tries + floor × window.
func TestFleetRatioManyInstancesWithLeases(t *testing.T) {
	s := startRedis(t)
	const instances, perInstance = 12, 2000
	const ratio, floor = 0.05, 0.5 // floor × 10s window = 5
	var allowed, firstN, fallbacks atomic.Int64
	var budgets []*fleet.Budget
	for i := 0; i < instances; i++ {
		b := fleet.NewBudget(s.client(), "shared", fleet.Ratio(ratio), fleet.Floor(floor), fleet.MaxLease(8),
			// A loaded 2-core machine under -race misses 20ms now and then;
			// this test is about the fleet's arithmetic, not the timeout.
			fleet.DecisionTimeout(5*time.Second))
		budgets = append(budgets, b)
	}
	var wg sync.WaitGroup
	for _, b := range budgets {
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func(b *fleet.Budget) {
				defer wg.Done()
				for i := 0; i < perInstance/2; i++ {
					b.Take(bg, first)
					firstN.Add(1)
					for j := 0; j < 3; j++ {
						tr := retry
						if j == 2 {
							tr = hedge
						}
						if d := b.Take(bg, tr); d.Allowed {
							allowed.Add(1)
							if isFallback(d.Reason) {
								fallbacks.Add(1)
							}
						}
					}
				}
			}(b)
		}
	}
	wg.Wait()
	for _, b := range budgets {
		_ = b.Close()
	}
	bound := ratio*float64(firstN.Load()) + floor*10
	t.Logf("allowed %d extras for %d first tries (bound %.0f), %d by the fallback", allowed.Load(), firstN.Load(), bound, fallbacks.Load())
	if fallbacks.Load() > 0 {
		t.Errorf("%d decisions fell back with a healthy Redis and a 5s decision timeout", fallbacks.Load())
	}
	if float64(allowed.Load()) > bound+1 {
		t.Errorf("fleet allowed %d extras, more than ratio×firsts+floor×window = %.0f", allowed.Load(), bound)
	}
	if float64(allowed.Load()) < 0.5*bound {
		t.Errorf("fleet allowed only %d extras of %.0f: budget far too strict", allowed.Load(), bound)
	}
}

// Budgets of different names (including names that differ only in braces and
// colons) do not share tokens.
func TestNamesIndependentEvenWhenOdd(t *testing.T) {
	s := startRedis(t)
	names := []string{"a", "{a}", "a}", "{a", "a:b", "a}:budget", "x}:budget:{a", "default", "ünï", " a"}
	keys := map[string]string{}
	var budgets []*fleet.Budget
	for _, n := range names {
		b := fleet.NewBudget(s.client(), n, fleet.Ratio(0.1), fleet.Floor(0.0001), fleet.MaxLease(1))
		defer b.Close()
		if other, dup := keys[b.Key()]; dup {
			t.Errorf("names %q and %q share the key %q", other, n, b.Key())
		}
		keys[b.Key()] = n
		budgets = append(budgets, b)
	}
	// Exhaust "a".
	firsts(budgets[0], 100)
	if n, _, _ := decideRetries(budgets[0], 50); n != 10 {
		t.Errorf("budget a allowed %d of 10", n)
	}
	for i, b := range budgets[1:] {
		firsts(b, 100)
		if n, r, _ := decideRetries(b, 50); n != 10 {
			t.Errorf("budget %q allowed %d, want 10 (its own): %v", names[i+1], n, r)
		}
	}
	admin := s.admin()
	got, _ := admin.Keys(bg, "*").Result()
	if len(got) != len(names) {
		t.Errorf("%d Redis keys for %d names: %v", len(got), len(names), got)
	}
	// Empty name is "default".
	e := fleet.NewBudget(s.client(), "")
	defer e.Close()
	if e.Name() != "default" || e.Key() != "recourse:fleet:{default}:budget" {
		t.Errorf("empty name: Name %q Key %q", e.Name(), e.Key())
	}
}

// A try's Cost is charged: a cost-5 retry takes five tokens, and a zero or
// negative cost never credits the budget.
func TestCostIsCharged(t *testing.T) {
	s := startRedis(t)
	b := fleet.NewBudget(s.client(), "cost", fleet.Ratio(0.1), fleet.Floor(0.0001), fleet.MaxLease(1))
	defer b.Close()
	firsts(b, 100) // 10 tokens
	five := middleware.Try{Key: "k", Kind: middleware.TryRetry, Cost: 5}
	n := 0
	for i := 0; i < 10; i++ {
		if b.Take(bg, five).Allowed {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d cost-5 retries allowed from 10 tokens; want 2", n)
	}
	for _, c := range []int{0, -1, -1000, math.MinInt} {
		b.Take(bg, middleware.Try{Key: "k", Kind: middleware.TryRetry, Cost: c})
	}
	if d := b.Take(bg, retry); d.Allowed {
		t.Errorf("a retry allowed after the budget was spent and zero/negative costs were asked: %+v", d)
	}
}

// The fallback is marked with its own reason, and is what the Fallback
// option says; nil keeps the bounded default.
func TestFallbackMarkedAndNeverUnlimitedByDefault(t *testing.T) {
	addr := "127.0.0.1:1" // nothing listens on port 1
	nilFB := fleet.NewBudget(clientOf(t, addr), "fb", fleet.Fallback(nil), fleet.Ratio(0.1), fleet.Floor(0.0001))
	defer nilFB.Close()
	firsts(nilFB, 100)
	if n, r, _ := decideRetries(nilFB, 100); n > 11 {
		t.Errorf("Fallback(nil) allowed %d retries for 100 firsts at 0.1: %v", n, r)
	}
	un := fleet.NewBudget(clientOf(t, addr), "fb", fleet.Fallback(middleware.UnlimitedBudget{}))
	defer un.Close()
	if d := un.Take(bg, hedge); !d.Allowed || d.Reason != "fleet_fallback:unlimited" {
		t.Errorf("explicit unlimited fallback: %+v", d)
	}
	nilRDB := fleet.NewBudget(nil, "nil-client")
	defer nilRDB.Close()
	if !nilRDB.Degraded() {
		t.Error("budget without client not Degraded")
	}
	if d := nilRDB.Take(bg, first); !d.Allowed || d.Reason != "first_try" {
		t.Errorf("first try on nil client: %+v", d)
	}
	if d := nilRDB.Take(bg, retry); !isFallback(d.Reason) {
		t.Errorf("retry on nil client: %+v", d)
	}
	var nb *fleet.Budget
	if d := nb.Take(bg, first); !d.Allowed {
		t.Errorf("nil *Budget refused a first try: %+v", d)
	}
	if d := nb.Take(bg, retry); d.Allowed || d.Reason != "fleet_nil" {
		t.Errorf("nil *Budget retry: %+v", d)
	}
	var zero fleet.Budget
	if d := zero.Take(bg, first); !d.Allowed {
		t.Errorf("zero Budget refused a first try: %+v", d)
	}
	if d := zero.Take(bg, retry); d.Allowed {
		t.Errorf("zero Budget allowed a retry: %+v", d)
	}
	_ = zero.Close()
	_ = nb.Close()
	nb.RecordOutcome(first, true)
}

// Odd options must not panic (including in the background goroutine), must
// keep first tries allowed, and must never admit without bound.
func TestOddOptions(t *testing.T) {
	s := startRedis(t)
	cases := map[string][]fleet.BudgetOption{
		"ratio NaN":            {fleet.Ratio(math.NaN())},
		"ratio negative":       {fleet.Ratio(-3)},
		"ratio +Inf":           {fleet.Ratio(math.Inf(1))},
		"ratio -Inf":           {fleet.Ratio(math.Inf(-1))},
		"ratio huge":           {fleet.Ratio(1e300)},
		"floor negative":       {fleet.Floor(-5)},
		"floor NaN":            {fleet.Floor(math.NaN())},
		"floor +Inf":           {fleet.Floor(math.Inf(1))},
		"floor huge":           {fleet.Floor(1e300)},
		"window zero":          {fleet.Window(0)},
		"window negative":      {fleet.Window(-time.Second)},
		"window 1ns":           {fleet.Window(1)},
		"window huge":          {fleet.Window(time.Duration(math.MaxInt64))},
		"flush zero":           {fleet.FlushInterval(0)},
		"flush negative":       {fleet.FlushInterval(-time.Second)},
		"probe zero":           {fleet.ProbeInterval(0)},
		"probe negative":       {fleet.ProbeInterval(-time.Second)},
		"decision zero":        {fleet.DecisionTimeout(0)},
		"decision negative":    {fleet.DecisionTimeout(-time.Second)},
		"decision huge":        {fleet.DecisionTimeout(time.Duration(math.MaxInt64))},
		"lease ttl zero":       {fleet.LeaseTTL(0)},
		"lease ttl negative":   {fleet.LeaseTTL(-time.Second)},
		"max lease zero":       {fleet.MaxLease(0)},
		"max lease negative":   {fleet.MaxLease(-8)},
		"max lease huge":       {fleet.MaxLease(math.MaxInt)},
		"key prefix empty":     {fleet.KeyPrefix("")},
		"key prefix braces":    {fleet.KeyPrefix("{x}")},
		"nil option":           {nil},
		"everything zero-ish":  {fleet.Ratio(0), fleet.Floor(0), fleet.Window(0), fleet.FlushInterval(0), fleet.MaxLease(0)},
		"ratio 0 floor 0 only": {fleet.Ratio(0), fleet.Floor(0)},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("panic: %v", v)
				}
			}()
			b := fleet.NewBudget(s.client(), "odd", opts...)
			defer b.Close()
			if d := b.Take(bg, first); !d.Allowed {
				t.Errorf("first try refused: %+v", d)
			}
			firsts(b, 99)
			time.Sleep(30 * time.Millisecond) // let a background flush run
			n, reasons, longest := decideRetries(b, 50)
			if longest > time.Second {
				t.Errorf("a retry decision took %v", longest)
			}
			t.Logf("allowed %d/50 for 100 first tries: %v", n, reasons)
			_ = s.admin().FlushAll(bg).Err()
		})
	}
}

// Ratio 0 and Floor 0 mean no extras at all, fleet-wide and in the fallback.
func TestRatioZeroFloorZeroRefusesEverything(t *testing.T) {
	s := startRedis(t)
	b := fleet.NewBudget(s.client(), "zero", fleet.Ratio(0), fleet.Floor(0))
	defer b.Close()
	firsts(b, 1000)
	if n, r, _ := decideRetries(b, 100); n != 0 {
		t.Errorf("Ratio(0) Floor(0): %d retries allowed: %v", n, r)
	}
	down := fleet.NewBudget(clientOf(t, "127.0.0.1:1"), "zero", fleet.Ratio(0), fleet.Floor(0))
	defer down.Close()
	firsts(down, 1000)
	if n, r, _ := decideRetries(down, 100); n != 0 {
		t.Errorf("Ratio(0) Floor(0), fallback: %d retries allowed: %v", n, r)
	}
}

// Close stops everything, twice, concurrently with Take; use after Close
// falls back and starts nothing.
func TestCloseAndUseAfterClose(t *testing.T) {
	s := startRedis(t)
	c := newClient(s.Addr())
	b := fleet.NewBudget(c, "close")
	firsts(b, 100)
	b.Take(bg, retry)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); _ = b.Close() }()
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				b.Take(bg, first)
				b.Take(bg, retry)
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !b.Degraded() {
		t.Error("closed budget not Degraded")
	}
	if d := b.Take(bg, first); !d.Allowed || d.Reason != "first_try" {
		t.Errorf("first try after Close: %+v", d)
	}
	if d := b.Take(bg, retry); !isFallback(d.Reason) {
		t.Errorf("retry after Close: %+v", d)
	}
	b.RecordOutcome(retry, false)
	_ = c.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// A budget closed before its first use never starts its goroutine.
	c2 := newClient(s.Addr())
	b2 := fleet.NewBudget(c2, "close2")
	_ = b2.Close()
	firsts(b2, 10)
	b2.Take(bg, retry)
	_ = c2.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// Close with Redis hung returns promptly (its last flush is bounded).
func TestCloseWithRedisHung(t *testing.T) {
	s := startRedis(t)
	b := fleet.NewBudget(s.client(), "closehung", fleet.FlushInterval(10*time.Millisecond))
	firsts(b, 100)
	b.Take(bg, retry)
	s.pause()
	defer s.resume()
	firsts(b, 100)
	time.Sleep(50 * time.Millisecond)
	d := timed(func() { _ = b.Close() })
	t.Logf("Close with Redis hung took %v", d)
	if d > 4*time.Second {
		t.Errorf("Close took %v with Redis hung", d)
	}
}

// Take with a cancelled context decides at once and does not mark Redis as
// failed; a nil context does not panic.
func TestTakeWithCancelledAndNilContext(t *testing.T) {
	s := startRedis(t)
	b := fleet.NewBudget(s.client(), "ctx", fleet.MaxLease(1))
	defer b.Close()
	firsts(b, 100)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	for i := 0; i < 20; i++ {
		if d := timed(func() { b.Take(ctx, retry) }); d > 20*time.Millisecond+slack {
			t.Errorf("Take with a cancelled context took %v", d)
		}
	}
	if b.Degraded() {
		t.Error("a cancelled caller made the budget Degraded")
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				t.Errorf("Take(nil ctx) panicked: %v", v)
			}
		}()
		//lint:ignore SA1012 the attack is the nil context
		b.Take(nil, first) //nolint:staticcheck
		//lint:ignore SA1012 the attack is the nil context
		b.Take(nil, retry) //nolint:staticcheck
	}()
	if b.Degraded() {
		t.Error("a nil context made the budget Degraded")
	}
}

// 1000 goroutines on one budget, Redis killed and restarted under them,
// Close at the end: no race, no panic, no Take longer than the bound.
func TestThousandGoroutines(t *testing.T) {
	s := startRedis(t)
	b := fleet.NewBudget(s.client(), "k1000", fleet.ProbeInterval(50*time.Millisecond))
	var worst atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 1000; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tr := first
				if g%3 == 1 {
					tr = retry
				} else if g%3 == 2 {
					tr = hedge
				}
				d := timed(func() {
					dec := b.Take(bg, tr)
					b.RecordOutcome(tr, dec.Allowed)
				})
				for {
					w := worst.Load()
					if int64(d) <= w || worst.CompareAndSwap(w, int64(d)) {
						break
					}
				}
				time.Sleep(time.Millisecond)
			}
		}(g)
	}
	time.Sleep(300 * time.Millisecond)
	s.kill()
	time.Sleep(300 * time.Millisecond)
	s.start()
	time.Sleep(300 * time.Millisecond)
	_ = b.Close()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("longest Take under 1000 goroutines: %v", time.Duration(worst.Load()))
	if time.Duration(worst.Load()) > 2*time.Second {
		t.Errorf("a Take took %v", time.Duration(worst.Load()))
	}
}
