package fleet_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/fleet"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// Every replica builds the same named budget on the same Redis and
// registers it with its executor; the policy names it. (Not run: it needs
// a Redis.)
func ExampleNewBudget() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	retries := fleet.NewBudget(rdb, "payments",
		fleet.Ratio(0.1), // retries + hedges ≤ 10 % of first tries, fleet-wide…
		fleet.Floor(1),   // …plus 1 per second for the whole fleet
		fleet.Window(10*time.Second))
	defer retries.Close()

	exec := recourse.NewExecutor(
		recourse.WithBudget("payments-retries", retries),
		recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3), policy.WithBudget("payments-retries")),
	)
	err := exec.Do(context.Background(), "payments.Charge", func(ctx context.Context) error {
		return nil // call the payment service
	})
	if err != nil {
		log.Print(err)
	}
}

// The breaker signal observes the executor's breakers (so a breaker that
// opens is published at once) and runs beside it, holding this replica's
// breaker open while a quorum of the fleet reports theirs open. (Not run:
// it needs a Redis.)
func ExampleNewBreakerSignal() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	sig := fleet.NewBreakerSignal(rdb,
		fleet.Keys("payments.Charge"),
		fleet.Quorum(3, 0.5), // 3 replicas or half of those reporting
	)
	exec := recourse.NewExecutor(
		recourse.WithObserver(timeline.Multi(sig /* , your own observer */)),
		recourse.WithPolicy("payments.Charge", policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true})),
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = sig.Run(ctx, exec) }() // returns when ctx is done

	_ = exec.Do(ctx, "payments.Charge", func(ctx context.Context) error { return nil })
}
