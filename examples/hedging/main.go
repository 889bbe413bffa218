// Command hedging shows hedged requests cutting a dependency's slow tail.
// It starts a loopback server that answers in ~2ms, except one request in
// ten which stalls for 300ms, then runs the same 60 reads twice: without
// hedging, and with a hedge at the key's tracked p90 (20ms until warm).
// Hedged calls are logged through zerolog; a latency summary follows.
//
//	go run ./examples/hedging
package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

const calls = 60

func main() {
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/price", func(w http.ResponseWriter, r *http.Request) {
		d := 2 * time.Millisecond
		if n.Add(1)%10 == 0 {
			d = 300 * time.Millisecond // the tail
		}
		if demo.Sleep(r.Context(), d) {
			fmt.Fprint(w, "9.99")
		}
	})
	base, stop := demo.Start(mux)
	defer stop()

	log := demo.Logger()
	exec := recourse.NewExecutor(
		recourse.WithObserver(hedgedOnly{timeline.NewZerologObserver(log)}),
		recourse.WithHedgeTrigger("p90", func(t *hedge.LatencyTracker) hedge.Trigger {
			return hedge.NewLatencyTrigger(t, 0.90, hedge.MinSamples(10), hedge.Fallback(20*time.Millisecond))
		}),
		recourse.WithPolicy("pricing.Plain", policy.MaxAttempts(1)),
		recourse.WithPolicy("pricing.Hedged", policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Trigger: "p90", MaxHedges: 1})),
	)
	if c, err := exec.Explain(context.Background(), "pricing.Hedged"); err == nil {
		fmt.Printf("pricing.Hedged compiles to:\n%s\n", c.Describe())
	}

	for _, key := range []string{"pricing.Plain", "pricing.Hedged"} {
		var lat []time.Duration
		hedges := 0
		for i := 0; i < calls; i++ {
			start := time.Now()
			_, tl, err := recourse.DoValueTimelineWith(context.Background(), exec, key, func(ctx context.Context) (string, error) {
				return demo.Get(ctx, base+"/price")
			})
			if err != nil {
				fmt.Println("error:", err)
			}
			lat = append(lat, time.Since(start))
			hedges += len(tl.Attempts) - 1
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Printf("%-15s p50=%-10v p95=%-10v max=%-10v extra tries=%d/%d\n", key,
			lat[len(lat)/2].Round(time.Millisecond/10), lat[len(lat)*95/100].Round(time.Millisecond/10),
			lat[len(lat)-1].Round(time.Millisecond/10), hedges, calls)
	}
}

// hedgedOnly logs only the calls that spawned a hedge, to keep output short.
type hedgedOnly struct{ timeline.Observer }

func (h hedgedOnly) OnAttempt(context.Context, string, timeline.AttemptRecord) {}

func (h hedgedOnly) OnFinish(ctx context.Context, tl *timeline.Timeline) {
	if len(tl.Attempts) > 1 {
		h.Observer.OnFinish(ctx, tl)
	}
}
