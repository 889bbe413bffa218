package mwopt_test

import (
	"testing"

	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/internal/mwopt"
	"github.com/recourse-go/recourse/middleware"
)

// Every variable holds the function its comment names once middleware is
// linked in, so the type assertions of the compiler and executor hold.
func TestVariablesAreSet(t *testing.T) {
	checks := map[string]bool{}
	_, checks["RecoverBudgetPanics"] = mwopt.RecoverBudgetPanics.(func(string) middleware.Option)
	_, checks["RecoverClassifierPanics"] = mwopt.RecoverClassifierPanics.(func(string) middleware.Option)
	_, checks["RecoverFallbackPanics"] = mwopt.RecoverFallbackPanics.(func(string) middleware.Option)
	_, checks["RecoverHedgePanics"] = mwopt.RecoverHedgePanics.(func(string) hedge.Option)
	_, checks["StartForced"] = mwopt.StartForced.(func(*middleware.CircuitBreaker))
	_, checks["BudgetName"] = mwopt.BudgetName.(func(string) middleware.Option)
	_, checks["WithPolicyID"] = mwopt.WithPolicyID.(func(string) middleware.Option)
	_, checks["WithAttributes"] = mwopt.WithAttributes.(func(map[string]string) middleware.Option)
	for name, ok := range checks {
		if !ok {
			t.Errorf("mwopt.%s is not set to the function its comment names", name)
		}
	}
}
