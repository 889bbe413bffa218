// Package policy says how calls for a key may be retried, hedged, broken
// and bounded, and compiles that into a chain of decorators.
//
// A call site names a stable, low-cardinality Key ("payments.Charge"). A
// Provider resolves the key to a Policy; Normalize clamps every field into
// safe bounds and reports what it changed; the Compiler turns the policy
// into an endpoint.Middleware whose decorators run in a fixed order,
// outermost first:
//
//	observe → overall timeout → retry → breaker → hedge → budget → per-attempt timeout → classify
//
// A section the policy does not enable is not compiled at all, so a call
// pays only for what its policy asks for.
//
// Policies are built with functional options over safe defaults:
//
//	p := policy.New("payments.Charge",
//		policy.HTTPDefaults(),
//		policy.MaxAttempts(2),
//		policy.TimeoutPerAttempt(800*time.Millisecond),
//	)
package policy
