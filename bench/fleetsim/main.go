// Command fleetsim measures recourse's fleet budget and breaker signal
// with real processes: one redis-server, one dependency (an HTTP server in
// this process, 100 % down for a stretch) and N replica processes (this
// same binary, run with -replica) calling it. It writes a table and an SVG
// plot:
//
//	cd bench/fleetsim && go run . -out ../results
//
// Runs: (a) naive retries, (b) a ratio budget per process, (c) the fleet
// budget — tries per call reaching the dependency during the outage;
// breakers with and without the fleet signal — when each replica's breaker
// opened; and the fleet budget with Redis killed mid-outage and restarted.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-replica" {
		if err := replicaMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "replica:", err)
			os.Exit(1)
		}
		return
	}
	out := flag.String("out", "../results", "directory for fleet.txt and fleet.svg")
	n := flag.Int("n", 10, "replica processes")
	scale := flag.Float64("scale", 1, "multiply every duration (0.3 for a quick look)")
	flag.Parse()
	if err := run(*out, *n, *scale); err != nil {
		log.Fatal(err)
	}
}

// scenario is one run of the fleet.
type scenario struct {
	name    string
	mode    string // naive, local, fleet
	breaker bool
	signal  bool
	healthy time.Duration // before the outage
	outage  time.Duration
	after   time.Duration
	// killAt and restartAt, from the start of the outage, kill Redis and
	// start it again (empty); zero for none.
	killAt, restartAt time.Duration
}

// result is one scenario's measurements.
type result struct {
	sc       scenario
	firsts   []int // per bucket, at the dependency
	retries  []int
	replicas []replicaReport
}

// rates returns replica i's calls per second: 2, 4, …, uneven on purpose.
func rate(i int) float64 { return float64(2 * (i + 1)) }

func run(out string, n int, scale float64) error {
	sd := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale).Round(bucket) }
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rs, err := newRedis()
	if err != nil {
		return err
	}
	defer func() { rs.kill() }()
	dep := &dependency{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: dep}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/"

	scenarios := []scenario{
		{name: "naive retries", mode: "naive", healthy: sd(3 * time.Second), outage: sd(15 * time.Second), after: sd(2 * time.Second)},
		{name: "ratio budget per process", mode: "local", healthy: sd(3 * time.Second), outage: sd(15 * time.Second), after: sd(2 * time.Second)},
		{name: "fleet budget (Redis)", mode: "fleet", healthy: sd(3 * time.Second), outage: sd(15 * time.Second), after: sd(2 * time.Second)},
		{name: "breakers, no signal", mode: "fleet", breaker: true, healthy: sd(2 * time.Second), outage: sd(6 * time.Second), after: sd(time.Second)},
		{name: "breakers + fleet signal", mode: "fleet", breaker: true, signal: true, healthy: sd(2 * time.Second), outage: sd(6 * time.Second), after: sd(time.Second)},
		{name: "fleet budget, Redis killed mid-outage", mode: "fleet", healthy: sd(3 * time.Second), outage: sd(20 * time.Second), after: sd(2 * time.Second),
			killAt: sd(6 * time.Second), restartAt: sd(13 * time.Second)},
	}
	var results []result
	for _, sc := range scenarios {
		fmt.Fprintf(os.Stderr, "== %s\n", sc.name)
		if err := rs.flush(); err != nil {
			return err
		}
		r, err := runScenario(self, sc, n, url, rs, dep)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		results = append(results, r)
	}
	var txt bytes.Buffer
	report(&txt, results, n)
	os.Stdout.Write(txt.Bytes())
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "fleet.txt"), txt.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "fleet.svg"), plot(results), 0o644)
}

// runScenario starts n replica processes, runs the outage (and the Redis
// kill), and collects the dependency's counts and the replicas' reports.
func runScenario(self string, sc scenario, n int, url string, rs *redisServer, dep *dependency) (result, error) {
	total := sc.healthy + sc.outage + sc.after
	start := time.Now().Add(time.Second) // time for the processes to start
	dep.reset(start, start.Add(sc.healthy), start.Add(sc.healthy+sc.outage), int(total/bucket)+4)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		reports []replicaReport
		errs    []error
	)
	for i := range n {
		args := []string{"-replica", "-id", fmt.Sprint(i), "-rate", fmt.Sprint(rate(i)), "-dep", url,
			"-redis", rs.addr(), "-mode", sc.mode, fmt.Sprintf("-breaker=%v", sc.breaker), fmt.Sprintf("-signal=%v", sc.signal),
			"-start", fmt.Sprint(start.UnixNano()), "-outage-at", sc.healthy.String(), "-dur", total.String()}
		cmd := exec.Command(self, args...)
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return result{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			var rep replicaReport
			if err == nil {
				sc := bufio.NewScanner(&stdout)
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					err = json.Unmarshal(sc.Bytes(), &rep)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("replica %d: %w", i, err))
				return
			}
			reports = append(reports, rep)
		}()
	}
	if sc.killAt > 0 {
		time.Sleep(time.Until(start.Add(sc.healthy + sc.killAt)))
		rs.kill()
		fmt.Fprintln(os.Stderr, "   redis killed")
		time.Sleep(time.Until(start.Add(sc.healthy + sc.restartAt)))
		if err := rs.start(); err != nil {
			return result{}, err
		}
		fmt.Fprintln(os.Stderr, "   redis restarted (empty)")
	}
	wg.Wait()
	if len(errs) > 0 {
		return result{}, errs[0]
	}
	slices.SortFunc(reports, func(a, b replicaReport) int { return a.ID - b.ID })
	firsts, retries := dep.counts()
	return result{sc: sc, firsts: firsts, retries: retries, replicas: reports}, nil
}

// span returns the bucket range [from, to) of [a, b) after the start.
func span(a, b time.Duration) (int, int) { return int(a / bucket), int(b / bucket) }

// triesPerCall returns tries per first try reaching the dependency in
// buckets [from, to), and the counts.
func (r result) triesPerCall(from, to int) (float64, int, int) {
	var f, x int
	for i := from; i < to && i < len(r.firsts); i++ {
		f += r.firsts[i]
		x += r.retries[i]
	}
	if f == 0 {
		return 0, 0, x
	}
	return float64(f+x) / float64(f), f, x
}

// decisions sums the replicas' decisions by source in buckets [from, to).
func (r result) decisions(src string, from, to int) int {
	n := 0
	for _, rep := range r.replicas {
		d := rep.Decisions[src]
		for i := from; i < to && i < len(d); i++ {
			n += d[i]
		}
	}
	return n
}

// report writes the tables.
func report(w *bytes.Buffer, results []result, n int) {
	var sum float64
	for i := range n {
		sum += rate(i)
	}
	fmt.Fprintf(w, "recourse fleet simulation — %s, %d CPUs, %s\n\n", runtime.Version(), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "%d replica processes calling at 2, 4, …, %d calls/s (%.0f calls/s in all) + one redis-server on loopback;\n", n, int(rate(n-1)), sum)
	fmt.Fprintf(w, "MaxAttempts(3), backoff 20–100ms; budgets Ratio(%.2f), Floor(%.0f/s), Window(%v) — the same numbers per process and fleet-wide.\n\n", budgetRatio, budgetFloor, budgetWindow)

	fmt.Fprintf(w, "Tries per call reaching the dependency while it is 100%% down (%v)\n\n", results[0].sc.outage)
	fmt.Fprintln(w, "| retry budget | first tries | retries | tries/call |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, r := range results[:3] {
		tpc, f, x := r.triesPerCall(span(r.sc.healthy, r.sc.healthy+r.sc.outage))
		fmt.Fprintf(w, "| %s | %d | %d | %.3f |\n", r.sc.name, f, x, tpc)
	}
	fb := results[2]
	fleetShare := fb.decisions("fleet", 0, len(fb.firsts))
	fallShare := fb.decisions("fallback", 0, len(fb.firsts))
	fmt.Fprintf(w, "\nfleet budget: %d retry decisions by Redis or a lease, %d by the fallback (Redis healthy).\n\n", fleetShare, fallShare)

	fmt.Fprintf(w, "Time from the start of the outage until each replica's breaker opened (5 failures in a row, cooldown 2s; quorum 3 replicas or 50%%, poll 250ms)\n\n")
	fmt.Fprintln(w, "| breakers | first replica | median replica | every replica | per replica (2 … 20 calls/s) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, r := range results[3:5] {
		var opens []time.Duration
		var per []string
		never := 0
		for _, rep := range r.replicas {
			if rep.FirstOpen < 0 {
				never++
				per = append(per, "never")
				continue
			}
			opens = append(opens, rep.FirstOpen)
			per = append(per, ms(rep.FirstOpen))
		}
		slices.Sort(opens)
		all := "never (" + fmt.Sprint(never) + " stayed closed)"
		if never == 0 && len(opens) > 0 {
			all = ms(opens[len(opens)-1])
		}
		first, med := "—", "—"
		if len(opens) > 0 {
			first, med = ms(opens[0]), ms(opens[len(opens)/2])
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.sc.name, first, med, all, strings.Join(per, " "))
	}

	k := results[5]
	o := k.sc.healthy
	fmt.Fprintf(w, "\nRedis killed %v into a %v outage, restarted empty %v later (fleet budget)\n\n", k.sc.killAt, k.sc.outage, k.sc.restartAt-k.sc.killAt)
	fmt.Fprintln(w, "| phase | tries/call | decisions by Redis/lease | by fallback | calls started | calls > 1s |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	phases := []struct {
		name string
		a, b time.Duration
	}{
		{"outage, Redis up", o, o + k.sc.killAt},
		{"outage, Redis down", o + k.sc.killAt, o + k.sc.restartAt},
		{"outage, Redis back", o + k.sc.restartAt, o + k.sc.outage},
	}
	var longest time.Duration
	for _, rep := range k.replicas {
		longest = max(longest, rep.MaxCall)
	}
	for _, p := range phases {
		from, to := span(p.a, p.b)
		tpc, _, _ := k.triesPerCall(from, to)
		calls, slow := 0, 0
		for _, rep := range k.replicas {
			for i := from; i < to && i < len(rep.CallsPer); i++ {
				calls += rep.CallsPer[i]
				slow += rep.SlowPer[i]
			}
		}
		fmt.Fprintf(w, "| %s | %.3f | %d | %d | %d | %d |\n", p.name, tpc, k.decisions("fleet", from, to), k.decisions("fallback", from, to), calls, slow)
	}
	fmt.Fprintf(w, "\nlongest call in the Redis-kill run: %s (per-attempt timeout 1s, decision timeout 20ms)\n", ms(longest))
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
