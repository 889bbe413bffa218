package policyopt_test

import (
	"testing"

	"github.com/recourse-go/recourse/clock"
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

func TestNewLimiterIsSet(t *testing.T) {
	f, ok := policyopt.NewLimiter.(func(policy.BulkheadPolicy, clock.Clock) middleware.Limiter)
	if !ok {
		t.Fatal("policyopt.NewLimiter is not set to the function its comment names")
	}
	if l := f(policy.BulkheadPolicy{}, nil); l != nil {
		t.Fatalf("no bulkhead gave %T, want nil", l)
	}
	if _, ok := f(policy.BulkheadPolicy{MaxConcurrent: 3}, nil).(*middleware.Bulkhead); !ok {
		t.Fatal("max_concurrent 3 did not give a *middleware.Bulkhead")
	}
	if _, ok := f(policy.BulkheadPolicy{Adaptive: true}, nil).(*middleware.AdaptiveLimit); !ok {
		t.Fatal("adaptive did not give a *middleware.AdaptiveLimit")
	}
}
