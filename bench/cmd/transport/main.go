// Command transport compares recourse's HTTP and gRPC client integrations
// with plain net/http and grpc-go and with the libraries a user would
// pick instead, in rounds of paired measurements (see package
// bench/transport), and prints the table.
//
//	cd bench && go run ./cmd/transport -rounds 15 -md results/transport.md > results/transport.txt
//
// -run selects scenarios by a regular expression on their names
// ("http/loopback", "grpc/.*/list2000").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"time"

	"github.com/recourse-go/recourse/bench/transport"
)

func main() {
	rounds := flag.Int("rounds", 15, "rounds of paired measurements")
	per := flag.Duration("per", 20*time.Millisecond, "time each client runs per round")
	run := flag.String("run", "", "only scenarios whose name matches this regular expression")
	md := flag.String("md", "", "also write the table as markdown to this file")
	flag.Parse()
	if err := mainErr(*rounds, *per, *run, *md); err != nil {
		fmt.Fprintln(os.Stderr, "transport:", err)
		os.Exit(1)
	}
}

func mainErr(rounds int, per time.Duration, run, md string) error {
	re, err := regexp.Compile(run)
	if err != nil {
		return fmt.Errorf("-run %q: %w", run, err)
	}
	var scenarios []*transport.Scenario
	for _, mem := range []bool{false, true} {
		scenarios = append(scenarios, transport.HTTPScenarios(mem)...)
		g, err := transport.GRPCScenarios(mem)
		if err != nil {
			return err
		}
		scenarios = append(scenarios, g...)
	}
	fmt.Printf("# %s/%s, GOMAXPROCS=%d, %s; %d rounds, %v per client per round\n",
		runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.Version(), rounds, per)
	fmt.Println("# overhead: median of the paired same-round differences with the floor (first row of each scenario), [quartiles]")
	fmt.Println("# allocs Δ: heap allocations per call over the floor's; new conns/call and handlers left: per call, as the server counts them")
	var rows []transport.Row
	for _, sc := range scenarios {
		if !re.MatchString(sc.Name) {
			sc.Close()
			continue
		}
		res, err := transport.Run(context.Background(), sc, transport.Config{Rounds: rounds, PerCase: per})
		sc.Close()
		if err != nil {
			return err
		}
		r := transport.Rows(res)
		transport.WriteText(os.Stdout, r)
		fmt.Println()
		rows = append(rows, r...)
	}
	if md == "" {
		return nil
	}
	f, err := os.Create(md)
	if err != nil {
		return err
	}
	transport.WriteMarkdown(f, rows)
	return f.Close()
}
