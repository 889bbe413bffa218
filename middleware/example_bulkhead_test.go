package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
)

// A bulkhead bounds how many tries run at once. Here two are admitted;
// a third, finding no room within its 10ms wait, is refused without
// calling the endpoint, and the retry loop does not send it again.
func ExampleNewBulkhead() {
	b := middleware.NewBulkhead(2, 10*time.Millisecond)
	started, release := make(chan struct{}), make(chan struct{})
	slow := func(ctx context.Context, req any) (any, error) {
		started <- struct{}{}
		<-release // busy until the third call has been refused
		return "done", nil
	}
	ep := endpoint.Chain(middleware.Retry(middleware.MaxAttempts(3)), middleware.Limit(b), middleware.Classify(nil))(slow)

	results := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { _, err := ep(context.Background(), nil); results <- err }()
	}
	<-started
	<-started // both admitted and running
	_, err := ep(context.Background(), nil)
	close(release)
	fmt.Println("third call refused:", errors.Is(err, middleware.ErrBulkheadFull))
	fmt.Println(<-results, <-results)
	// Output:
	// third call refused: true
	// <nil> <nil>
}

// An adaptive limit needs no capacity figure: it measures the latency of
// the tries it admits and settles where they start to queue. Serve it
// with Limit per try, or hand it to the transports' server middleware.
func ExampleNewAdaptiveLimit() {
	l := middleware.NewAdaptiveLimit(
		middleware.AdaptiveInitialLimit(10),
		middleware.AdaptiveMaxLimit(200),
		middleware.AdaptiveMaxWait(5*time.Millisecond),
	)
	ep := middleware.Limit(l)(func(ctx context.Context, req any) (any, error) { return "ok", nil })
	resp, err := ep(context.Background(), nil)
	fmt.Println(resp, err, l.Limit())
	// Output: ok <nil> 10
}
