package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/lazyctx"
	"github.com/recourse-go/recourse/timeline"
)

// ErrAttemptTimeout is the cause of a per-attempt deadline. A try cut short
// by it is retryable with reason "timeout"; errors.Is finds it in the error
// of such a try.
var ErrAttemptTimeout = errors.New("recourse: attempt timed out")

// Timeout returns a decorator that gives each call of next its own deadline
// d: the per-attempt timeout. The deadline context arms a timer only if
// the try waits on it (see internal/lazyctx), so a try that never looks at
// its context costs one small allocation. Its context's cause is ErrAttemptTimeout, so a
// try it cuts is told apart from the caller's own cancellation or deadline
// (those stay as they are). A non-positive d returns next unchanged.
//
// A successful response that implements endpoint.CancelAdopter (a streamed
// HTTP body) takes over the deadline's cancel function, so returning does
// not cut off a body the caller has yet to read; so does a failed try's
// response that may go back to the caller (a final failed HTTP status),
// which calls it when it is closed or, if dropped, discarded.
//
// Only this decorator's own deadline is a timeout of the try. When calls
// nest — a recourse call made inside another call's try — the outer try's
// deadline is, for the inner call, the caller's deadline: its try aborts,
// is not retried and is not counted by its breaker.
//
// A try cut by the deadline returns an error wrapping both ErrAttemptTimeout
// and the try's own error, with Classify inside or without it.
func Timeout(d time.Duration) endpoint.Middleware {
	if d <= 0 {
		return identity
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			actx := lazyctx.WithTimeout(ctx, d, ErrAttemptTimeout)
			resp, err := next(actx, req)
			if err == nil {
				actx.HandTo(resp) // a streamed body keeps its deadline
				return resp, nil
			}
			if actx.ExpiredOwn() {
				err = ownTimeout(err)
			}
			actx.HandFailedTo(resp) // a final failed HTTP status too
			return resp, err
		}
	}
}

// OverallTimeout returns a decorator that bounds the whole call — every
// try and every backoff sleep — by one deadline d. When it passes, the
// call stops with reason "timeout" and the error wraps
// context.DeadlineExceeded. A non-positive d returns next unchanged.
func OverallTimeout(d time.Duration) endpoint.Middleware {
	if d <= 0 {
		return identity
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			cctx := lazyctx.WithTimeout(ctx, d, nil)
			resp, err := next(cctx, req)
			if err == nil {
				cctx.HandTo(resp)
				return resp, nil
			}
			cctx.HandFailedTo(resp)
			return resp, err
		}
	}
}

// ownTimeout makes err say that the try was cut by its own per-attempt
// deadline. Classify directly inside Timeout has said so already; one that
// saw the deadline through other decorators took it for the caller's end
// (abort), and its verdict is corrected here; without Classify, err is
// wrapped so that errors.Is finds ErrAttemptTimeout.
func ownTimeout(err error) error {
	ce, classified := find[*ClassifiedError](err)
	switch {
	case !classified:
		if !errors.Is(err, ErrAttemptTimeout) {
			err = fmt.Errorf("%w: %w", ErrAttemptTimeout, err)
		}
		return err
	case ce.Verdict.Outcome == timeline.OutcomeAbort:
		inner := ce.Err
		if !errors.Is(inner, ErrAttemptTimeout) {
			inner = fmt.Errorf("%w: %w", ErrAttemptTimeout, inner)
		}
		return &ClassifiedError{Err: inner, Verdict: Verdict{Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonTimeout}}
	}
	return err
}

func identity(next endpoint.Endpoint) endpoint.Endpoint { return next }
