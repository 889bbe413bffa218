// Package lazyctx provides a cancelable context with an optional deadline
// that costs a struct and a bare timer until somebody waits on it, and behaves like
// the standard library's from the moment somebody does.
//
// context.WithTimeout arms a runtime timer, registers with its parent and
// allocates a done channel and a cancel closure at once — five or six
// allocations per deadline, paid on every try even when the operation
// never looks at its context. A Ctx defers that work: until somebody calls
// Done (or asks for its cancellation through the context package), Err and
// Deadline are answered by comparing the clock with the deadline and
// asking the parent. At that moment the Ctx arms: it builds the very
// context the standard library would have built (context.WithDeadlineCause
// or context.WithCancel on the same parent) and from then on answers Done,
// Err and context.Cause from it. Operations that wait on their context
// (network calls) get standard semantics exactly; those that never wait pay
// for a struct.
//
// Arming is what keeps the standard library's guarantees:
//
//   - Propagation is synchronous. When the context package derives a child
//     from a Ctx, it asks the Ctx for its internal cancel context; the Ctx
//     arms and hands over its standard one, so the child joins the standard
//     tree and is cancelled before its ancestor's cancel function returns —
//     no goroutine, no AfterFunc hop.
//   - context.Cause reads the Ctx's own cause on every Go version, because
//     the nearest standard cancel context the lookup finds is the Ctx's own.
//   - Before arming, which end came first decides Err and Cause, as for a
//     standard context: a Ctx with a deadline under a parent that can end
//     arms a bare runtime timer (no channel, no parent registration, no
//     goroutine until it fires) that records at the deadline whether the
//     parent had ended. So a deadline that passed unobserved keeps its own
//     cause when an ancestor is cancelled later, and a caller's earlier
//     cancellation is not taken for a timeout when the try looks late.
package lazyctx

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/endpoint"
)

// Ctx is a context with its own cancellation and optional deadline.
type Ctx struct {
	parent   context.Context
	deadline time.Time // zero: none of its own
	cause    error     // reported by Cause when its own deadline passes

	armed atomic.Bool // std is set; read without the lock after this

	// timer fires at the own deadline while the context is not armed, to
	// record whether the parent had ended by then: which end came first
	// decides Err and Cause, as it does for a standard context. It is nil
	// when the parent can never end.
	timer *time.Timer

	mu        sync.Mutex
	std       context.Context // the standard context, once armed
	stdCancel context.CancelFunc
	err       error // set once when the context ends before it is armed
	errCause  error
}

type key struct{}

// cancelCtxKey is the key under which the context package looks up the
// nearest standard cancel context (context.Cause and the registration of a
// derived context both do). The package does not export it, so it is
// learned once by watching the lookup context.Cause makes on a probe.
var cancelCtxKey = func() any {
	p := &probe{}
	_ = context.Cause(p)
	return p.key
}()

// IsCancelCtxKey reports whether k is the key under which the context
// package looks up a context's nearest standard cancel context (for
// context.Cause and to register a derived context). A context that stands
// in for a standard cancel context answers it with one (see Ctx.Value).
func IsCancelCtxKey(k any) bool { return cancelCtxKey != nil && k == cancelCtxKey }

type probe struct {
	context.Context
	key any
}

func (p *probe) Err() error { return context.Canceled }

func (p *probe) Value(k any) any {
	if p.key == nil {
		p.key = k
	}
	return nil
}

// WithCancel returns a context that ends when Cancel is called or parent ends.
func WithCancel(parent context.Context) *Ctx {
	if parent == nil {
		panic("lazyctx: nil parent context")
	}
	return &Ctx{parent: parent}
}

// WithTimeout returns a context that also ends d from now; Cause then
// reports cause (context.DeadlineExceeded if nil).
func WithTimeout(parent context.Context, d time.Duration, cause error) *Ctx {
	if parent == nil {
		panic("lazyctx: nil parent context")
	}
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	c := &Ctx{parent: parent, deadline: time.Now().Add(d), cause: cause}
	if mayEnd(parent) {
		c.timer = time.AfterFunc(d, c.expire)
	}
	return c
}

// mayEnd reports whether parent can ever end, without arming a Ctx among
// its ancestors: any Ctx can be cancelled; a standard context can when its
// Done channel is not nil.
func mayEnd(parent context.Context) bool {
	if _, ok := parent.Value(key{}).(*Ctx); ok {
		return true
	}
	return parent.Done() != nil
}

// expire runs at the own deadline of a context nobody has armed and
// records how it ended: by its parent, if the parent had ended by then,
// else by its own deadline.
func (c *Ctx) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std != nil || c.err != nil {
		return
	}
	if perr := c.parent.Err(); perr != nil && c.parentMayBeFirst(perr) {
		c.endByParentLocked(perr)
		return
	}
	c.err, c.errCause = context.DeadlineExceeded, c.cause
}

// parentMayBeFirst reports whether the parent's end (perr), noticed once
// c's own deadline has passed too, may have come before that deadline. A
// parent that ended on a deadline later than c's own ended after it (a
// late timer, on a loaded machine, must not hand a try's own timeout to
// the enclosing call's); one cancelled at an unknown time is taken to
// have come first, so that a caller's cancellation never passes for a
// timeout of the try's own.
func (c *Ctx) parentMayBeFirst(perr error) bool {
	if c.deadline.IsZero() || !errors.Is(perr, context.DeadlineExceeded) {
		return true
	}
	pd, ok := c.parent.Deadline()
	return !ok || !pd.After(c.deadline)
}

func (c *Ctx) endByParentLocked(perr error) {
	c.err, c.errCause = perr, context.Cause(c.parent)
	if c.errCause == nil { // a custom parent that reports no cause
		c.errCause = perr
	}
}

// Deadline returns the earlier of its own deadline and its parent's.
func (c *Ctx) Deadline() (time.Time, bool) {
	pd, ok := c.parent.Deadline()
	if c.deadline.IsZero() || (ok && pd.Before(c.deadline)) {
		return pd, ok
	}
	return c.deadline, true
}

// Value returns c for its own key, the armed standard context's answer for
// the context package's internal lookup, and asks the parent otherwise.
func (c *Ctx) Value(k any) any {
	switch {
	case k == (key{}):
		return c
	case k == cancelCtxKey && cancelCtxKey != nil:
		return c.arm().Value(k)
	}
	return c.parent.Value(k)
}

// Err reports why the context ended, or nil. A deadline that has passed
// or a parent that has ended ends it here, even if nobody waited.
func (c *Ctx) Err() error {
	if c.armed.Load() {
		return c.std.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std != nil {
		return c.std.Err()
	}
	err, _ := c.endLocked()
	return err
}

// endLocked notices an end that nobody has armed a timer for, records it,
// and returns the error and cause. It is called with c.mu held, before arming.
func (c *Ctx) endLocked() (error, error) {
	if c.err != nil {
		return c.err, c.errCause
	}
	own := !c.deadline.IsZero() && !time.Now().Before(c.deadline)
	if perr := c.parent.Err(); perr != nil && (!own || c.parentMayBeFirst(perr)) {
		// Both may have ended and the deadline's timer, which records
		// which came first, has not run yet (it is late, or there is none
		// because the parent could not end when c was made). The parent's
		// end is taken unless it came on a deadline later than c's own:
		// it cannot have come after c's deadline when the parent's own
		// deadline is no later, and a cancellation's time is unknown — and
		// a try cut by its caller must never pass for a timeout of its
		// own, which breakers would count.
		c.endByParentLocked(perr)
		return c.err, c.errCause
	}
	if own {
		c.err, c.errCause = context.DeadlineExceeded, c.cause
	}
	return c.err, c.errCause
}

// Done returns a channel closed when the context ends. The first call arms
// the context (see the package documentation).
func (c *Ctx) Done() <-chan struct{} { return c.arm().Done() }

// arm builds the standard context this Ctx stands for, once, and returns it.
func (c *Ctx) arm() context.Context {
	if c.armed.Load() {
		return c.std
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std != nil {
		return c.std
	}
	if err, cause := c.endLocked(); err != nil {
		// Ended before anyone waited: a standard context that has ended the
		// same way, carrying the parent's values but not its cancellation.
		base := context.WithoutCancel(c.parent)
		if errors.Is(err, context.DeadlineExceeded) {
			c.std, c.stdCancel = context.WithDeadlineCause(base, time.Time{}, cause)
		} else {
			std, cancel := context.WithCancelCause(base)
			cancel(cause)
			c.std, c.stdCancel = std, func() {}
		}
	} else if c.deadline.IsZero() {
		c.std, c.stdCancel = context.WithCancel(c.parent)
	} else {
		c.std, c.stdCancel = context.WithDeadlineCause(c.parent, c.deadline, c.cause)
	}
	c.armed.Store(true)
	if c.timer != nil {
		c.timer.Stop() // the standard context keeps time from now on
	}
	return c.std
}

// Armed reports whether the context has built its standard context (some
// caller waited on it). Tests use it to check the lazy path stays lazy.
func (c *Ctx) Armed() bool { return c.armed.Load() }

// HandTo gives c's cancellation to resp when resp adopts cancel functions
// (an endpoint.CancelAdopter such as a streamed HTTP body, read after the
// call returns), and cancels c now otherwise. The method value is made
// only for an adopter, so the common path allocates nothing.
func (c *Ctx) HandTo(resp any) {
	if a, ok := resp.(endpoint.CancelAdopter); ok && a.AdoptCancel(c.Cancel) {
		return
	}
	c.Cancel()
}

// HandFailedTo is HandTo for the response of a failed try: it gives c's
// cancellation to resp when resp is a failed response that may go back to
// the caller and be read after the call returns (a final failed HTTP
// status: it implements AdoptFailedCancel), and cancels c now otherwise.
// A response the chain drops instead calls cancel when it is discarded.
func (c *Ctx) HandFailedTo(resp any) {
	if a, ok := resp.(failedAdopter); ok && a.AdoptFailedCancel(c.Cancel) {
		return
	}
	c.Cancel()
}

// failedAdopter is implemented by failed responses whose content may be
// read after the call returns; like endpoint.CancelAdopter, the response
// calls every adopted function once, when it is closed or discarded.
type failedAdopter interface {
	AdoptFailedCancel(cancel context.CancelFunc) bool
}

// Cancel ends the context with context.Canceled, if it has not ended,
// and releases its timer and parent registration. Call it when done.
func (c *Ctx) Cancel() {
	if c.armed.Load() {
		c.stdCancel()
		return
	}
	c.mu.Lock()
	if c.std != nil {
		cancel := c.stdCancel
		c.mu.Unlock()
		cancel()
		return
	}
	if c.err == nil {
		// As for a standard context: a parent that has ended has ended c
		// already; a deadline whose timer has not run yet has not.
		own := !c.deadline.IsZero() && !time.Now().Before(c.deadline)
		perr := c.parent.Err()
		if perr != nil && (!own || c.parentMayBeFirst(perr)) {
			c.endByParentLocked(perr)
		} else if own && (c.timer == nil || perr != nil) {
			c.err, c.errCause = context.DeadlineExceeded, c.cause
		} else {
			c.err, c.errCause = context.Canceled, context.Canceled
		}
	}
	c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}

// ExpiredOwn reports whether the context ended because its own deadline
// passed — not because an ancestor ended, nor because Cancel was called.
// An ancestor whose deadline is no later than c's own ends c first, so c
// has not expired on its own then.
func (c *Ctx) ExpiredOwn() bool {
	if c.deadline.IsZero() || c.Err() == nil || c.ownCause() != c.cause {
		return false
	}
	pd, ok := c.parent.Deadline()
	return !ok || c.deadline.Before(pd)
}

// ownCause returns the cause c ended with (nil while it has not).
func (c *Ctx) ownCause() error {
	if c.armed.Load() {
		return context.Cause(c.std)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std != nil {
		return context.Cause(c.std)
	}
	_, cause := c.endLocked()
	return cause
}

// String describes the context.
func (c *Ctx) String() string { return "lazyctx.Ctx" }

// Cause returns why ctx ended, like context.Cause; for a Ctx it reads the
// cause without arming it (context.Cause would arm it to find the cause).
func Cause(ctx context.Context) error {
	if c, ok := ctx.(*Ctx); ok {
		if c.Err() == nil {
			return nil
		}
		return c.ownCause()
	}
	return context.Cause(ctx)
}
