// Package recourse runs calls to dependencies under policies: bounded
// retries with backoff, hedging, circuit breaking and retry budgets, with a
// timeline that explains every call.
//
// A call site names a stable, low-cardinality key and hands over the
// operation:
//
//	err := recourse.Do(ctx, "payments.Charge", func(ctx context.Context) error {
//		return charge(ctx, order)
//	})
//
// An Executor resolves the key's policy through its provider, compiles it
// once into a chain of go-kit decorators (see package policy for the
// order), caches the chain per key and runs every call for the key through
// it. The package-level functions use a default executor built by
// NewDefaultExecutor; build your own with NewExecutor to choose policies,
// observers, budgets and classifiers.
//
// Ask for a call's timeline with DoWithTimeline, or with timeline.Record
// around any call. Use Executor.Middleware to put a key's chain in front
// of any go-kit endpoint.
package recourse
