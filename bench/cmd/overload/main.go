// Command overload simulates a dependency driven past its capacity and
// compares three ways of admitting work to it: no limit, a fixed
// bulkhead (middleware.Bulkhead) and an adaptive concurrency limit
// (middleware.AdaptiveLimit). It prints a table and writes an SVG plot:
//
//	cd bench && go run ./cmd/overload -out results
//
// The simulation runs in virtual time, deterministically (a seeded random
// source, one goroutine), and asks the real limiters: every arrival calls
// Acquire on the limiter under test at its virtual instant, every try
// calls its release when it ends, and the adaptive limit reads the
// virtual clock. Nothing waits for room (max wait 0), so no goroutine or
// timer is needed.
//
// The dependency is C parallel servers behind one FIFO queue; a try's
// service time is base × (0.5 + 0.5 × Exp(1)) (mean base, a tail to about
// 3 × base). It loses half its servers for the middle third of the run.
// Clients send a Poisson stream at 1.5 × the healthy capacity and give up
// on a try after a deadline; the server does not notice and finishes the
// work (so work for a client that left is wasted). Goodput counts tries
// answered within their deadline, against the capacity of the moment.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/middleware"
)

// The scenario.
const (
	base     = 10 * time.Millisecond // mean service time
	servers  = 20                    // healthy; capacity 2000/s
	degraded = 10                    // servers in the middle third
	runFor   = 30 * time.Second
	overload = 1.5 // offered load / healthy capacity
	deadline = 250 * time.Millisecond
	bucket   = 500 * time.Millisecond
)

func main() {
	out := flag.String("out", "results", "directory for overload.txt and overload.svg")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	var report strings.Builder
	w := io.MultiWriter(os.Stdout, &report)
	fmt.Fprintf(w, "recourse overload simulation — %s, virtual time, seed fixed\n\n", runtime.Version())
	fmt.Fprintf(w, "Dependency: %d servers (%d from %v to %v), FIFO queue, mean service %v; Poisson arrivals at %.1f× the healthy capacity (%d/s); client deadline %v; %v.\n\n",
		servers, degraded, runFor/3, 2*runFor/3, base, overload, int(servers*time.Second/base), deadline, runFor)

	unloaded := simulate("unloaded (0.3× capacity, no limit)", nil, 0.3/overload)
	fmt.Fprintf(w, "Unloaded: p50 %v, p99 %v\n\n", ms(unloaded.p50), ms(unloaded.p99))

	configs := []struct {
		name string
		l    func(clock.Clock) limiter
	}{
		{"no limit", nil},
		{"bulkhead 64", func(clock.Clock) limiter { return middleware.NewBulkhead(64, 0) }},
		{"bulkhead 20", func(clock.Clock) limiter { return middleware.NewBulkhead(20, 0) }},
		{"adaptive", func(c clock.Clock) limiter { return middleware.NewAdaptiveLimit(middleware.WithClock(c)) }},
	}
	fmt.Fprintf(w, "| admission | p50 | p99 | p99 ÷ unloaded p99 | goodput (healthy / degraded / all, %% of capacity) | shed | timed out |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- |\n")
	var results []result
	for _, c := range configs {
		r := simulate(c.name, c.l, 1)
		results = append(results, r)
		fmt.Fprintf(w, "| %s | %v | %v | %.1f× | %.0f%% / %.0f%% / %.0f%% | %.1f%% | %.1f%% |\n", r.name, ms(r.p50), ms(r.p99),
			float64(r.p99)/float64(unloaded.p99), 100*r.goodHealthy, 100*r.goodDegraded, 100*r.goodAll, 100*r.shed, 100*r.timedOut)
	}
	ad := results[len(results)-1]
	fmt.Fprintf(w, "\nadaptive: p50 %.2f× and p99 %.2f× the unloaded figures, goodput %.0f%% of capacity (goal: near unloaded, ≥ 90%%); its limit ranged %d–%d (healthy) and %d–%d (degraded)\n",
		float64(ad.p50)/float64(unloaded.p50), float64(ad.p99)/float64(unloaded.p99), 100*ad.goodAll,
		ad.limitRange[0][0], ad.limitRange[0][1], ad.limitRange[1][0], ad.limitRange[1][1])
	fmt.Fprintf(w, "Latencies are of the tries admitted, as their clients saw them (a try cut off by its deadline counts as %v); shed tries are refused at once.\n", deadline)

	if err := os.WriteFile(filepath.Join(*out, "overload.txt"), []byte(report.String()), 0o644); err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "overload.svg"), []byte(plot(results, unloaded)), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(*out, "overload.txt"), filepath.Join(*out, "overload.svg"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "overload:", err)
	os.Exit(1)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// limiter is what the simulation needs of a middleware.Limiter.
type limiter = middleware.Limiter

// vclock is the simulation's virtual clock: Now is whatever the event
// loop set. Nothing in the simulation waits, so its timers never fire.
type vclock struct{ now time.Time }

// Now returns the virtual time.
func (c *vclock) Now() time.Time { return c.now }

// NewTimer returns a timer that never fires.
func (c *vclock) NewTimer(time.Duration) clock.Timer { return idleTimer{} }

// AfterFunc returns a timer that never fires.
func (c *vclock) AfterFunc(time.Duration, func()) clock.Timer { return idleTimer{} }

// set moves the clock to d after the start of the run.
func (c *vclock) set(d time.Duration) { c.now = time.Unix(0, 0).Add(d) }

// idleTimer is a timer that never fires.
type idleTimer struct{}

func (idleTimer) C() <-chan time.Time      { return nil }
func (idleTimer) Stop() bool               { return false }
func (idleTimer) Reset(time.Duration) bool { return false }
