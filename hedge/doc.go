// Package hedge cuts tail latency by racing a slow try against another.
//
// The decorator from New runs an attempt's primary try and arms one timer.
// If the try is still running when its Trigger's delay passes, a hedged try
// of the same request starts beside it (up to MaxHedges of them, one per
// delay). The first success wins; every other try is cancelled and awaited
// before the call returns, so no goroutine outlives the call. A retryable
// failure of one try does not end the race while others run; a
// non-retryable one does. No goroutine and no extra context exist until a
// trigger fires; no hedge is spawned once the caller's context has ended,
// nor after a try the server pushed back (a verdict with RetryAfter).
//
// A panic on a hedge's goroutine never kills the process: the other tries
// are cancelled and awaited, then the panic is raised again on the
// caller's goroutine — or, in a chain the executor compiled (unless
// recourse.WithoutPanicRecovery), the attempt ends with a
// *middleware.PanicError. A panicking primary try also cancels and awaits
// its hedges before its panic goes on.
//
// When the call is recorded (its timeline recorder in the context), the
// records of a race's tries are held until the race is over and then
// passed on with their final reasons — "hedge_won" for the winner,
// "hedge_lost" for the tries whose results came after the race was
// decided — so that observers are told what the timeline keeps.
//
// Two triggers come with the package: FixedDelay, and a LatencyTrigger that
// hedges when a try outlives a quantile (say p99) of the key's recent
// latencies, tracked by a lock-free LatencyTracker.
//
// In the compiled chain the decorator sits inside the breaker and outside
// the budget: each hedge must take a budget token (a refused hedge simply
// does not run), and no hedges are spawned while the key's breaker is
// half-open or open. Hedge only idempotent operations.
package hedge
