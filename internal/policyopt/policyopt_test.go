package policyopt_test

import (
	"testing"

	"github.com/recourse-go/recourse/internal/policyopt"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

func TestBreakerConfigIsSet(t *testing.T) {
	f, ok := policyopt.BreakerConfig.(func(string, policy.CircuitPolicy) middleware.BreakerConfig)
	if !ok {
		t.Fatal("policyopt.BreakerConfig is not set to the function its comment names")
	}
	if cfg := f("a.b", policy.CircuitPolicy{ConsecutiveFailures: 7}); cfg.Name != "a.b" || cfg.ConsecutiveFailures != 7 {
		t.Fatalf("config = %+v", cfg)
	}
}
