// Package tryctx holds the context plumbing the decorators and transports
// of recourse share beneath package endpoint: the context that carries a
// try's AttemptInfo (generic here, so that the breaker can update it in
// place), the marks that forbid duplicating a call, and the release of
// dropped responses. Package endpoint exposes what users need of it
// (WithAttempt, AttemptFromContext, AtMostOnce, WithoutHedging); it
// imports nothing of the project.
package tryctx

import "context"

type attemptKey struct{}

// Attempt carries an attempt's info with one allocation (a plain
// context.WithValue would box the struct separately).
type Attempt[T any] struct {
	context.Context
	Info T
}

// Value returns the Attempt itself for its key and defers to the parent
// context otherwise.
func (c *Attempt[T]) Value(key any) any {
	if key == (attemptKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// WithAttempt returns a context carrying info.
func WithAttempt[T any](ctx context.Context, info T) context.Context {
	return &Attempt[T]{Context: ctx, Info: info}
}

// AttemptOf returns the innermost Attempt in ctx, if any. Its Info may be
// updated in place only on the attempt's own goroutine, before any hedge
// copies it.
func AttemptOf[T any](ctx context.Context) (*Attempt[T], bool) {
	c, ok := ctx.Value(attemptKey{}).(*Attempt[T])
	return c, ok
}

type duplicationKey struct{}

// duplication says which duplicates of a call a context forbids.
type duplication uint8

const (
	noHedges   duplication = 1 << iota // sequential retries only
	noRetries                          // nothing after the first try
	atMostOnce = noHedges | noRetries
)

func forbid(ctx context.Context, d duplication) context.Context {
	cur, _ := ctx.Value(duplicationKey{}).(duplication)
	return context.WithValue(ctx, duplicationKey{}, cur|d)
}

func forbidden(ctx context.Context) duplication {
	d, _ := ctx.Value(duplicationKey{}).(duplication)
	return d
}

// AtMostOnce returns a context under which the call must not be
// duplicated: no retry, no hedge.
func AtMostOnce(ctx context.Context) context.Context { return forbid(ctx, atMostOnce) }

// IsAtMostOnce reports whether ctx forbids any further try of the call.
func IsAtMostOnce(ctx context.Context) bool { return forbidden(ctx)&noRetries != 0 }

// WithoutHedging returns a context under which tries may be retried one
// after another but never run concurrently.
func WithoutHedging(ctx context.Context) context.Context { return forbid(ctx, noHedges) }

// HedgingAllowed reports whether ctx allows concurrent tries of the call.
func HedgingAllowed(ctx context.Context) bool { return forbidden(ctx)&noHedges == 0 }

// Discard releases resp if it holds resources (it implements
// endpoint.Discarder); any other value is ignored.
func Discard(resp any) {
	if d, ok := resp.(interface{ Discard() }); ok {
		d.Discard()
	}
}
