package recourse_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func ExampleExecutor_DoWithTimeline() {
	exec := recourse.NewExecutor(
		recourse.WithPolicy("inventory.Get",
			policy.MaxAttempts(3),
			policy.Backoff(time.Millisecond, 5*time.Millisecond, 2)),
	)
	calls := 0
	tl, err := exec.DoWithTimeline(context.Background(), "inventory.Get", func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("503 service unavailable")
		}
		return nil
	})
	fmt.Println("err:", err)
	for _, a := range tl.Attempts {
		fmt.Println(a.Attempt, a.Outcome, a.Reason, a.Err)
	}
	// Output:
	// err: <nil>
	// 1 retryable retryable 503 service unavailable
	// 2 retryable retryable 503 service unavailable
	// 3 success success <nil>
}

func ExamplePermanent() {
	exec := recourse.NewExecutor(recourse.WithPolicy("payments.Charge", policy.MaxAttempts(5)))
	declined := errors.New("card declined")
	calls := 0
	err := exec.Do(context.Background(), "payments.Charge", func(ctx context.Context) error {
		calls++
		return recourse.Permanent(declined)
	})
	fmt.Println(calls, errors.Is(err, declined))
	// Output: 1 true
}

func ExampleWithMissingPolicyMode() {
	exec := recourse.NewExecutor(recourse.WithMissingPolicyMode(recourse.FailureDeny))
	err := exec.Do(context.Background(), "unconfigured.Call", func(ctx context.Context) error { return nil })
	fmt.Println(errors.Is(err, recourse.ErrNoPolicy))
	// Output: true
}

func ExampleDoValue() {
	// Keys name a dependency and an operation: stable, low-cardinality.
	n, err := recourse.DoValue(context.Background(), "inventory.Count", func(ctx context.Context) (int, error) {
		return 42, nil
	})
	fmt.Println(n, err)
	// Output: 42 <nil>
}

func Example_timelineRecord() {
	ctx, capture := timeline.Record(context.Background())
	_ = recourse.Do(ctx, "inventory.Ping", func(ctx context.Context) error { return nil })
	tl := capture.Timeline()
	fmt.Println(tl.Key, len(tl.Attempts), tl.Attempts[0].Outcome)
	// Output: inventory.Ping 1 success
}
