package middleware

import (
	"context"
	"errors"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/internal/tryctx"
	"github.com/recourse-go/recourse/timeline"
)

// FallbackFunc supplies a call's result when the call failed. It gets the
// call's request and its final error (every try, retry and hedge has been
// spent, or the call was refused). It returns a response and a nil error
// to stand in for the failed call, or an error — err itself, or one that
// wraps it — to let the call fail.
type FallbackFunc func(ctx context.Context, req any, err error) (any, error)

// recoverFallbackPanics turns a panic in the fallback into a *PanicError
// (component "fallback") for key, joined to the call's error.
func recoverFallbackPanics(key string) Option {
	return option(func(f *fallback) { f.key, f.recover = key, true })
}

type fallback struct {
	fn      FallbackFunc
	key     string
	recover bool
}

// Fallback returns the decorator that calls fn when the call fails. It
// sits just inside Observe, outside every other decorator, so it sees the
// call's final error. When fn supplies a result, the call returns it with
// a nil error; the timeline still holds every failed try, and one more
// record with reason "fallback" whose Err is the error fn replaced, so
// observers never lose it. When fn returns an error, the call returns that
// error with the failed call's own response (fn's response is dropped),
// and the record has the fallback's verdict. A failed call's response that
// fn's result replaces is released (endpoint.Discarder). A nil fn makes Fallback
// return next unchanged. A successful call never calls fn.
func Fallback(fn FallbackFunc, opts ...Option) endpoint.Middleware {
	f := &fallback{fn: fn}
	applyOptions(f, opts)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		if fn == nil {
			return next
		}
		return func(ctx context.Context, req any) (any, error) {
			resp, err := next(ctx, req)
			if err == nil {
				return resp, nil
			}
			fresp, ferr := f.run(ctx, req, err)
			if ferr != nil {
				return resp, ferr // the call fails as it would have, with fn's error
			}
			tryctx.Discard(resp) // replaced: released (endpoint.Discarder)
			return fresp, nil
		}
	}
}

// run calls the fallback for a call that failed with err and records it.
func (f *fallback) run(ctx context.Context, req any, err error) (resp any, ferr error) {
	rec := record.FromContext(ctx)
	start := rec.Now()
	attempt := 0
	if rec != nil {
		attempt = rec.LastAttempt()
	}
	defer func() {
		r := timeline.AttemptRecord{Attempt: attempt, StartTime: start, EndTime: rec.Now(), Reason: timeline.ReasonFallback}
		if ferr == nil {
			r.Outcome, r.Err = timeline.OutcomeSuccess, unwrapVerdict(err)
		} else {
			r.Outcome, r.Err = VerdictOf(ctx, nil, ferr).Outcome, ferr
		}
		rec.Attempt(ctx, r)
	}()
	if f.recover {
		defer func() {
			if p := recover(); p != nil {
				resp, ferr = nil, errors.Join(err, NewPanicError("fallback", f.key, p))
			}
		}()
	}
	return f.fn(ctx, req, err)
}
