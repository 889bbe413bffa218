package endpoint

import (
	"context"

	"github.com/recourse-go/recourse/internal/tryctx"
)

// Responses that hold resources — an HTTP response with an open body —
// need two things from the decorators around them, which the interfaces
// below let any response type ask for without the decorators knowing the
// protocol.

// Discarder is implemented by responses that must be released when the
// chain drops them: the failed attempt a retry loop moves past, the try
// that lost a hedge race. Discard drains and closes what the response holds.
type Discarder interface {
	Discard()
}

// CancelAdopter is implemented by responses whose content is read after
// the endpoint call returns (a streamed HTTP body). A decorator that made
// the context the response was produced under — a per-attempt or overall
// timeout, a hedge's try context — hands over its cancel function instead
// of calling it on return, so the deadline still bounds the read but
// returning does not cut it off. The response calls every adopted function
// once, when it is closed or discarded. AdoptCancel reports whether it took
// ownership; if not, the decorator cancels as usual.
type CancelAdopter interface {
	AdoptCancel(cancel context.CancelFunc) bool
}

// Statuser is implemented by responses and errors that carry a protocol
// status ("503", "UNAVAILABLE"); timelines record it for each try.
type Statuser interface {
	AttemptStatus() string
}

// AtMostOnce returns a context under which the call must not be
// duplicated: the retry loop makes one attempt and no hedge is spawned.
// Transports use it for non-idempotent requests; so can any caller whose
// operation must not run twice.
func AtMostOnce(ctx context.Context) context.Context { return tryctx.AtMostOnce(ctx) }

// WithoutHedging returns a context under which tries of the call may be
// retried one after another but never run concurrently: for calls whose
// tries share state, such as a stream or a reply message.
func WithoutHedging(ctx context.Context) context.Context { return tryctx.WithoutHedging(ctx) }
