package fleetattack

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/fleet"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// reasons records budget decision reasons seen by an executor's observer.
type reasons struct {
	timeline.BaseObserver
	mu sync.Mutex
	m  map[string]int
}

func (r *reasons) OnBudgetDecision(_ context.Context, ev timeline.BudgetDecision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]int{}
	}
	r.m[ev.Reason]++
}

func (r *reasons) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.m
	r.m = nil
	return m
}

type fleetReplica struct {
	exec   *recourse.Executor
	budget *fleet.Budget
	obs    *reasons
}

// outagePhase runs calls on every replica against a dependency that is 100 %
// down and returns tries per call, the longest call and the reasons seen.
func outagePhase(t *testing.T, rs []fleetReplica, callsEach int) (perCall float64, longest time.Duration, seen map[string]int) {
	var tries, calls, worst atomic.Int64
	var wg sync.WaitGroup
	for _, r := range rs {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(r fleetReplica) {
				defer wg.Done()
				for i := 0; i < callsEach/4; i++ {
					start := time.Now()
					tl, err := r.exec.DoWithTimeline(bg, "dep.Call", func(context.Context) error {
						tries.Add(1)
						return errDown
					})
					if err == nil {
						t.Error("a call to a dead dependency succeeded")
					}
					if d := int64(time.Since(start)); d > worst.Load() {
						worst.Store(d)
					}
					calls.Add(1)
					for _, a := range tl.Attempts {
						if a.Reason == timeline.ReasonBudgetDenied && a.EndTime != a.StartTime {
							t.Errorf("a budget-denied attempt ran: %+v", a)
						}
					}
				}
			}(r)
		}
	}
	wg.Wait()
	seen = map[string]int{}
	for _, r := range rs {
		for k, v := range r.obs.take() {
			seen[k] += v
		}
	}
	return float64(tries.Load()) / float64(calls.Load()), time.Duration(worst.Load()), seen
}

// Several executors share one fleet budget through separate clients: during
// a 100 % outage the fleet stays near 1 + ratio tries per call; Redis killed
// mid-outage hands over to the marked fallback without hanging a call; the
// fleet budget resumes after Redis restarts empty.
func TestExecutorsShareFleetBudgetThroughOutage(t *testing.T) {
	s := startRedis(t)
	const ratio = 0.1
	var rs []fleetReplica
	for i := 0; i < 4; i++ {
		b := fleet.NewBudget(s.client(), "dep", fleet.Ratio(ratio), fleet.Floor(0.1),
			fleet.ProbeInterval(100*time.Millisecond), fleet.DecisionTimeout(time.Second))
		t.Cleanup(func() { _ = b.Close() })
		obs := &reasons{}
		exec := recourse.NewExecutor(
			recourse.WithBudget("dep-retries", b),
			recourse.WithObserver(obs),
			recourse.WithPolicy("dep.Call", policy.MaxAttempts(4), policy.Backoff(100*time.Microsecond, time.Millisecond, 2),
				policy.WithBudget("dep-retries")),
		)
		rs = append(rs, fleetReplica{exec, b, obs})
	}
	perCall, longest, seen := outagePhase(t, rs, 800)
	t.Logf("Redis up: %.3f tries/call, longest call %v, reasons %v", perCall, longest, seen)
	// 3200 calls: ratio 0.1 → 320 extras, floor 0.1/s × 10s → 1.
	if perCall > 1+ratio+0.01 {
		t.Errorf("fleet tries/call %.3f during the outage; want ≤ %.2f", perCall, 1+ratio+0.01)
	}
	for r := range seen {
		if r != "first_try" && r != "fleet_available" && r != "fleet_exceeded" && r != "fleet_leased" {
			t.Errorf("reason %q with Redis up", r)
		}
	}
	if seen["fleet_exceeded"] == 0 {
		t.Errorf("no fleet_exceeded during a 100%% outage: %v", seen)
	}

	s.kill()
	perCall, longest, seen = outagePhase(t, rs, 400)
	t.Logf("Redis down: %.3f tries/call, longest call %v, reasons %v", perCall, longest, seen)
	for r := range seen {
		if r != "first_try" && !strings.HasPrefix(r, "fleet_fallback:") {
			t.Errorf("reason %q with Redis down", r)
		}
	}
	// Per-process fallback: ratio 0.1 of each replica's calls, plus the
	// local floors — bounded well below 4 tries/call. (It also spends again
	// the extras Redis allowed in the same window: see
	// TestFallbackNotChargedForFleetExtras; hence 2 × ratio here.)
	if perCall > 1+2*ratio+0.15 {
		t.Errorf("tries/call %.3f with Redis down; the fallback is not bounded", perCall)
	}
	if longest > 2*time.Second {
		t.Errorf("a call took %v with Redis down", longest)
	}

	s.start()
	waitFor(t, 10*time.Second, "every replica's budget to resume", func() bool {
		for _, r := range rs {
			if r.budget.Degraded() {
				return false
			}
		}
		return true
	})
	_, _, seen = outagePhase(t, rs, 200)
	t.Logf("Redis back: reasons %v", seen)
	for r := range seen {
		if strings.HasPrefix(r, "fleet_fallback:") {
			t.Errorf("reason %q after Redis came back", r)
		}
	}
}

// A hung Redis with a default client under an executor: no call waits on
// Redis for its first try, and no call hangs.
func TestExecutorWithHungRedis(t *testing.T) {
	s := startRedis(t)
	b := fleet.NewBudget(s.client(), "hungexec")
	defer b.Close()
	obs := &reasons{}
	exec := recourse.NewExecutor(
		recourse.WithBudget("r", b), recourse.WithObserver(obs),
		recourse.WithPolicy("dep.Call", policy.MaxAttempts(3), policy.Backoff(100*time.Microsecond, time.Millisecond, 2),
			policy.WithBudget("r")),
	)
	rs := []fleetReplica{{exec, b, obs}}
	outagePhase(t, rs, 40)
	s.pause()
	defer s.resume()
	_, longest, seen := outagePhase(t, rs, 200)
	t.Logf("hung: longest call %v, reasons %v", longest, seen)
	if longest > time.Second {
		t.Errorf("a call took %v with Redis hung", longest)
	}
	// Successful calls never ask for a retry: they must not wait on Redis.
	var worst time.Duration
	for i := 0; i < 200; i++ {
		d := timed(func() { _ = exec.Do(bg, "dep.Call", func(context.Context) error { return nil }) })
		if d > worst {
			worst = d
		}
	}
	if worst > 100*time.Millisecond {
		t.Errorf("a successful call took %v with Redis hung", worst)
	}
}
