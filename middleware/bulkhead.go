package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/internal/clockx"
)

// Bulkhead is a fixed bound on how many tries of a key run at once: a
// Limiter that admits up to its maximum and makes the rest wait, first
// come first served, for at most its wait bound. It keeps one slow
// dependency from taking every goroutine, connection or thread a service
// has.
//
// Admitting and releasing allocate nothing when there is room. The zero
// Bulkhead has no bound: it admits every try whose context has not ended.
type Bulkhead struct {
	sem     chan struct{} // one element per try running; nil: no bound
	maxWait time.Duration
	clock   clock.Clock
	full    error // the one refusal error, made once
	permits permitPool
}

func (b *Bulkhead) setClock(c clock.Clock) { b.clock = c }

// NewBulkhead returns a bulkhead admitting maxConcurrent tries at once;
// a try that finds it full waits up to maxWait for room (0: refused at
// once). A maxConcurrent below 1 is taken as 1 and a negative maxWait as
// 0: a bulkhead never admits an unbounded number by mistake. Any
// maxConcurrent up to math.MaxInt costs the same memory.
func NewBulkhead(maxConcurrent int, maxWait time.Duration, opts ...Option) *Bulkhead {
	maxConcurrent = max(maxConcurrent, 1)
	maxWait = max(maxWait, 0)
	b := &Bulkhead{sem: make(chan struct{}, maxConcurrent), maxWait: maxWait, clock: clock.Real{}}
	applyOptions(b, opts)
	b.full = fmt.Errorf("%w (max_concurrent %d, max_wait %v)", ErrBulkheadFull, maxConcurrent, maxWait)
	return b
}

// Max returns how many tries the bulkhead admits at once (0: no bound).
func (b *Bulkhead) Max() int {
	if b == nil {
		return 0
	}
	return cap(b.sem)
}

// MaxWait returns how long a try may wait for room.
func (b *Bulkhead) MaxWait() time.Duration {
	if b == nil {
		return 0
	}
	return b.maxWait
}

// InFlight returns how many admitted tries have not been released yet.
func (b *Bulkhead) InFlight() int {
	if b == nil {
		return 0
	}
	return len(b.sem)
}

// Acquire implements Limiter. Waiters are admitted in the order they
// came; a try arriving while others wait queues behind them.
func (b *Bulkhead) Acquire(ctx context.Context) (func(dropped bool), error) {
	if ctx.Err() != nil {
		return nil, errWaiting(ctx) // a done ctx is never admitted, bound or not
	}
	if b == nil || b.sem == nil {
		return noRelease, nil
	}
	select {
	case b.sem <- struct{}{}:
		return b.permits.get(b).fn, nil
	default:
	}
	if b.maxWait <= 0 {
		return nil, b.full
	}
	// A blocked send queues behind earlier ones, and a release hands its
	// room to the first of them: no newcomer overtakes a waiter.
	t := clockx.Or(b.clock).NewTimer(b.maxWait)
	select {
	case b.sem <- struct{}{}:
		t.Stop()
		return b.permits.get(b).fn, nil
	case <-ctx.Done():
		t.Stop()
		return nil, errWaiting(ctx)
	case <-t.C():
		return nil, b.full
	}
}

// releasePermit frees the room of one admitted try.
func (b *Bulkhead) releasePermit(_ *permit, _ bool) { <-b.sem }
