// Command breaker shows a circuit breaker protecting a dependency that
// goes down and comes back. The loopback server fails every request for
// its first 600ms, then recovers. The breaker opens after 3 consecutive
// failures, fails fast while open, lets one probe through after each
// 200ms cooldown and closes once a probe succeeds. Breaker transitions and
// calls are logged through zerolog.
//
//	go run ./examples/breaker
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func main() {
	healthyAt := time.Now().Add(600 * time.Millisecond)
	var reached atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/stock", func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if time.Now().Before(healthyAt) {
			http.Error(w, "database down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "12")
	})
	base, stop := demo.Start(mux)
	defer stop()

	log := demo.Logger()
	exec := recourse.NewExecutor(
		recourse.WithObserver(callsOnly{timeline.NewZerologObserver(log)}),
		recourse.WithPolicy("warehouse.Stock",
			policy.MaxAttempts(2),
			policy.Backoff(5*time.Millisecond, 5*time.Millisecond, 1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 3,
				Cooldown: 200 * time.Millisecond, HalfOpenProbes: 1})),
	)

	var ok, fastFail, failed int
	for i := 0; i < 24; i++ {
		_, err := recourse.DoValueWith(context.Background(), exec, "warehouse.Stock", func(ctx context.Context) (string, error) {
			return demo.Get(ctx, base+"/stock")
		})
		switch {
		case err == nil:
			ok++
		case errors.Is(err, middleware.ErrCircuitOpen):
			fastFail++
		default:
			failed++
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("\n24 calls: %d ok, %d failed against the dependency, %d failed fast (circuit open); the dependency saw %d requests\n",
		ok, failed, fastFail, reached.Load())
}

// callsOnly logs calls and breaker transitions, not each attempt.
type callsOnly struct{ timeline.Observer }

func (callsOnly) OnAttempt(context.Context, string, timeline.AttemptRecord) {}
