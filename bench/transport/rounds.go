package transport

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Case is one client under test in a Scenario.
type Case struct {
	// Client names the client ("net/http", "recourse", "go-retryablehttp").
	Client string
	// Call makes one call and checks its reply; an error fails the run.
	Call func(ctx context.Context) error
}

// Server is what a scenario's server counts.
type Server interface {
	// Conns returns the connections accepted so far.
	Conns() int64
	// Active returns the handlers running now.
	Active() int64
}

// Scenario is one workload and the clients measured on it. Cases[0] is
// the floor every other case's overhead is measured against.
type Scenario struct {
	// Name says what is measured ("http/loopback/retry").
	Name string
	// Cases are the clients, the floor first.
	Cases []Case
	// Server is the server the cases call.
	Server Server
	// Close releases the clients and the server.
	Close func()
}

// Sample is one case's figures in one round, per call.
type Sample struct {
	NS     float64 // wall time
	Allocs float64 // heap allocations, the server's included
	Conns  float64 // new connections accepted by the server
	Left   float64 // server handlers still running when the call returned
}

// Result is one case's samples over all rounds.
type Result struct {
	Scenario string
	Client   string
	Samples  []Sample
	// Over are the paired differences NS - floor's NS, one per round.
	Over []float64
	// AllocsOver are the paired differences of Allocs.
	AllocsOver []float64
}

// Config says how long Run measures.
type Config struct {
	// Rounds is the number of rounds (default 15).
	Rounds int
	// PerCase is the time each case runs in a round (default 20ms); the
	// number of calls is set from the floor's time per call, at least
	// MinCalls.
	PerCase time.Duration
	// MinCalls bounds the calls per case per round from below (default 5).
	MinCalls int
}

func (c Config) withDefaults() Config {
	if c.Rounds <= 0 {
		c.Rounds = 15
	}
	if c.PerCase <= 0 {
		c.PerCase = 20 * time.Millisecond
	}
	if c.MinCalls <= 0 {
		c.MinCalls = 5
	}
	return c
}

// Run measures every case of s in rounds (see the package documentation)
// and returns their results, the floor's first.
func Run(ctx context.Context, s *Scenario, cfg Config) ([]Result, error) {
	cfg = cfg.withDefaults()
	// Warm up: connections open, pools and caches filled; and time the floor.
	for _, c := range s.Cases {
		for i := 0; i < 3; i++ {
			if err := c.Call(ctx); err != nil {
				return nil, fmt.Errorf("%s/%s: warm-up: %w", s.Name, c.Client, err)
			}
		}
	}
	start := time.Now()
	for i := 0; i < 5; i++ {
		if err := s.Cases[0].Call(ctx); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", s.Name, s.Cases[0].Client, err)
		}
	}
	per := time.Since(start) / 5
	n := cfg.MinCalls
	if per > 0 && int(cfg.PerCase/per) > n {
		n = int(cfg.PerCase / per)
	}
	results := make([]Result, len(s.Cases))
	for i, c := range s.Cases {
		results[i] = Result{Scenario: s.Name, Client: c.Client}
	}
	for r := 0; r < cfg.Rounds; r++ {
		for k := range s.Cases {
			i := (k + r) % len(s.Cases) // each case in turn goes first
			sample, err := measure(ctx, s, s.Cases[i], n)
			if err != nil {
				return nil, err
			}
			results[i].Samples = append(results[i].Samples, sample)
		}
	}
	for i := range results {
		for r, smp := range results[i].Samples {
			floor := results[0].Samples[r]
			results[i].Over = append(results[i].Over, smp.NS-floor.NS)
			results[i].AllocsOver = append(results[i].AllocsOver, smp.Allocs-floor.Allocs)
		}
	}
	return results, nil
}

func measure(ctx context.Context, s *Scenario, c Case, n int) (Sample, error) {
	var m0, m1 runtime.MemStats
	runtime.GC() // no case pays for the garbage of the one before it
	runtime.ReadMemStats(&m0)
	conns := s.Server.Conns()
	var left int64
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := c.Call(ctx); err != nil {
			return Sample{}, fmt.Errorf("%s/%s: %w", s.Name, c.Client, err)
		}
		left += s.Server.Active()
	}
	d := time.Since(start)
	runtime.ReadMemStats(&m1)
	f := float64(n)
	return Sample{
		NS:     float64(d.Nanoseconds()) / f,
		Allocs: float64(m1.Mallocs-m0.Mallocs) / f,
		Conns:  float64(s.Server.Conns()-conns) / f,
		Left:   float64(left) / f,
	}, nil
}

// Quartiles returns the first quartile, the median and the third
// quartile of xs (linear interpolation; NaN when xs is empty).
func Quartiles(xs []float64) (q1, med, q3 float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	at := func(p float64) float64 {
		x := p * float64(len(s)-1)
		lo := int(math.Floor(x))
		hi := int(math.Ceil(x))
		return s[lo] + (s[hi]-s[lo])*(x-float64(lo))
	}
	return at(0.25), at(0.5), at(0.75)
}

func median(xs []float64) float64 { _, m, _ := Quartiles(xs); return m }

// field returns one figure of every sample.
func field(ss []Sample, f func(Sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// slower counts the rounds in which a took longer than b.
func slower(a, b Result) int {
	n := 0
	for r := range a.Samples {
		if r < len(b.Samples) && a.Samples[r].NS > b.Samples[r].NS {
			n++
		}
	}
	return n
}

// dur formats nanoseconds for a table: "812ns", "12.3µs", "50.1ms".
func dur(ns float64) string {
	a := math.Abs(ns)
	switch {
	case a < 1e3:
		return fmt.Sprintf("%.0fns", ns)
	case a < 1e6:
		return fmt.Sprintf("%.1fµs", ns/1e3)
	default:
		return fmt.Sprintf("%.2fms", ns/1e6)
	}
}

// Row is one line of the report: a case's figures over the rounds.
type Row struct {
	Scenario, Client string
	NS               float64 // median time per call
	Over             [3]float64
	AllocsOver       float64 // median paired difference of allocations per call
	Conns, Left      float64 // medians per call
	Floor            bool
	Note             string // how it compares with the other clients
}

// Rows summarises results into report rows. The note of a recourse case
// compares its overhead with the best peer's (the lowest median overhead
// among the cases whose name does not start with "recourse" or equal the
// floor's), and counts the rounds it was slower than that peer.
func Rows(results []Result) []Row {
	var rows []Row
	best := -1
	for i, r := range results[1:] {
		if strings.HasPrefix(r.Client, "recourse") {
			continue
		}
		if best < 0 || median(r.Over) < median(results[best].Over) {
			best = i + 1
		}
	}
	for i, r := range results {
		q1, m, q3 := Quartiles(r.Over)
		row := Row{
			Scenario: r.Scenario, Client: r.Client,
			NS:         median(field(r.Samples, func(s Sample) float64 { return s.NS })),
			Over:       [3]float64{q1, m, q3},
			AllocsOver: median(r.AllocsOver),
			Conns:      median(field(r.Samples, func(s Sample) float64 { return s.Conns })),
			Left:       median(field(r.Samples, func(s Sample) float64 { return s.Left })),
			Floor:      i == 0,
		}
		if strings.HasPrefix(r.Client, "recourse") && best > 0 {
			b := results[best]
			row.Note = fmt.Sprintf("%s over best peer %s (%s); slower in %d/%d rounds",
				ratio(m, median(b.Over)), b.Client, dur(median(b.Over)), slower(r, b), len(r.Samples))
		}
		rows = append(rows, row)
	}
	return rows
}

func ratio(a, b float64) string {
	if b <= 0 {
		return fmt.Sprintf("%+s", dur(a-b))
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// WriteText writes rows as an aligned text table.
func WriteText(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tclient\tper call\toverhead (median [q1, q3])\tallocs Δ\tnew conns/call\thandlers left\tnote")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f\t%.2f\t%.2f\t%s\n",
			r.Scenario, r.Client, dur(r.NS), r.overhead(), r.AllocsOver, r.Conns, r.Left, r.Note)
	}
	tw.Flush()
}

// WriteMarkdown writes rows as a markdown table.
func WriteMarkdown(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| scenario | client | per call | overhead, median [q1, q3] | allocs Δ | new conns/call | handlers left | note |")
	fmt.Fprintln(w, "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %+.1f | %.2f | %.2f | %s |\n",
			r.Scenario, r.Client, dur(r.NS), r.overhead(), r.AllocsOver, r.Conns, r.Left, r.Note)
	}
}

// overhead renders a row's overhead over the floor: "median [q1, q3]", or
// "floor" for the floor itself.
func (r Row) overhead() string {
	if r.Floor {
		return "floor"
	}
	return fmt.Sprintf("%s [%s, %s]", dur(r.Over[1]), dur(r.Over[0]), dur(r.Over[2]))
}
