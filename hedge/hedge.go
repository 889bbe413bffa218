package hedge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/lazyctx"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// Option configures the hedging decorator.
type Option func(*hedger)

// MaxHedges bounds the hedges spawned beside one attempt (default 1).
func MaxHedges(n int) Option { return func(h *hedger) { h.maxHedges = n } }

// WithClock sets the clock hedge timers run on (default clock.Real).
func WithClock(c clock.Clock) Option { return func(h *hedger) { h.clock = clock.Or(c) } }

type hedger struct {
	trigger   Trigger
	observer  LatencyObserver // trigger, if it learns from latencies
	maxHedges int
	clock     clock.Clock
	groups    sync.Pool // *group, with its timer, reused across attempts
}

// New returns the hedging decorator driven by trigger. See the package
// documentation for its behaviour.
func New(trigger Trigger, opts ...Option) endpoint.Middleware {
	h := &hedger{trigger: trigger, maxHedges: 1, clock: clock.Real{}}
	for _, o := range opts {
		o(h)
	}
	if h.trigger == nil {
		h.trigger = FixedDelay(0)
	}
	h.observer, _ = h.trigger.(LatencyObserver)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			return h.run(ctx, req, next)
		}
	}
}

func (h *hedger) run(ctx context.Context, req any, next endpoint.Endpoint) (any, error) {
	info, _ := endpoint.AttemptFromContext(ctx)
	delay, ok := h.trigger.Delay()
	if !ok || h.maxHedges < 1 || info.Breaker != endpoint.BreakerClosed || info.IsHedge() || !endpoint.HedgingAllowed(ctx) {
		return h.single(ctx, req, next)
	}
	if info.Attempt == 0 {
		info.Attempt = 1
	}
	g := h.group()
	g.ctx, g.req, g.next, g.info, g.delay = ctx, req, next, info, delay
	pctx := lazyctx.WithCancel(ctx)
	g.tries = append(g.tries, pctx)
	if h.observer != nil { // reading the clock is not free: only when latencies are learnt
		g.start = h.clock.Now()
	}
	g.mu.Lock() // fire may run before the timer call returns
	g.arm()
	g.mu.Unlock()
	resp, err := next(pctx, req)
	return g.primaryDone(resp, err)
}

// group returns a race to run, from the pool when one is free.
func (h *hedger) group() *group {
	if g, ok := h.groups.Get().(*group); ok {
		return g
	}
	g := &group{h: h, wake: make(chan struct{}, 1)}
	g.fireFn = g.fire
	return g
}

// release clears g and returns it to the pool. Every try and the timer
// have finished: primaryDone waited for them.
func (h *hedger) release(g *group) {
	for i := range g.tries {
		g.tries[i] = nil
	}
	g.tries = g.tries[:0]
	g.ctx, g.req, g.next, g.resp, g.err, g.lastResp, g.lastErr = nil, nil, nil, nil, nil, nil, nil
	g.spawned, g.running, g.winner, g.lastIdx = 0, 0, 0, 0
	g.closed, g.decided, g.hasLast = false, false, false
	select {
	case <-g.wake:
	default:
	}
	h.groups.Put(g)
}

// single runs one unhedged try, feeding its latency to the trigger.
func (h *hedger) single(ctx context.Context, req any, next endpoint.Endpoint) (any, error) {
	if h.observer == nil {
		return next(ctx, req)
	}
	start := h.clock.Now()
	resp, err := next(ctx, req)
	h.observe(ctx, start, resp, err)
	return resp, err
}

// observe reports the latency of a try that completed on its own.
func (h *hedger) observe(ctx context.Context, start time.Time, resp any, err error) {
	if h.observer == nil {
		return
	}
	if err != nil {
		if o := middleware.VerdictOf(ctx, resp, err).Outcome; o != timeline.OutcomeRetryable {
			return // refused, aborted or rejected: says nothing about latency
		}
	}
	h.observer.ObserveLatency(h.clock.Now().Sub(start))
}

// group is one attempt's race between its primary try and its hedges.
type group struct {
	h     *hedger
	ctx   context.Context
	req   any
	next  endpoint.Endpoint
	info  endpoint.AttemptInfo
	delay time.Duration
	start time.Time     // set only when the trigger learns latencies
	wake  chan struct{} // a hedge finished

	// wg counts the armed timer and the hedges running in timer goroutines.
	wg sync.WaitGroup

	mu       sync.Mutex
	timer    clock.Timer    // kept with the pooled group and re-armed
	fireFn   func()         // g.fire, made once
	tries    []*lazyctx.Ctx // each try's context; [0] is the primary's
	spawned  int            // hedges started
	running  int            // hedges not yet finished
	closed   bool           // no more hedges may start
	decided  bool
	winner   int
	resp     any
	err      error
	lastIdx  int // last retryable failure, returned if nothing better comes
	lastResp any
	lastErr  error
	hasLast  bool
}

// arm starts the timer for the next hedge; g.mu is held.
func (g *group) arm() {
	g.wg.Add(1)
	if g.timer == nil {
		g.timer = g.h.clock.AfterFunc(g.delay, g.fireFn)
		return
	}
	g.timer.Reset(g.delay)
}

// fire runs in the timer's goroutine: it starts hedge number spawned+1,
// arms the timer for the next one if allowed, and runs the hedged try.
func (g *group) fire() {
	defer g.wg.Done()
	g.mu.Lock()
	if g.closed || g.decided {
		g.mu.Unlock()
		return
	}
	g.spawned++
	idx := g.spawned
	hctx := lazyctx.WithCancel(g.ctx)
	g.tries = append(g.tries, hctx)
	g.running++
	if g.spawned < g.h.maxHedges {
		g.arm()
	}
	g.mu.Unlock()

	now := g.h.clock.Now()
	timeline.RecorderFromContext(g.ctx).Hedge(g.ctx, timeline.HedgeEvent{
		Attempt: g.info.Attempt, HedgeIndex: idx, After: time.Duration(idx) * g.delay, Trigger: g.h.trigger.Name(),
	})
	info := g.info
	info.HedgeIndex = idx
	resp, err := g.next(endpoint.WithAttempt(hctx, info), g.req)

	g.mu.Lock()
	g.running--
	if g.decided {
		endpoint.Discard(resp) // lost the race
	} else {
		g.h.observe(hctx, now, resp, err)
		g.consider(idx, resp, err)
	}
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// consider takes try idx's result into account; g.mu is held.
func (g *group) consider(idx int, resp any, err error) {
	if err == nil {
		g.decide(idx, resp, nil)
		return
	}
	v := middleware.VerdictOf(g.ctx, resp, err)
	switch {
	case v.Outcome == timeline.OutcomeSuccess:
		g.decide(idx, resp, err)
	case v.Outcome == timeline.OutcomeAbort && v.Reason == timeline.ReasonBudgetDenied && idx > 0:
		// A refused hedge never ran: the race goes on without it.
	case v.Outcome == timeline.OutcomeRetryable:
		endpoint.Discard(g.lastResp)
		g.lastIdx, g.lastResp, g.lastErr, g.hasLast = idx, resp, err, true
	default: // non-retryable, abort: the race is over
		g.decide(idx, resp, err)
	}
}

func (g *group) decide(idx int, resp any, err error) {
	if g.hasLast && g.lastIdx != idx {
		endpoint.Discard(g.lastResp)
	}
	g.decided, g.winner, g.resp, g.err = true, idx, resp, err
	for i, c := range g.tries {
		if i != idx {
			c.Cancel()
		}
	}
}

// primaryDone runs on the caller's goroutine once the primary try has
// returned: it settles the race, cancels and awaits every other try, and
// returns the attempt's result.
func (g *group) primaryDone(resp any, err error) (any, error) {
	g.mu.Lock()
	if g.decided {
		endpoint.Discard(resp) // a hedge won while the primary ran
	} else {
		g.h.observe(g.ctx, g.start, resp, err)
		g.consider(0, resp, err)
	}
	g.closed = true
	if g.timer.Stop() {
		g.wg.Done() // the timer will not fire
	}
	for !g.decided && g.running > 0 {
		g.mu.Unlock()
		<-g.wake
		g.mu.Lock()
	}
	if !g.decided {
		if g.hasLast {
			g.decide(g.lastIdx, g.lastResp, g.lastErr)
		} else {
			g.decide(0, resp, err)
		}
	}
	for i, c := range g.tries {
		if i == g.winner && g.err == nil {
			c.HandTo(g.resp) // the winner's body may still be read
			continue
		}
		c.Cancel()
	}
	spawned, winner, won := g.spawned, g.winner, g.err == nil || isSuccess(g.ctx, g.resp, g.err)
	resp, err = g.resp, g.err
	ctx, attempt := g.ctx, g.info.Attempt
	g.mu.Unlock()
	g.wg.Wait()
	g.h.release(g)

	if spawned > 0 {
		markRace(ctx, attempt, spawned, winner, won)
	}
	return resp, err
}

func isSuccess(ctx context.Context, resp any, err error) bool {
	return middleware.VerdictOf(ctx, resp, err).Outcome == timeline.OutcomeSuccess
}

// markRace labels the records of a race that spawned hedges: the winner
// "hedge_won", the tries cut short by its win "hedge_lost".
func markRace(ctx context.Context, attempt, spawned, winner int, won bool) {
	rec := timeline.RecorderFromContext(ctx)
	if rec == nil {
		return
	}
	for i := 0; i <= spawned; i++ {
		rec.Update(attempt, i, func(a *timeline.AttemptRecord) {
			switch {
			case won && i == winner:
				a.Reason = timeline.ReasonHedgeWon
			case won && (a.Reason == timeline.ReasonCanceled || errors.Is(a.Err, context.Canceled)):
				a.Reason = timeline.ReasonHedgeLost
			}
		})
	}
}
