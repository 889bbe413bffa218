package recourse_test

import (
	"errors"
	"fmt"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

// New reports every configuration mistake at once, each naming the key,
// the field and the name or value.
func ExampleNew() {
	_, err := recourse.New(
		recourse.WithBudget("retries", middleware.NewTokenBucketBudget(100, 10)),
		recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3), policy.WithBudget("retires")),
		recourse.WithPolicy("inventory.Get", policy.MaxAttempts(-1)),
	)
	fmt.Println(err)
	fmt.Println(errors.Is(err, recourse.ErrNoBudget), errors.Is(err, policy.ErrInvalid))

	exec, err := recourse.New(
		recourse.WithBudget("retries", middleware.NewTokenBucketBudget(100, 10)),
		recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3), policy.WithBudget("retries")),
	)
	fmt.Println(exec != nil, err)
	// Output:
	// policy "inventory.Get": retry.max_attempts = -1: must not be negative
	// policy "payments.Charge": budget = "retires": no such budget (register it with WithBudget, declare it in the policy file's budgets, or use "unlimited")
	// true true
	// true <nil>
}
