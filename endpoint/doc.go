// Package endpoint is the vocabulary every recourse decorator speaks.
//
// An Endpoint is go-kit's func(ctx, request) (response, error); a Middleware
// wraps one Endpoint in another. recourse compiles a policy into a chain of
// Middlewares — observe, fallback, overall timeout, retry, breaker, hedge,
// bulkhead, budget, per-attempt timeout, classify — and each of them is an ordinary go-kit
// middleware that can also be used alone.
//
// The types here are aliases of go-kit's, so recourse middlewares and go-kit
// middlewares mix freely in one endpoint.Chain.
//
// Decorators that sit at different depths of the chain talk only through the
// context and the error. AttemptInfo, set by the retry loop and refined by the
// breaker and hedge decorators, tells inner decorators and the operation
// itself which try is running.
//
// This package imports nothing else from recourse but the leaf internal
// package that implements its context plumbing.
package endpoint
