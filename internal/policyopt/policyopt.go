// Package policyopt gives the executor (the root package) what package
// policy computes for it but users do not need. Package policy sets each
// variable in its init to the function its comment names; the executor
// type-asserts it (the idiom of gRPC's internal package). It imports
// nothing, so policy can import it without a cycle.
package policyopt

// BreakerConfig is a func(key string, cp policy.CircuitPolicy)
// middleware.BreakerConfig: the breaker configuration the compiler builds
// for key's circuit policy (without a state-change callback), so that the
// executor's shared breakers are configured exactly as the compiler's.
var BreakerConfig any

// NewLimiter is a func(bh policy.BulkheadPolicy, clk clock.Clock)
// middleware.Limiter: the bulkhead a bulkhead policy describes (nil when
// it enables none), so that the executor's shared limiters are made
// exactly as the compiler's.
var NewLimiter any
