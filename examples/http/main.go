// Command http shows rhttp, recourse's net/http transport, against an
// embedded flaky server: 503s retried until a 200, Retry-After honoured,
// a 400 tried once, a POST sent once unless it carries an Idempotency-Key,
// and a stalled GET beaten by a hedge. Timelines are logged through
// zerolog, one line per attempt with its HTTP status.
//
//	go run ./examples/http
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

func main() {
	var stock, orders, slow atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stock", func(w http.ResponseWriter, r *http.Request) {
		switch stock.Add(1) {
		case 1:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "come back in a second", http.StatusTooManyRequests)
		default:
			fmt.Fprint(w, "12 in stock")
		}
	})
	mux.HandleFunc("GET /stock/bad", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown SKU", http.StatusBadRequest)
	})
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		if orders.Add(1) <= 2 { // the first POST, and the first try of the second
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "created order %q", body)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		if slow.Add(1) == 1 && !demo.Sleep(r.Context(), 5*time.Second) {
			return // the hedge won; this request was cancelled
		}
		fmt.Fprint(w, "fast answer")
	})
	base, stop := demo.Start(mux)
	defer stop()

	log := demo.Logger()
	exec := recourse.NewExecutor(
		recourse.WithObserver(timeline.NewZerologObserver(log)),
		recourse.WithPolicy("warehouse.Stock", policy.HTTPDefaults(), policy.Backoff(20*time.Millisecond, 200*time.Millisecond, 2)),
		recourse.WithPolicy("orders.Create", policy.HTTPDefaults(), policy.Backoff(20*time.Millisecond, 200*time.Millisecond, 2)),
		recourse.WithPolicy("warehouse.Slow", policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 50 * time.Millisecond})),
	)
	client := func(key string) *http.Client { return rhttp.NewClient(exec, key) }

	show := func(title string, resp *http.Response, err error) {
		if err != nil {
			fmt.Printf("== %s: error %v\n\n", title, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("== %s: %s %q\n\n", title, resp.Status, body)
	}

	resp, err := client("warehouse.Stock").Get(base + "/stock")
	show("GET /stock (503, then 429 with Retry-After: 1, then 200)", resp, err)

	resp, err = client("warehouse.Stock").Get(base + "/stock/bad")
	show("GET /stock/bad (400: not retried)", resp, err)

	resp, err = client("orders.Create").Post(base+"/orders", "text/plain", strings.NewReader("2 widgets"))
	show("POST /orders without Idempotency-Key (sent once)", resp, err)

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/orders", strings.NewReader("3 widgets"))
	req.Header.Set("Idempotency-Key", "order-7")
	resp, err = client("orders.Create").Do(req)
	show("POST /orders with Idempotency-Key (retried, body replayed)", resp, err)

	resp, err = client("warehouse.Slow").Get(base + "/slow")
	show("GET /slow (first request stalls; a hedge after 50ms wins)", resp, err)
}
