package hedge

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/internal/lazyctx"
	"github.com/recourse-go/recourse/internal/mwopt"
	"github.com/recourse-go/recourse/internal/optfunc"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/internal/tryctx"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// Option configures New or NewLatencyTrigger. Each option's comment names
// the constructor that reads it; the other ignores it.
type Option func(target any)

// option returns an Option that applies f to targets of type T and leaves
// any other target alone.
func option[T any](f func(T)) Option { return optfunc.For[Option](f) }

// applyOptions applies opts to target, skipping nil ones.
func applyOptions(target any, opts []Option) { optfunc.Apply(target, opts) }

// MaxHedges (New) bounds the hedges spawned beside one attempt (default 1).
func MaxHedges(n int) Option { return option(func(h *hedger) { h.maxHedges = n }) }

// WithClock (New) sets the clock hedge timers run on (default clock.Real).
func WithClock(c clock.Clock) Option { return option(func(h *hedger) { h.clock = clockx.Or(c) }) }

func init() { mwopt.RecoverHedgePanics = recoverPanics }

// recoverPanics makes a panic on a hedge's goroutine — in the operation,
// an observer callback or anything else the hedged try runs — end the
// attempt with a *middleware.PanicError (component "hedge") for key
// instead of being raised again on the caller's goroutine, the default.
// Either way the other tries are cancelled and awaited first, and the
// panic never goes unreported.
func recoverPanics(key string) Option {
	return option(func(h *hedger) { h.recover, h.key = true, key })
}

type hedger struct {
	trigger   Trigger
	observer  LatencyObserver // trigger, if it learns from latencies
	maxHedges int
	clock     clock.Clock
	recover   bool      // hedge panics become *middleware.PanicError
	key       string    // for those errors
	groups    sync.Pool // *group, with its timer, reused across attempts
}

// New returns the hedging decorator driven by trigger. See the package
// documentation for its behaviour.
func New(trigger Trigger, opts ...Option) endpoint.Middleware {
	h := &hedger{trigger: trigger, maxHedges: 1, clock: clock.Real{}}
	applyOptions(h, opts)
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

func (h *hedger) run(ctx context.Context, req any, next endpoint.Endpoint) (resp any, err error) {
	info, _ := endpoint.AttemptFromContext(ctx)
	delay, ok := h.trigger.Delay()
	if !ok || h.maxHedges < 1 || info.Breaker != endpoint.BreakerClosed || info.IsHedge() || !tryctx.HedgingAllowed(ctx) {
		return h.single(ctx, req, next)
	}
	if info.Attempt == 0 {
		info.Attempt = 1
	}
	g := h.group()
	outer := ctx
	if rec := record.FromContext(ctx); rec != nil {
		// The tries' records wait for the race to end, so that what
		// observers are told is what the timeline keeps.
		g.held = rec.Hold()
		ctx = record.NewContext(ctx, g.held)
	}
	g.ctx, g.req, g.next, g.info, g.delay = ctx, req, next, info, delay
	pctx := lazyctx.WithCancel(ctx)
	g.tries = append(g.tries, pctx)
	if h.observer != nil { // reading the clock is not free: only when latencies are learnt
		g.start = h.clock.Now()
	}
	g.mu.Lock() // fire may run before the timer call returns
	g.arm()
	g.mu.Unlock()
	returned := false
	defer func() {
		if !returned { // the primary try panicked: let no hedge outlive it
			g.abandon()
		}
	}()
	resp, err = next(pctx, req)
	if pctx.Err() == nil { // not cut short by a hedge's win
		g.h.observe(g.ctx, g.start, resp, err)
	}
	returned = true
	return g.primaryDone(outer, resp, err)
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
	g.late = g.late[:0]
	g.ctx, g.req, g.next, g.resp, g.err, g.lastResp, g.lastErr = nil, nil, nil, nil, nil, nil, nil
	g.held, g.panic = nil, nil
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
//
// No code of the user's (operations, observers, responses' Discard and
// AdoptCancel, triggers) runs while mu is held, so that a panic in it
// cannot leave the race locked.
type group struct {
	h     *hedger
	ctx   context.Context
	req   any
	next  endpoint.Endpoint
	info  endpoint.AttemptInfo
	delay time.Duration
	start time.Time        // set only when the trigger learns latencies
	wake  chan struct{}    // a hedge finished
	held  *record.Recorder // holds the tries' records while recorded

	// wg counts the armed timer and the hedges running in timer goroutines.
	wg sync.WaitGroup

	mu       sync.Mutex
	timer    clock.Timer    // kept with the pooled group and re-armed
	fireFn   func()         // g.fire, made once
	tries    []*lazyctx.Ctx // each try's context; [0] is the primary's
	late     []int          // tries that ended after the race was decided
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
	panic    *tryPanic // the first panic on a hedge's goroutine
}

// tryPanic is a panic caught on a hedge's goroutine, to be handed to the
// caller's.
type tryPanic struct {
	value any
	err   error // the *middleware.PanicError, when recovering panics
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
// A panic on this goroutine ends the race and is handed to the caller's.
func (g *group) fire() {
	defer g.wg.Done()
	if g.ctx.Err() != nil {
		return // the caller has given up: no hedge, no budget spent on one
	}
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

	counted := false  // running has been decremented for this try
	finished := false // fire returned normally
	defer func() {
		if r := recover(); r != nil {
			g.panicked(idx, r, !counted)
		} else if !finished {
			// runtime.Goexit (t.FailNow in a test's operation): the caller
			// must not wait for this try forever; it gets it as a panic.
			g.panicked(idx, errGoexit, !counted)
		}
	}()
	var now time.Time
	if g.h.observer != nil {
		now = g.h.clock.Now()
	}
	record.FromContext(g.ctx).Hedge(g.ctx, timeline.HedgeEvent{
		Attempt: g.info.Attempt, HedgeIndex: idx, After: time.Duration(idx) * g.delay, Trigger: g.h.trigger.Name(),
	})
	info := g.info
	info.HedgeIndex = idx
	resp, err := g.next(endpoint.WithAttempt(hctx, info), g.req)
	if hctx.Err() == nil { // not cut short by another try's win
		g.h.observe(hctx, now, resp, err)
	}

	var drop any
	g.mu.Lock()
	g.running--
	counted = true
	if g.decided {
		drop = resp // lost the race
		g.late = append(g.late, idx)
	} else {
		drop = g.consider(idx, resp, err)
	}
	g.mu.Unlock()
	tryctx.Discard(drop)
	g.notify()
	finished = true
}

// errGoexit is the panic value a hedge try that called runtime.Goexit
// raises on the caller's goroutine (or wraps in a *PanicError).
var errGoexit = errors.New("recourse/hedge: the operation called runtime.Goexit on a hedge goroutine")

// notify wakes primaryDone if it waits for hedges.
func (g *group) notify() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// panicked records that hedge idx panicked with v, ends the race and
// cancels every try. running says whether the try still counts as running.
func (g *group) panicked(idx int, v any, running bool) {
	p := &tryPanic{value: v}
	if g.h.recover {
		p.err = middleware.NewPanicError("hedge", g.h.key, v)
	}
	var drop any
	g.mu.Lock()
	if running {
		g.running--
	}
	if g.panic == nil {
		g.panic = p
	}
	if !g.decided {
		drop = g.decide(idx, nil, p.err)
	}
	for _, c := range g.tries {
		c.Cancel()
	}
	g.mu.Unlock()
	g.notify()
	func() {
		defer func() { _ = recover() }() // already reporting a panic
		tryctx.Discard(drop)
	}()
}

// consider takes try idx's result into account and returns a response
// to discard; g.mu is held.
func (g *group) consider(idx int, resp any, err error) (drop any) {
	if err == nil {
		return g.decide(idx, resp, nil)
	}
	v := middleware.VerdictOf(g.ctx, resp, err)
	switch {
	case v.Outcome == timeline.OutcomeSuccess:
		return g.decide(idx, resp, err)
	case v.Outcome == timeline.OutcomeAbort && timeline.Refused(v.Reason) && idx > 0:
		// A refused hedge (no budget token, no room in the bulkhead) never
		// ran: the race goes on without it.
		return resp
	case v.Outcome == timeline.OutcomeRetryable:
		if g.hasLast {
			drop = g.lastResp
		}
		g.lastIdx, g.lastResp, g.lastErr, g.hasLast = idx, resp, err, true
		if v.RetryAfter > 0 {
			// The server asked to back off: more hedges now would defy
			// it. The retry loop honours the delay before the next try.
			g.closed = true
		}
		return drop
	default: // non-retryable, abort: the race is over
		return g.decide(idx, resp, err)
	}
}

// decide ends the race with try idx's result, cancels the other tries and
// returns a response to discard; g.mu is held.
func (g *group) decide(idx int, resp any, err error) (drop any) {
	if g.hasLast && g.lastIdx != idx {
		drop = g.lastResp
	}
	g.hasLast, g.lastResp, g.lastErr = false, nil, nil
	g.decided, g.winner, g.resp, g.err = true, idx, resp, err
	g.cancelLosers(g.tries, idx)
	return drop
}

// cancelLosers cancels every try but the winner's — unless the caller's
// context has ended: its cancellation is then on its way to every try
// (they derive from it) with the caller's own cause, which a bare Cancel
// racing it would replace with context.Canceled. primaryDone cancels them
// all once they have returned, to release them.
func (g *group) cancelLosers(tries []*lazyctx.Ctx, winner int) {
	if len(tries) < 2 || g.ctx.Err() != nil {
		return // no hedge ran (the common case: no clock read), or the caller's end is on its way
	}
	for i, c := range tries {
		if i != winner {
			c.Cancel()
		}
	}
}

// primaryDone runs on the caller's goroutine once the primary try has
// returned: it settles the race, cancels and awaits every other try,
// releases the race's records to the call's timeline and returns the
// attempt's result — or raises a hedge's panic on the caller's goroutine.
// Code of the user's (Discard, AdoptCancel, observers) runs only once no
// hedge is left running, so that a panic in it cannot strand one.
func (g *group) primaryDone(outer context.Context, resp any, err error) (any, error) {
	var drops [2]any
	g.mu.Lock()
	if g.decided {
		drops[0] = resp // a hedge won while the primary ran
		g.late = append(g.late, 0)
	} else {
		drops[0] = g.consider(0, resp, err)
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
			drops[1] = g.decide(g.lastIdx, g.lastResp, g.lastErr)
		} else {
			drops[1] = g.decide(0, resp, err)
		}
	}
	// No try starts once closed: tries is read below without the lock.
	tries, winner := g.tries, g.winner
	g.mu.Unlock()
	g.cancelLosers(tries, winner)
	g.wg.Wait() // every hedge has returned: the fields are ours
	for i, c := range tries {
		if i != winner {
			c.Cancel() // released (a no-op for those already cancelled)
		}
	}

	resp, err, p := g.resp, g.err, g.panic
	switch c := tries[winner]; {
	case p != nil:
		c.Cancel()
	case err == nil:
		c.HandTo(resp) // the winner's body may still be read
	default:
		c.HandFailedTo(resp) // so may a final failed status's
	}
	if p != nil {
		tryctx.Discard(resp) // a panic outranks any result
		resp, err = nil, p.err
	}
	for _, d := range drops {
		tryctx.Discard(d)
	}
	if g.held != nil {
		var label func(*timeline.AttemptRecord)
		if g.spawned > 0 {
			label = raceLabels(winner, g.late, p == nil && (err == nil || isSuccess(g.ctx, resp, err)))
		}
		if perr := g.releaseRecords(outer, label); perr != nil && p == nil {
			tryctx.Discard(resp)
			resp, err = nil, perr
		}
	}
	g.h.release(g)
	if p != nil && p.err == nil {
		panic(p.value)
	}
	return resp, err
}

// releaseRecords hands the race's records to the call's timeline and
// observer. When recovering panics, an observer's panic becomes the returned
// *middleware.PanicError (component "observer").
func (g *group) releaseRecords(ctx context.Context, label func(*timeline.AttemptRecord)) (perr error) {
	if g.h.recover {
		defer func() {
			if r := recover(); r != nil {
				perr = middleware.NewPanicError("observer", g.h.key, r)
			}
		}()
	}
	g.held.Release(ctx, label)
	return nil
}

// abandon ends a race whose primary try panicked: every other try is
// cancelled and awaited, and what they produced is dropped. The group is
// not reused.
func (g *group) abandon() {
	g.mu.Lock()
	g.closed = true
	drops := [2]any{g.resp, g.lastResp}
	if !g.decided {
		g.decided, g.winner = true, -1
	}
	if g.timer.Stop() {
		g.wg.Done()
	}
	tries := g.tries
	g.mu.Unlock()
	for _, c := range tries {
		c.Cancel()
	}
	g.wg.Wait()
	defer func() { _ = recover() }() // the primary's panic is the one reported
	for _, d := range drops {
		tryctx.Discard(d)
	}
}

func isSuccess(ctx context.Context, resp any, err error) bool {
	return middleware.VerdictOf(ctx, resp, err).Outcome == timeline.OutcomeSuccess
}

// raceLabels returns the relabelling of a race that spawned hedges: the
// winner "hedge_won" when it succeeded, the tries whose results came
// after the race was decided (cut short or simply too late) "hedge_lost".
func raceLabels(winner int, late []int, won bool) func(*timeline.AttemptRecord) {
	return func(a *timeline.AttemptRecord) {
		switch {
		case a.HedgeIndex == winner && won:
			a.Reason = timeline.ReasonHedgeWon
		case !timeline.Refused(a.Reason) && slices.Contains(late, a.HedgeIndex):
			a.Reason = timeline.ReasonHedgeLost
		}
	}
}
