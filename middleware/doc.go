// Package middleware holds recourse's decorators, one concern per file.
//
// Each decorator is a plain go-kit endpoint.Middleware that works alone on
// any endpoint. The policy compiler stacks them in this order, outermost
// first:
//
//	Observe         opens the timeline, reports events, closes it
//	Fallback        supplies a failed call's result
//	OverallTimeout  one deadline for the whole call, sleeps included
//	Retry           the attempt loop: verdict, backoff sleep, pushback
//	Breaker         fail fast while the key's circuit is open
//	(hedge)         concurrent tries against the tail (package hedge)
//	Limit           bulkhead: bounded tries in flight (fixed or adaptive)
//	BudgetGate      retries and hedges must take a token
//	Timeout         each try's own deadline
//	Classify        (response, error) -> verdict, one record per try
//
// Decorators communicate only through the context (endpoint.AttemptInfo,
// the call's timeline recorder) and through the error: Classify wraps each failed
// try's error in a *ClassifiedError carrying its Verdict, and outer
// decorators read it with VerdictOf. The error a caller finally receives is
// the operation's own error, unwrapped from the verdict.
//
// Start with the decorator a concern needs and chain them with
// endpoint.Chain in the order above; most users let the executor of the
// root package compile the chain from a policy instead. Constructors take
// values of one Option type; each option names the constructor that reads
// it, and WithClock (a clock.Fake in tests) is read by every one that
// keeps time:
//
//	chain := endpoint.Chain(
//		middleware.Observe("inventory.Get", middleware.WithClock(clk)),
//		middleware.Retry(middleware.MaxAttempts(3), middleware.WithClock(clk)),
//		middleware.Classify(nil),
//	)
package middleware
