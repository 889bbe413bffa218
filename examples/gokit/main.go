// Command gokit shows recourse inside a go-kit client: a go-kit HTTP
// client endpoint (kit/transport/http) wrapped with exec.Middleware(key),
// and a hand-built stack composed from recourse's individual decorators
// with endpoint.Chain. Both call an embedded flaky server on loopback and
// log their timelines through zerolog.
//
//	go run ./examples/gokit
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	kitendpoint "github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

type priceRequest struct{ SKU string }

type priceResponse struct {
	SKU   string  `json:"sku"`
	Price float64 `json:"price"`
}

func main() {
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/price", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(priceResponse{SKU: r.URL.Query().Get("sku"), Price: 9.99})
	})
	base, stop := demo.Start(mux)
	defer stop()
	target, _ := url.Parse(base + "/price")

	// A plain go-kit HTTP client endpoint.
	kitClient := httptransport.NewClient(http.MethodGet, target,
		func(_ context.Context, r *http.Request, request any) error {
			q := r.URL.Query()
			q.Set("sku", request.(priceRequest).SKU)
			r.URL.RawQuery = q.Encode()
			return nil
		},
		func(_ context.Context, r *http.Response) (any, error) {
			switch {
			case r.StatusCode >= 500:
				return nil, fmt.Errorf("pricing: %s", r.Status) // retryable
			case r.StatusCode >= 400:
				return nil, recourse.Permanent(fmt.Errorf("pricing: %s", r.Status))
			}
			var resp priceResponse
			err := json.NewDecoder(r.Body).Decode(&resp)
			return resp, err
		},
	).Endpoint()

	log := demo.Logger()
	obs := timeline.NewZerologObserver(log)

	// 1. The executor's compiled chain for a key, as go-kit middleware.
	exec := recourse.NewExecutor(recourse.WithObserver(obs),
		recourse.WithPolicy("pricing.Get", policy.MaxAttempts(3), policy.Backoff(10*time.Millisecond, 50*time.Millisecond, 2),
			policy.TimeoutPerAttempt(time.Second)))
	getPrice := kitendpoint.Chain(exec.Middleware("pricing.Get"))(kitClient)
	resp, err := getPrice(context.Background(), priceRequest{SKU: "widget"})
	fmt.Printf("== executor middleware: %+v, err=%v\n\n", resp, err)

	// 2. A stack composed by hand from the individual decorators.
	custom := kitendpoint.Chain(
		middleware.Observe("pricing.GetCustom", middleware.WithObserver(obs)),
		middleware.OverallTimeout(2*time.Second),
		middleware.Retry(middleware.MaxAttempts(4), middleware.RetryKey("pricing.GetCustom", ""),
			middleware.WithBackoff(middleware.BackoffConfig{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2, Jitter: middleware.JitterEqual})),
		middleware.Breaker(middleware.NewCircuitBreaker(middleware.BreakerConfig{Name: "pricing.GetCustom", ConsecutiveFailures: 5, Cooldown: time.Second})),
		middleware.Timeout(500*time.Millisecond),
		middleware.Classify(nil),
	)(kitClient)
	resp, err = custom(context.Background(), priceRequest{SKU: "gadget"})
	fmt.Printf("== hand-built chain: %+v, err=%v\n", resp, err)
}
