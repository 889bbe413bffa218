package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// The decorators are plain go-kit middlewares: stack the ones you need.
func ExampleRetry() {
	calls := 0
	flaky := func(ctx context.Context, req any) (any, error) {
		calls++
		if calls < 3 {
			return nil, errors.New("connection reset")
		}
		return "pong", nil
	}
	ep := endpoint.Chain(
		middleware.Observe("demo.Ping"),
		middleware.Retry(middleware.MaxAttempts(5),
			middleware.WithBackoff(middleware.BackoffConfig{Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2})),
		middleware.Timeout(time.Second),
		middleware.Classify(nil),
	)(flaky)

	ctx, capture := timeline.Record(context.Background())
	resp, err := ep(ctx, nil)
	fmt.Println(resp, err)
	for _, a := range capture.Timeline().Attempts {
		fmt.Println(a.Attempt, a.Outcome, a.Reason)
	}
	// Output:
	// pong <nil>
	// 1 retryable retryable
	// 2 retryable retryable
	// 3 success success
}

func ExampleNewTokenBucketBudget() {
	// No tokens: a failing call gets its first try and nothing more.
	budget := middleware.NewTokenBucketBudget(0, 0)
	calls := 0
	ep := endpoint.Chain(
		middleware.Retry(middleware.MaxAttempts(3)),
		middleware.BudgetGate(budget),
		middleware.Classify(nil),
	)(func(context.Context, any) (any, error) { calls++; return nil, errors.New("down") })
	_, err := ep(context.Background(), nil)
	fmt.Println(calls, err)
	// Output: 1 down
}
