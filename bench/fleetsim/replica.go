package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/fleet"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// The budget every replica uses in the budget modes: the same numbers for
// the per-process ratio budget and the fleet budget.
const (
	budgetRatio  = 0.05
	budgetFloor  = 1.0 // per second: per process for "local", for the fleet for "fleet"
	budgetWindow = 5 * time.Second
	key          = "dep.Get"
	bucket       = 500 * time.Millisecond // replicas' counting period
)

// replicaReport is what a replica prints, as one JSON line, when it ends.
type replicaReport struct {
	ID    int `json:"id"`
	Calls int `json:"calls"`
	// FirstOpen is when the replica's breaker first opened, counted from
	// the start of the outage; negative if it never did.
	FirstOpen time.Duration `json:"first_open"`
	// MaxCall is the longest call.
	MaxCall time.Duration `json:"max_call"`
	// Decisions counts retry/hedge decisions per bucket by source:
	// "fleet" (Redis or a lease), "fallback" (the local fallback) or
	// "local" (a budget of another mode).
	Decisions map[string][]int `json:"decisions"`
	// CallsPer counts calls started per bucket.
	CallsPer []int `json:"calls_per"`
	// SlowPer counts, per bucket, calls that took longer than 1s.
	SlowPer []int `json:"slow_per"`
}

// replicaMain runs one replica: it calls the dependency at its rate for
// the run's length, through an executor whose budget and breaker the mode
// chooses, and prints its report.
func replicaMain(args []string) error {
	fs := flag.NewFlagSet("replica", flag.ContinueOnError)
	id := fs.Int("id", 0, "replica number")
	rate := fs.Float64("rate", 10, "calls per second")
	dep := fs.String("dep", "", "dependency URL")
	addr := fs.String("redis", "", "Redis address")
	mode := fs.String("mode", "fleet", "budget: naive, local or fleet")
	breaker := fs.Bool("breaker", false, "enable the circuit breaker")
	signal := fs.Bool("signal", false, "share breaker state through Redis")
	startNs := fs.Int64("start", 0, "when to start calling (unix ns)")
	outageAt := fs.Duration("outage-at", 0, "when the outage starts, from start")
	dur := fs.Duration("dur", 10*time.Second, "how long to call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Unix(0, *startNs)
	nb := int(*dur/bucket) + 4
	rep := replicaReport{ID: *id, FirstOpen: -1, Decisions: map[string][]int{}, CallsPer: make([]int, nb), SlowPer: make([]int, nb)}
	var mu sync.Mutex
	slot := func(t time.Time) int { return min(max(int(t.Sub(start)/bucket), 0), nb-1) }

	redis.SetLogger(quiet{}) // the Redis-kill run makes go-redis log every failed dial
	rdb := redis.NewClient(&redis.Options{Addr: *addr})
	defer rdb.Close()
	var budget middleware.Budget
	var fb *fleet.Budget
	switch *mode {
	case "naive":
		budget = middleware.UnlimitedBudget{}
	case "local":
		budget = middleware.NewRatioBudget(middleware.Ratio(budgetRatio), middleware.RatioFloor(budgetFloor), middleware.RatioWindow(budgetWindow))
	case "fleet":
		fb = fleet.NewBudget(rdb, "dep", fleet.Ratio(budgetRatio), fleet.Floor(budgetFloor), fleet.Window(budgetWindow))
		defer fb.Close()
		budget = fb
	default:
		return fmt.Errorf("unknown -mode %q", *mode)
	}
	obs := &counter{onDecision: func(ev timeline.BudgetDecision) {
		src := "local"
		switch {
		case strings.HasPrefix(ev.Reason, "fleet_fallback:"):
			src = "fallback"
		case strings.HasPrefix(ev.Reason, "fleet_"):
			src = "fleet"
		}
		mu.Lock()
		if rep.Decisions[src] == nil {
			rep.Decisions[src] = make([]int, nb)
		}
		rep.Decisions[src][slot(time.Now())]++
		mu.Unlock()
	}, onBreaker: func(ev timeline.BreakerStateChange) {
		if ev.To != "open" {
			return
		}
		mu.Lock()
		if rep.FirstOpen < 0 {
			rep.FirstOpen = time.Since(start) - *outageAt
		}
		mu.Unlock()
	}}
	pol := []policy.Option{policy.MaxAttempts(3), policy.Backoff(20*time.Millisecond, 100*time.Millisecond, 2),
		policy.TimeoutPerAttempt(time.Second), policy.WithBudget("retries")}
	if *breaker {
		pol = append(pol, policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 5, Cooldown: 2 * time.Second}))
	}
	var observer timeline.Observer = obs
	var sig *fleet.BreakerSignal
	if *signal {
		sig = fleet.NewBreakerSignal(rdb, fleet.Replica(fmt.Sprint("replica-", *id)), fleet.Keys(key))
		observer = timeline.Multi(obs, sig)
	}
	exec := recourse.NewExecutor(recourse.WithPolicy(key, pol...), recourse.WithBudget("retries", budget), recourse.WithObserver(observer))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	if sig != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = sig.Run(ctx, exec) }()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	op := func(ctx context.Context) error {
		info, _ := endpoint.AttemptFromContext(ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, *dep, nil)
		if err != nil {
			return recourse.Permanent(err)
		}
		if info.Attempt <= 1 && !info.IsHedge() {
			req.Header.Set("X-Try", "first")
		} else {
			req.Header.Set("X-Try", "retry")
		}
		req.Header.Set("X-Replica", fmt.Sprint(*id))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}

	time.Sleep(time.Until(start))
	var calls sync.WaitGroup
	interval := time.Duration(float64(time.Second) / *rate)
	end := start.Add(*dur)
	for next := start; next.Before(end); next = next.Add(interval) {
		time.Sleep(time.Until(next))
		calls.Add(1)
		mu.Lock()
		rep.Calls++
		rep.CallsPer[slot(next)]++
		mu.Unlock()
		go func() {
			defer calls.Done()
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			defer ccancel()
			t0 := time.Now()
			_ = exec.Do(cctx, key, op)
			el := time.Since(t0)
			mu.Lock()
			rep.MaxCall = max(rep.MaxCall, el)
			if el > time.Second {
				rep.SlowPer[slot(t0)]++
			}
			mu.Unlock()
		}()
	}
	calls.Wait()
	cancel()
	wg.Wait()
	client.CloseIdleConnections()
	mu.Lock()
	defer mu.Unlock()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// counter passes budget decisions and breaker transitions to funcs.
type counter struct {
	timeline.BaseObserver
	onDecision func(timeline.BudgetDecision)
	onBreaker  func(timeline.BreakerStateChange)
}

// OnBudgetDecision passes ev to onDecision.
func (c *counter) OnBudgetDecision(_ context.Context, ev timeline.BudgetDecision) { c.onDecision(ev) }

// OnBreakerState passes ev to onBreaker.
func (c *counter) OnBreakerState(ev timeline.BreakerStateChange) { c.onBreaker(ev) }

// quiet drops go-redis's log lines.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
