// Package mwopt gives recourse's own packages — the policy compiler and
// the executor — the options of package middleware that only they need:
// panic recovery tied to the executor's *PanicError reporting, and the
// policy ID, attributes and budget names that go into timelines. Package
// middleware sets each variable in its init to the function its comment
// names; callers type-assert it (the idiom of gRPC's internal package).
// It imports nothing, so middleware can import it without a cycle.
package mwopt

var (
	// RecoverBudgetPanics is a func(key string) middleware.Option:
	// a panicking Budget.Take becomes a *middleware.PanicError naming key.
	RecoverBudgetPanics any
	// RecoverClassifierPanics is a func(key string) middleware.Option:
	// a panicking classifier becomes a *middleware.PanicError naming key.
	RecoverClassifierPanics any
	// RecoverFallbackPanics is a func(key string) middleware.Option:
	// a panicking fallback becomes a *middleware.PanicError naming key.
	RecoverFallbackPanics any
	// RecoverHedgePanics is a func(key string) hedge.Option: a panic on a
	// hedge's goroutine ends the attempt with a *middleware.PanicError
	// (component "hedge") for key instead of being raised again on the
	// caller's goroutine.
	RecoverHedgePanics any
	// StartForced is a func(*middleware.CircuitBreaker): the new breaker
	// starts held open as by ForceOpen, reporting no transition (it
	// replaces one an operator held open).
	StartForced any
	// BudgetName is a func(name string) middleware.Option: the
	// budget's name in observer events.
	BudgetName any
	// WithPolicyID is a func(id string) middleware.Option: the
	// timeline's PolicyID.
	WithPolicyID any
	// WithAttributes is a func(map[string]string) middleware.Option:
	// attributes set on every timeline.
	WithAttributes any
)
