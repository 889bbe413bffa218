package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/internal/tryctx"
	"github.com/recourse-go/recourse/timeline"
)

// ErrPushbackTooLong is returned (wrapping the last try's error) when a
// server asks to wait longer than the retry loop's MaxPushback allows.
var ErrPushbackTooLong = errors.New("recourse: server pushback exceeds the policy's limit")

// MaxAttempts (Retry) bounds the number of attempts, the first included (≥ 1).
func MaxAttempts(n int) Option { return option(func(r *retrier) { r.maxAttempts = n }) }

// WithBackoff (Retry) sets the schedule of delays between attempts. Zero fields
// take defaults as BackoffConfig says: BackoffConfig{Initial: 50 *
// time.Millisecond} doubles from 50ms up to 250ms.
func WithBackoff(b BackoffConfig) Option {
	return option(func(r *retrier) { r.backoff = b.withDefaults() })
}

// RetryKey (Retry) names the key and policy ID published in each attempt's
// endpoint.AttemptInfo.
func RetryKey(key, policyID string) Option {
	return option(func(r *retrier) { r.key, r.policyID = key, policyID })
}

// MaxPushback (Retry) caps a server-requested delay (Retry-After, gRPC pushback).
// A longer request ends the call with ErrPushbackTooLong wrapping the last
// error. Zero means no cap.
func MaxPushback(d time.Duration) Option { return option(func(r *retrier) { r.maxPushback = d }) }

type retrier struct {
	maxAttempts   int
	backoff       BackoffConfig
	clock         clock.Clock
	key, policyID string
	maxPushback   time.Duration
}

func (r *retrier) setClock(c clock.Clock) { r.clock = c }

func defaultRetrier() *retrier {
	return &retrier{
		maxAttempts: 3,
		backoff:     BackoffConfig{Initial: 10 * time.Millisecond, Max: 250 * time.Millisecond, Multiplier: 2, Jitter: JitterFull},
		clock:       clock.Real{},
	}
}

// Retry returns the attempt loop. Each attempt runs next with an
// endpoint.AttemptInfo in its context. After a failed attempt the loop
// reads the attempt's verdict (from Classify, or the default rules for an
// unclassified error) and:
//
//   - stops on success, non-retryable, abort, or when attempts run out;
//   - otherwise waits — the server's pushback if the verdict carries one,
//     else the next backoff delay — and tries again. The wait ends early
//     when ctx is done, and is skipped (ending the call) when it would
//     outlast ctx's deadline.
//
// A context marked endpoint.AtMostOnce gets one attempt. Responses of
// attempts the loop moves past are released (endpoint.Discarder).
//
// The caller gets the last attempt's own error (never the verdict wrapper),
// so errors.Is finds the operation's error. When ctx is cancelled during a
// wait, the error wraps both ctx.Err() and the last attempt's error. A
// refused attempt (budget, breaker) after a real one returns the real one.
//
// Defaults: 3 attempts, 10ms initial backoff doubling to 250ms, full
// jitter — the same as policy.Defaults(), so that a hand-built chain does
// not retry in lockstep with its peers.
func Retry(opts ...Option) endpoint.Middleware {
	r := defaultRetrier()
	applyOptions(r, opts)
	if r.maxAttempts < 1 {
		r.maxAttempts = 1
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			return r.run(ctx, req, next)
		}
	}
}

func (r *retrier) run(ctx context.Context, req any, next endpoint.Endpoint) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		sched    *schedule
		lastResp any
		lastErr  error // last error of an attempt that really ran
	)
	for attempt := 1; ; attempt++ {
		actx := endpoint.WithAttempt(ctx, endpoint.AttemptInfo{Key: r.key, PolicyID: r.policyID, Attempt: attempt})
		resp, err := next(actx, req)
		if err == nil {
			tryctx.Discard(lastResp)
			return resp, nil
		}
		v := VerdictOf(ctx, resp, err)
		if refused(v) {
			if lastErr != nil {
				tryctx.Discard(resp)
				return lastResp, lastErr
			}
			return resp, unwrapVerdict(err)
		}
		tryctx.Discard(lastResp) // superseded by this attempt's
		lastResp, lastErr = resp, unwrapVerdict(err)
		if v.Outcome != timeline.OutcomeRetryable || attempt >= r.maxAttempts || tryctx.IsAtMostOnce(ctx) {
			return final(resp, err)
		}
		delay := v.RetryAfter
		if delay > 0 {
			if r.maxPushback > 0 && delay > r.maxPushback {
				tryctx.Discard(resp)
				return nil, fmt.Errorf("%w (asked %v, limit %v): %w", ErrPushbackTooLong, delay, r.maxPushback, lastErr)
			}
		} else {
			if sched == nil {
				sched = newSchedule(r.backoff)
			}
			delay = sched.next()
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
			// Waiting would outlive the call's deadline: stop with the real error.
			return final(resp, err)
		}
		record.FromContext(ctx).SetBackoff(attempt, delay)
		wait := delay
		if wait < minSleep {
			// "Retry now" (a server's Retry-After: 0): a timer and a wait
			// on ctx (which arms a lazy deadline context) buy nothing.
			wait = 0
		}
		if serr := clockx.Sleep(ctx, r.clock, wait); serr != nil {
			tryctx.Discard(resp)
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", serr, lastErr)
		}
	}
}

// minSleep is the shortest wait the retry loop sleeps for; shorter ones
// (the 1ns a "retry now" pushback is carried as) go on at once.
const minSleep = time.Microsecond

// refused reports whether the attempt was refused before it reached the
// dependency (a budget, an open breaker or a full bulkhead said no).
func refused(v Verdict) bool {
	return v.Outcome == timeline.OutcomeAbort && timeline.Refused(v.Reason)
}

// final turns an attempt's result into the caller's: the verdict wrapper is
// removed, and a go-kit Failer response comes back with a nil error.
func final(resp any, err error) (any, error) {
	if ce, ok := err.(*ClassifiedError); ok && ce.FromFailer {
		return resp, nil
	}
	return resp, unwrapVerdict(err)
}

// unwrapVerdict removes an outermost *ClassifiedError.
func unwrapVerdict(err error) error {
	if ce, ok := err.(*ClassifiedError); ok {
		return ce.Err
	}
	return err
}
