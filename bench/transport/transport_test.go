package transport

import (
	"context"
	"strings"
	"testing"
	"time"
)

func allScenarios(t testing.TB) []*Scenario {
	t.Helper()
	var all []*Scenario
	for _, mem := range []bool{false, true} {
		all = append(all, HTTPScenarios(mem)...)
		g, err := GRPCScenarios(mem)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, g...)
	}
	return all
}

// TestEveryCaseWorks runs one short round of every scenario: every client
// gets the right reply, and the report has a row per client.
func TestEveryCaseWorks(t *testing.T) {
	for _, sc := range allScenarios(t) {
		t.Run(sc.Name, func(t *testing.T) {
			defer sc.Close()
			res, err := Run(context.Background(), sc, Config{Rounds: 2, PerCase: time.Millisecond, MinCalls: 2})
			if err != nil {
				t.Fatal(err)
			}
			rows := Rows(res)
			if len(rows) != len(sc.Cases) {
				t.Fatalf("%d rows for %d cases", len(rows), len(sc.Cases))
			}
			var b strings.Builder
			WriteText(&b, rows)
			WriteMarkdown(&b, rows)
			if !strings.Contains(b.String(), "recourse") {
				t.Fatalf("no recourse row:\n%s", b.String())
			}
		})
	}
}

// TestRecourseRetryReusesTheConnection: over loopback, recourse's retry
// drains the 503 and sends the retry on the same connection.
func TestRecourseRetryReusesTheConnection(t *testing.T) {
	sc := HTTPScenarios(false)[1]
	defer sc.Close()
	var rc Case
	for _, c := range sc.Cases {
		if c.Client == "recourse" {
			rc = c
		}
	}
	ctx := context.Background()
	if err := rc.Call(ctx); err != nil { // opens the connection
		t.Fatal(err)
	}
	before := sc.Server.Conns()
	for i := 0; i < 20; i++ {
		if err := rc.Call(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := sc.Server.Conns() - before; n != 0 {
		t.Fatalf("%d new connections in 20 retried calls; want 0", n)
	}
}

func TestQuartiles(t *testing.T) {
	q1, m, q3 := Quartiles([]float64{5, 1, 4, 2, 3})
	if q1 != 2 || m != 3 || q3 != 4 {
		t.Fatalf("got %v %v %v", q1, m, q3)
	}
}

// BenchmarkTransport runs every case of every scenario b.N times; the
// paired comparison is cmd/transport.
func BenchmarkTransport(b *testing.B) {
	ctx := context.Background()
	for _, sc := range allScenarios(b) {
		for _, c := range sc.Cases {
			b.Run(sc.Name+"/"+c.Client, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if err := c.Call(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		sc.Close()
	}
}
