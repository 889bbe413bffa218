package fleet

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// 1000 goroutines take first tries, retries and hedges while the budget
// closes under them: no race, no panic, no goroutine left (goleak), and
// every decision is a fleet or fallback one.
func TestHammerWhileClosing(t *testing.T) {
	srv := startRedis(t)
	b := NewBudget(srv.client(), "hammer", FlushInterval(time.Millisecond))
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kind := []middleware.Try{first, retry, hedge}[i%3]
			for range 20 {
				d := b.Take(context.Background(), kind)
				if r := d.Reason; r != reasonFirstTry && !strings.HasPrefix(r, "fleet_") {
					t.Errorf("reason %q", r)
					return
				}
			}
		}()
		if i == 500 {
			go func() { _ = b.Close() }()
		}
	}
	wg.Wait()
	_ = b.Close()
}

// A huge cost does not overflow into a grant.
func TestHugeCost(t *testing.T) {
	srv := startRedis(t)
	b := newBudget(t, srv.client(), "huge", Ratio(1), Floor(0))
	firsts(b, 10)
	b.Take(context.Background(), retry) // grow the lease size
	if d := b.Take(context.Background(), middleware.Try{Kind: middleware.TryRetry, Cost: math.MaxInt}); d.Allowed {
		t.Fatalf("a try costing MaxInt tokens allowed: %+v", d)
	}
}

// decisions records the executor's budget decisions.
type decisions struct {
	timeline.BaseObserver
	mu  sync.Mutex
	got []timeline.BudgetDecision
}

func (d *decisions) OnBudgetDecision(_ context.Context, ev timeline.BudgetDecision) {
	d.mu.Lock()
	d.got = append(d.got, ev)
	d.mu.Unlock()
}

// Through an executor, with Redis down: calls are never failed by the
// budget's troubles, retries are bounded by the fallback, and each
// decision says the fallback made it.
func TestExecutorWithRedisDown(t *testing.T) {
	rdb := newClient("127.0.0.1:" + itoa(freePort(t)))
	defer rdb.Close()
	b := newBudget(t, rdb, "exec", Ratio(0.1), Floor(0))
	obs := &decisions{}
	exec := recourse.NewExecutor(
		recourse.WithPolicy("dep.Get", policy.MaxAttempts(3), policy.Backoff(time.Microsecond, time.Microsecond, 1), policy.WithBudget("retries")),
		recourse.WithBudget("retries", b), recourse.WithObserver(obs))
	down := errors.New("down")
	tries := 0
	for range 100 {
		err := exec.Do(context.Background(), "dep.Get", func(context.Context) error { tries++; return down })
		if !errors.Is(err, down) {
			t.Fatalf("call returned %v; want the dependency's error", err)
		}
	}
	if tries > 100+10 {
		t.Fatalf("%d tries for 100 calls; the fallback (ratio 0.1) allows at most 110", tries)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.got) == 0 {
		t.Fatal("no budget decision observed")
	}
	for _, ev := range obs.got {
		if !strings.HasPrefix(ev.Reason, "fleet_fallback:") || ev.Budget != "retries" {
			t.Fatalf("decision %+v; want budget retries, reason fleet_fallback:…", ev)
		}
	}
}
