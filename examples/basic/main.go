// Command basic shows recourse's facade against a flaky dependency it
// starts itself: an HTTP server on loopback that fails two requests out of
// three, stalls now and then, and rejects bad input. Each call's timeline
// is logged through zerolog, one line per attempt and one per call.
//
//	go run ./examples/basic
package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func main() {
	var flakyN, slowN atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if flakyN.Add(1)%3 != 0 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "42 in stock")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		if slowN.Add(1) == 1 && !demo.Sleep(r.Context(), 2*time.Second) {
			return
		}
		fmt.Fprint(w, "7 in stock")
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such item", http.StatusBadRequest)
	})
	base, stop := demo.Start(mux)
	defer stop()

	log := demo.Logger()
	exec := recourse.NewExecutor(
		recourse.WithObserver(timeline.NewZerologObserver(log)),
		recourse.WithPolicy("inventory.Get",
			policy.MaxAttempts(3),
			policy.Backoff(20*time.Millisecond, 200*time.Millisecond, 2),
			policy.Jitter(policy.JitterEqual)),
		recourse.WithPolicy("inventory.Slow",
			policy.MaxAttempts(3),
			policy.Backoff(10*time.Millisecond, 50*time.Millisecond, 2),
			policy.TimeoutPerAttempt(100*time.Millisecond),
			policy.OverallTimeout(time.Second)),
		recourse.WithPolicy("inventory.Bad", policy.MaxAttempts(5)),
	)
	recourse.SetDefault(exec)

	ctx := context.Background()
	for _, call := range []struct{ key, path string }{
		{"inventory.Get", "/flaky"},     // 503, 503, then 200
		{"inventory.Slow", "/slow"},     // first try stalls past its 100ms deadline
		{"inventory.Bad", "/bad"},       // 400: not worth retrying
		{"inventory.Unknown", "/flaky"}, // no policy: runs under the fallback
	} {
		body, tl, err := recourse.DoValueWithTimeline(ctx, call.key, func(ctx context.Context) (string, error) {
			return demo.Get(ctx, base+call.path)
		})
		fmt.Printf("\n== %s → %q, err=%v\n%s\n\n", call.key, body, err, tl)
	}
}
