package hedge_test

import (
	"context"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
)

func ExampleNew() {
	// The primary try stalls; a hedge started after 10ms answers at once.
	ep := hedge.New(hedge.FixedDelay(10 * time.Millisecond))(func(ctx context.Context, _ any) (any, error) {
		if info, _ := endpoint.AttemptFromContext(ctx); info.IsHedge() {
			return "from the hedge", nil
		}
		<-ctx.Done() // cancelled once the hedge wins
		return nil, ctx.Err()
	})
	ctx := endpoint.WithAttempt(context.Background(), endpoint.AttemptInfo{Key: "demo.Read", Attempt: 1})
	resp, err := ep(ctx, nil)
	fmt.Println(resp, err)
	// Output: from the hedge <nil>
}
