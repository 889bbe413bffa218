package fleet

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse/middleware"
)

// BenchmarkRetryDecision measures what deciding one retry costs, in the
// same run: a local ratio budget, the fleet budget asking Redis for every
// decision (MaxLease(1)), and the fleet budget with its default leases,
// against a redis-server on loopback. It reports the median and 99th
// percentile of one decision's latency, and the share of decisions the
// fallback made (a round trip that outlasted DecisionTimeout).
func BenchmarkRetryDecision(b *testing.B) {
	srv := startRedis(b)
	cases := []struct {
		name   string
		budget middleware.Budget
	}{
		{"local-ratio", middleware.NewRatioBudget(middleware.RatioFloor(1e9))},
		{"fleet-roundtrip", newBudget(b, srv.client(), "bench-rt", Floor(1e9), MaxLease(1), DecisionTimeout(defaultTimeout))},
		{"fleet-leased", newBudget(b, srv.client(), "bench-lease", Floor(1e9), DecisionTimeout(defaultTimeout))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			c.budget.Take(ctx, retry) // connection up, script loaded
			lat := make([]time.Duration, 0, b.N)
			fallbacks := 0
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				d := c.budget.Take(ctx, retry)
				lat = append(lat, time.Since(start))
				if strings.HasPrefix(d.Reason, reasonFallback) {
					fallbacks++
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(fallbacks)/float64(b.N), "fallback/op")
		})
	}
}

// BenchmarkFirstTry measures counting a first try (never waiting on Redis).
func BenchmarkFirstTry(b *testing.B) {
	srv := startRedis(b)
	bud := newBudget(b, srv.client(), "bench-first")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bud.Take(ctx, first)
		}
	})
}
