package middleware

import "github.com/recourse-go/recourse/internal/mwopt"

// The options only recourse's own packages use are reached through
// internal/mwopt, so they take no room in this package's API.
func init() {
	mwopt.RecoverBudgetPanics = recoverBudgetPanics
	mwopt.RecoverClassifierPanics = recoverClassifierPanics
	mwopt.RecoverFallbackPanics = recoverFallbackPanics
	mwopt.BudgetName = budgetName
	mwopt.StartForced = startForced
	mwopt.WithPolicyID = withPolicyID
	mwopt.WithAttributes = withAttributes
}
