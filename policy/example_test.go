package policy_test

import (
	"fmt"
	"time"

	"github.com/recourse-go/recourse/policy"
)

func ExampleNew() {
	p := policy.New("payments.Charge",
		policy.HTTPDefaults(),
		policy.MaxAttempts(2),
		policy.TimeoutPerAttempt(800*time.Millisecond),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 5, Cooldown: 10 * time.Second}),
	)
	fmt.Println(p.Key.Namespace, p.Key.Name, p.Retry.MaxAttempts, p.Retry.TimeoutPerAttempt, p.Circuit.Enabled)
	// Output: payments Charge 2 800ms true
}

func ExamplePolicy_Normalize() {
	p := policy.New("inventory.Get", policy.MaxAttempts(50), policy.Backoff(time.Microsecond, time.Hour, 2))
	n, clamped := p.Normalize()
	fmt.Println(n.Retry.MaxAttempts, n.Retry.InitialBackoff, n.Retry.MaxBackoff)
	fmt.Println(clamped)
	// Output:
	// 10 1ms 5m0s
	// [retry.max_attempts retry.initial_backoff retry.max_backoff]
}

func ExampleParse() {
	set, err := policy.Parse([]byte(`
policies:
  payments.Charge:
    retry: {max_attempts: 2, initial_backoff: 50ms, jitter: equal}
  inventory.Get:
    retry: {max_attempts: many}
`), policy.YAML)
	fmt.Println(set == nil)
	fmt.Println(err)
	// Output:
	// true
	// policy "inventory.Get": retry.max_attempts = "many": must be an integer
}

func ExampleCompiler_Compile() {
	var c policy.Compiler
	compiled, err := c.Compile(policy.New("inventory.Get",
		policy.OverallTimeout(2*time.Second), policy.TimeoutPerAttempt(500*time.Millisecond)))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range compiled.Stages {
		fmt.Println(s.Name)
	}
	// Output:
	// observe
	// overall_timeout
	// retry
	// attempt_timeout
	// classify
}
