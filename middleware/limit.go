package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/lazyctx"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/timeline"
)

// Limiter admits work up to a bound on how much runs at once. Bulkhead
// (a fixed bound) and AdaptiveLimit (a bound that follows latency)
// implement it; Limit turns one into a decorator, and the server
// middleware of the transports use one to shed load.
//
// Implementations must be safe for concurrent use.
type Limiter interface {
	// Acquire waits for room, no longer than the limiter's own bound on
	// waiting and ctx allow. Admitted, it returns a release function that
	// the caller must call exactly once, when the work is over, telling
	// whether the work was dropped: shed, timed out or pushed back by an
	// overloaded dependency (an adaptive limit reads that as a sign of
	// overload). Refused, it returns an error wrapping ErrBulkheadFull.
	// When ctx ends first it returns an error wrapping ctx.Err() and
	// context.Cause(ctx). A done ctx is never admitted.
	Acquire(ctx context.Context) (release func(dropped bool), err error)
}

// noRelease is the release function of work admitted without a bound.
func noRelease(bool) {}

// permitOwner is a limiter that hands out permits.
type permitOwner interface {
	releasePermit(p *permit, dropped bool)
}

// permit is one admission. Its release function is made once and the
// permit is reused through a sync.Pool, so admitting allocates nothing.
// held guards against a second release: one that comes before the permit
// is handed out again does nothing. (One that comes after it was handed
// out again cannot be told from the new holder's; the contract is exactly
// once.)
type permit struct {
	held  atomic.Bool
	owner permitOwner
	start time.Time // when it was admitted (adaptive limits)
	seq   uint64    // admission number (adaptive limits)
	fn    func(dropped bool)
}

// permitPool recycles permits.
type permitPool struct{ pool sync.Pool }

// get returns a held permit of o.
func (pp *permitPool) get(o permitOwner) *permit {
	p, _ := pp.pool.Get().(*permit)
	if p == nil {
		p = &permit{}
		p.fn = func(dropped bool) { p.release(pp, dropped) }
	}
	p.owner = o
	p.held.Store(true)
	return p
}

// release gives the permit back to its owner, once.
func (p *permit) release(pp *permitPool, dropped bool) {
	if !p.held.CompareAndSwap(true, false) {
		return // released already
	}
	o := p.owner
	o.releasePermit(p, dropped)
	p.owner = nil
	pp.pool.Put(p)
}

// errWaiting is what Acquire returns when ctx ends while it waits: it
// wraps both ctx.Err() (so the classifier sees the caller's end) and the
// context's cause.
func errWaiting(ctx context.Context) error {
	err := ctx.Err()
	cause := lazyctx.Cause(ctx)
	if cause == nil || errors.Is(cause, err) {
		if cause == nil {
			cause = err
		}
		return fmt.Errorf("recourse: while waiting for room to run: %w", cause)
	}
	return fmt.Errorf("recourse: while waiting for room to run: %w (%w)", cause, err)
}

// Limit returns the decorator that runs each try under l: it takes room
// from l before calling next and gives it back when next returns. In the
// compiled chain it sits per try, inside the hedge decorator and outside
// the budget, so every try — first, retry or hedge — needs room, and room
// is held only while a try runs, never across a backoff sleep.
//
// A try l refuses does not call next: it is recorded with reason
// "bulkhead_full" and returns an error wrapping ErrBulkheadFull (and the
// limiter's own error) classified as an abort, so the retry loop does not
// send it again into the same full limiter and a circuit breaker in front
// does not count it. An error from l that does not wrap ErrBulkheadFull
// is taken as a refusal too, and wrapped so that errors.Is finds
// ErrBulkheadFull. When the try's context ends while l makes it wait, the
// try is recorded and classified like any try cut short by its context
// (reason "canceled" or "timeout").
//
// The try counts as dropped for l (see Limiter) when it timed out on its
// own per-attempt deadline, or when the dependency pushed back (a verdict
// with RetryAfter) or itself refused it (ErrBulkheadFull from further
// in). A nil l limits nothing.
func Limit(l Limiter) endpoint.Middleware {
	if l == nil {
		return func(next endpoint.Endpoint) endpoint.Endpoint { return next }
	}
	var last atomic.Pointer[ClassifiedError] // refusal wrapper for the limiter's last refusal error
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (resp any, err error) {
			release, aerr := l.Acquire(ctx)
			if aerr != nil {
				return nil, refuseTry(ctx, aerr, &last)
			}
			if release == nil {
				release = noRelease
			}
			dropped := false
			defer func() { release(dropped) }()
			resp, err = next(ctx, req)
			if err != nil {
				dropped = droppedTry(ctx, resp, err)
			}
			return resp, err
		}
	}
}

// refuseTry builds, records and returns the error of a try the limiter
// did not admit.
func refuseTry(ctx context.Context, aerr error, last *atomic.Pointer[ClassifiedError]) error {
	var ce *ClassifiedError
	switch {
	case ctx.Err() != nil && !errors.Is(aerr, ErrBulkheadFull):
		ce = &ClassifiedError{Err: aerr, Verdict: VerdictOf(ctx, nil, aerr)}
	default:
		if c := last.Load(); c != nil && c.Err == aerr {
			ce = c // the limiter's shared refusal: no allocation per refusal
		} else {
			err := aerr
			if !errors.Is(err, ErrBulkheadFull) {
				err = fmt.Errorf("%w: %w", ErrBulkheadFull, aerr)
			}
			ce = &ClassifiedError{Err: err, Verdict: Verdict{Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonBulkheadFull}}
			if err == aerr {
				last.Store(ce)
			}
		}
	}
	if rec := record.FromContext(ctx); rec != nil {
		info, _ := endpoint.AttemptFromContext(ctx)
		now := rec.Now()
		rec.Attempt(ctx, timeline.AttemptRecord{Attempt: max(info.Attempt, 1), HedgeIndex: info.HedgeIndex,
			StartTime: now, EndTime: now, Outcome: ce.Verdict.Outcome, Reason: ce.Verdict.Reason, Err: ce.Err})
	}
	return ce
}

// droppedTry reports whether a failed try is a sign of overload.
func droppedTry(ctx context.Context, resp any, err error) bool {
	v := VerdictOf(ctx, resp, err)
	switch {
	case v.Outcome == timeline.OutcomeRetryable && v.Reason == timeline.ReasonTimeout:
		return true
	case v.RetryAfter > 0:
		return true
	}
	return errors.Is(err, ErrBulkheadFull)
}

// defaultMaxLimiterKeys bounds the keys PerKey makes limiters for.
const defaultMaxLimiterKeys = 1024

// PerKey returns a limiter source that makes one Limiter per key with
// newLimiter, on the key's first use, and hands the same one out after.
// It is what the transports' server middleware take: pass it
// func(string) middleware.Limiter { return middleware.NewBulkhead(64, 0) }
// for a bulkhead per route, or an adaptive limit per method. Keys should
// be few (routes, methods); past 1024 distinct keys, the
// others share one limiter made for the key "" rather than growing memory
// without bound. A nil newLimiter, or one returning nil, limits nothing.
func PerKey(newLimiter func(key string) Limiter) func(key string) Limiter {
	if newLimiter == nil {
		return func(string) Limiter { return nil }
	}
	var (
		m        sync.Map   // key -> entry
		mu       sync.Mutex // guards making: n, overflow, made
		n        int
		overflow Limiter
		made     bool
	)
	type entry struct{ l Limiter }
	return func(key string) Limiter {
		if e, ok := m.Load(key); ok {
			return e.(entry).l
		}
		mu.Lock()
		defer mu.Unlock()
		if e, ok := m.Load(key); ok {
			return e.(entry).l
		}
		if n >= defaultMaxLimiterKeys {
			if !made {
				overflow, made = newLimiter(""), true
			}
			return overflow
		}
		e := entry{newLimiter(key)}
		m.Store(key, e)
		n++
		return e.l
	}
}
