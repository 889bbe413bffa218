// Command sim runs two simulations of recourse against an in-process
// dependency, in real (scaled-down) time, and prints their tables and
// writes an SVG plot:
//
//   - Tail at Scale: a dependency answering in ~1ms, except 1% of calls
//     that take 50–100ms. p50/p99/p99.9 and extra load for no hedging,
//     fixed-delay hedging, and p95/p99-triggered hedging.
//
//   - Outage amplification: a dependency that is 100% down for a while and
//     then heals. Tries per call, tries that reached the dead dependency,
//     and recovery time, for naive retries, a token bucket budget, a ratio
//     budget and a circuit breaker.
//
//     cd bench && go run ./cmd/sim -out results
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

func main() {
	out := flag.String("out", "results", "directory for sim.txt and sim.svg")
	calls := flag.Int("calls", 4000, "calls per tail-at-scale run")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	var report strings.Builder
	w := io.MultiWriter(os.Stdout, &report)
	fmt.Fprintf(w, "recourse simulations — %s, %d CPUs, %s\n\n", runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))

	tails := tailAtScale(w, *calls)
	outages := outage(w)

	if err := os.WriteFile(filepath.Join(*out, "sim.txt"), []byte(report.String()), 0o644); err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "sim.svg"), []byte(plot(tails, outages)), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(*out, "sim.txt"), filepath.Join(*out, "sim.svg"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sim:", err)
	os.Exit(1)
}

// wait sleeps d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---- Tail at Scale ----------------------------------------------------

type tailResult struct {
	name           string
	p50, p99, p999 time.Duration
	extra          float64 // extra tries per call
}

// slowTail answers in 0.8–1.2ms, except 1% of tries that take 50–100ms.
func slowTail(rng *lockedRand, tries *atomic.Int64) func(context.Context) error {
	return func(ctx context.Context) error {
		tries.Add(1)
		d := time.Duration(800+rng.IntN(400)) * time.Microsecond
		if rng.IntN(100) == 0 {
			d = time.Duration(50+rng.IntN(50)) * time.Millisecond
		}
		return wait(ctx, d)
	}
}

type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

func tailAtScale(w io.Writer, calls int) []tailResult {
	hedge := func(h policy.HedgePolicy) policy.Option { h.Enabled, h.MaxHedges = true, 1; return policy.WithHedge(h) }
	configs := []struct {
		name string
		opt  policy.Option
	}{
		{"no hedging", policy.WithHedge(policy.HedgePolicy{})},
		{"fixed 10ms", hedge(policy.HedgePolicy{Delay: 10 * time.Millisecond})},
		{"p95 trigger", hedge(policy.HedgePolicy{Quantile: 0.95, Delay: 10 * time.Millisecond})},
		{"p99 trigger", hedge(policy.HedgePolicy{Quantile: 0.99, Delay: 10 * time.Millisecond})},
	}
	fmt.Fprintf(w, "Tail at Scale: %d calls per row, 8 concurrent callers; dependency ~1ms, 1%% of tries 50–100ms\n\n", calls)
	fmt.Fprintf(w, "| config | p50 | p99 | p99.9 | extra tries |\n| --- | --- | --- | --- | --- |\n")
	var results []tailResult
	for _, c := range configs {
		exec := recourse.NewExecutor(recourse.WithPolicy("dep.Read", policy.MaxAttempts(1), c.opt))
		rng := &lockedRand{r: rand.New(rand.NewPCG(7, 11))}
		var tries atomic.Int64
		op := slowTail(rng, &tries)
		// Warm the latency tracker (and the Go runtime) before measuring.
		runCalls(exec, op, 400, 8)
		tries.Store(0)
		lat := runCalls(exec, op, calls, 8)
		r := tailResult{name: c.name, p50: pct(lat, 0.5), p99: pct(lat, 0.99), p999: pct(lat, 0.999),
			extra: float64(tries.Load()-int64(calls)) / float64(calls)}
		results = append(results, r)
		fmt.Fprintf(w, "| %s | %v | %v | %v | %.1f%% |\n", r.name, round(r.p50), round(r.p99), round(r.p999), 100*r.extra)
	}
	base, best := results[0], results[len(results)-1]
	fmt.Fprintf(w, "\np99 trigger: p99.9 cut %.1f× for %.1f%% extra tries (target ≥ 10× for ≤ 5%%)\n\n",
		float64(base.p999)/float64(best.p999), 100*best.extra)
	return results
}

func runCalls(exec *recourse.Executor, op func(context.Context) error, calls, workers int) []time.Duration {
	lat := make([]time.Duration, calls)
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= calls {
					return
				}
				start := time.Now()
				_ = exec.Do(context.Background(), "dep.Read", op)
				lat[n] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func round(d time.Duration) time.Duration {
	if d > time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// ---- Outage amplification ---------------------------------------------

const (
	outageRun    = 3 * time.Second
	outageStart  = 500 * time.Millisecond
	outageEnd    = 2000 * time.Millisecond
	callInterval = 2 * time.Millisecond // per caller
	callers      = 4
	bucket       = 100 * time.Millisecond
)

type outageResult struct {
	name         string
	calls        int
	triesPerCall float64 // over the whole run
	outageCalls  int
	outageTries  int     // tries that reached the dead dependency
	outageAmp    float64 // tries per call during the outage
	recovery     time.Duration
	perBucket    []int // tries reaching the dependency per bucket
}

var errDown = errors.New("dependency down")

func outage(w io.Writer) []outageResult {
	breaker := policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 5, Cooldown: 100 * time.Millisecond, HalfOpenProbes: 1}
	configs := []struct {
		name    string
		budget  middleware.Budget
		breaker bool
	}{
		{"naive retry", nil, false},
		{"token bucket 20, +10/s", middleware.NewTokenBucketBudget(20, 10), false},
		{"ratio 10% (+1/s)", middleware.NewRatioBudget(), false},
		{"throttle 10, 0.1 (gRPC)", middleware.NewThrottleBudget(10, 0.1), false},
		{"breaker 5 fails, 100ms", nil, true},
	}
	fmt.Fprintf(w, "Outage amplification: %d callers, one call each per %v, for %v; dependency 100%% down from %v to %v; MaxAttempts(3), 1ms backoff\n\n",
		callers, callInterval, outageRun, outageStart, outageEnd)
	fmt.Fprintf(w, "| strategy | calls | tries/call (all) | tries/call (outage) | tries reaching the dead dependency | recovery after heal |\n| --- | --- | --- | --- | --- | --- |\n")
	var results []outageResult
	for _, c := range configs {
		opts := []policy.Option{policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1), policy.Jitter(policy.JitterNone)}
		execOpts := []recourse.Option{}
		if c.budget != nil {
			execOpts = append(execOpts, recourse.WithBudget("b", c.budget))
			opts = append(opts, policy.WithBudget("b"))
		}
		if c.breaker {
			opts = append(opts, policy.WithCircuitBreaker(breaker))
		}
		exec := recourse.NewExecutor(append(execOpts, recourse.WithPolicy("dep.Write", opts...))...)
		r := runOutage(exec, c.name)
		results = append(results, r)
		fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %d | %v |\n", r.name, r.calls, r.triesPerCall, r.outageAmp, r.outageTries, r.recovery.Round(time.Millisecond))
	}
	cycles := float64(outageEnd-outageStart) / float64(breaker.Cooldown)
	br := results[len(results)-1]
	fmt.Fprintf(w, "\nbreaker: %d tries reached the dead dependency in %.0f cooldowns (%.1f per cooldown; configured probes: %d, plus the %d failures that open it)\n",
		br.outageTries, cycles, float64(br.outageTries)/cycles, breaker.HalfOpenProbes, breaker.ConsecutiveFailures)
	for _, r := range results[1:4] {
		fmt.Fprintf(w, "%s: %.2f tries per call during the outage (target ≤ 1.1)\n", r.name, r.outageAmp)
	}
	return results
}

func runOutage(exec *recourse.Executor, name string) outageResult {
	start := time.Now()
	var (
		mu          sync.Mutex
		perBucket   = make([]int, int(outageRun/bucket)+1)
		calls       int
		tries       int
		outageCalls int
		outageTries int
		firstOK     time.Duration = -1
	)
	down := func(at time.Duration) bool { return at >= outageStart && at < outageEnd }
	op := func(ctx context.Context) error {
		at := time.Since(start)
		mu.Lock()
		tries++
		perBucket[int(at/bucket)]++
		if down(at) {
			outageTries++
		}
		mu.Unlock()
		if down(at) {
			return errDown
		}
		return nil
	}
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(callInterval)
			defer tick.Stop()
			for range tick.C {
				at := time.Since(start)
				if at >= outageRun {
					return
				}
				err := exec.Do(context.Background(), "dep.Write", op)
				mu.Lock()
				calls++
				if down(at) {
					outageCalls++
				}
				if err == nil && at >= outageEnd && firstOK < 0 {
					firstOK = at - outageEnd
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return outageResult{name: name, calls: calls, triesPerCall: float64(tries) / float64(calls),
		outageCalls: outageCalls, outageTries: outageTries, outageAmp: float64(outageTries) / float64(max(outageCalls, 1)),
		recovery: max(firstOK, 0), perBucket: perBucket}
}
