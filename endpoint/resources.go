package endpoint

import "context"

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

// Discard releases resp if it holds resources; any other value is ignored.
func Discard(resp any) {
	if d, ok := resp.(Discarder); ok {
		d.Discard()
	}
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
// duplicated: the retry loop makes one attempt and no hedge is spawned.
// Transports use it for non-idempotent requests.
func AtMostOnce(ctx context.Context) context.Context { return forbid(ctx, atMostOnce) }

// IsAtMostOnce reports whether ctx forbids any further try of the call.
func IsAtMostOnce(ctx context.Context) bool { return forbidden(ctx)&noRetries != 0 }

// WithoutHedging returns a context under which tries of the call may be
// retried one after another but never run concurrently: for calls whose
// tries share state, such as a stream or a reply message.
func WithoutHedging(ctx context.Context) context.Context { return forbid(ctx, noHedges) }

// HedgingAllowed reports whether ctx allows concurrent tries of the call.
func HedgingAllowed(ctx context.Context) bool { return forbidden(ctx)&noHedges == 0 }
