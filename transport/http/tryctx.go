package rhttp

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/internal/lazyctx"
)

// tryContext is the context a try's request is sent under. It carries
// the values and deadline of the chain's context (parent) and ends when
// the context it follows ends — parent, or the caller's once the try is
// detached — or when the try ends it (release, a drain cut). A response
// that outlives the chain's contexts (a final failed status, returned to
// the caller after the chain cancelled its tries) is detached, so that
// its body stays readable. Its Err is the followed context's
// (context.DeadlineExceeded when a deadline ended it, as HTTP/2 reports),
// its cause the followed context's cause.
//
// It is lazy: most tries are never waited on by anyone but a transport
// that watches its request's context (an in-memory RoundTripper, a cache,
// a mock never does), so until somebody calls Done, derives a context
// from it or asks the context package for its cause, it is a few fields
// of the try: Err asks the followed context, and an end of the try's own
// is recorded under the mutex, unless the followed context has ended by
// then (it came first). At that moment the context arms: it builds the
// standard context it stands for, and answers Done, Err and the cause from
// it from then on:
//
//   - when the chain added no cancellation to the caller's (parent has
//     the caller's Done channel and deadline, and so the try is never
//     detached), a plain child of parent, which the context package
//     cancels with parent, synchronously;
//   - otherwise a cancelable child of a controlling context of c's own
//     (control), which has parent's values and ends when c does: c
//     follows parent through context.AfterFunc, so that detaching can
//     move it to the caller's context;
//   - a context that has ended already: the same child, of a control
//     that has ended.
//
// The context package registers the standard context with its control
// through the control's AfterFunc method, and c runs that registration
// from its own end, synchronously; the context package then cancels the
// standard context with the control's Err and cause — c's, so a standard
// context and everything derived from it end with c's error
// (context.DeadlineExceeded when a deadline ended it), as children of a
// standard context do, not with context.Canceled.
//
// The context package finds that standard context (through Value) when it
// derives a context from a tryContext or reads its cause, so derived
// contexts join the standard tree and context.Cause reads the standard
// cause.
type tryContext struct {
	parent context.Context // the chain's context: values and deadline
	caller context.Context // the context of the request passed to RoundTrip

	armed atomic.Bool // std is set; read without mu after this
	child bool        // std is a child of parent, and its Err is the one (set before armed)

	mu       sync.Mutex
	detached bool // it follows caller (and its own timer), no longer parent
	ended    bool // err and cause are set
	err      error
	cause    error
	std      context.Context         // the standard context, once armed
	cancel   context.CancelCauseFunc // std's
	onEnd    func()                  // ends std (its registration with control), until run or stopped
	stop     func() bool             // unlinks std from the followed context; nil if there is nothing to unlink
	timer    *time.Timer             // the deadline, once detached
}

// control is a tryContext seen as the parent of its standard context
// when that must not end with parent: a context with parent's values that
// ends when the tryContext does, with its error and cause, at no
// allocation of its own. Only the context package sees it, while the
// standard context is made (under the tryContext's mutex) and when the
// standard context's registration runs (once the tryContext has ended,
// from the goroutine that ended it). Its methods take no lock: they read
// what the tryContext set before either moment.
type control tryContext

var (
	// openDone and endedDone are a control's Done channels: the context
	// package reads only whether it is nil or closed when it makes the
	// standard context, and then registers through AfterFunc.
	openDone  = make(chan struct{})
	endedDone = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()
)

func (*control) Deadline() (time.Time, bool) { return time.Time{}, false }

func (k *control) Done() <-chan struct{} {
	if k.ended {
		return endedDone
	}
	return openDone
}

func (k *control) Err() error {
	if k.ended {
		return k.err
	}
	return nil
}

// Value returns parent's values. The context package's lookup of the
// nearest standard cancel context finds none while the control has not
// ended (so the standard context is registered through AfterFunc), and
// once it has, one that has ended with its cause, for context.Cause.
func (k *control) Value(key any) any {
	if !lazyctx.IsCancelCtxKey(key) {
		return k.parent.Value(key)
	}
	if !k.ended || k.cause == k.err {
		return nil // context.Cause reports Err
	}
	cc, cancel := context.WithCancelCause(context.Background())
	cancel(k.cause)
	return cc.Value(key)
}

// AfterFunc registers the standard context made on the control: end
// runs f, synchronously.
func (k *control) AfterFunc(f func()) func() bool {
	k.onEnd = f
	return (*tryContext)(k).stopOnEnd
}

func (k *control) String() string { return "rhttp.tryContext.control" }

// stopOnEnd unregisters onEnd (the standard context was cancelled by its
// own cancel function), reporting whether c had not ended.
func (c *tryContext) stopOnEnd() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	stopped := c.onEnd != nil && !c.ended
	c.onEnd = nil
	return stopped
}

// init sets up a zero tryContext under parent, for a request whose own
// context is caller.
func (c *tryContext) init(parent, caller context.Context) { c.parent, c.caller = parent, caller }

// Deadline returns the deadline of the chain's context.
func (c *tryContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// followedLocked returns the context whose end ends c: parent, or caller
// once detached.
func (c *tryContext) followedLocked() context.Context {
	if c.detached {
		return c.caller
	}
	return c.parent
}

// Value returns the value of the chain's context for key; the context
// package's lookup of the nearest standard cancel context arms c and
// finds its standard context.
func (c *tryContext) Value(key any) any {
	if lazyctx.IsCancelCtxKey(key) {
		return c.arm().Value(key)
	}
	return c.parent.Value(key)
}

// Done returns a channel closed when the context ends. The first call arms
// the context.
func (c *tryContext) Done() <-chan struct{} { return c.arm().Done() }

// Err returns why the context ended, or nil.
func (c *tryContext) Err() error {
	if c.armed.Load() {
		return c.armedErr()
	}
	c.mu.Lock()
	if c.std != nil { // armed since the check above
		c.mu.Unlock()
		return c.armedErr()
	}
	c.noticeLocked()
	err := c.err
	c.mu.Unlock()
	return err
}

func (c *tryContext) armedErr() error {
	if c.child {
		return c.std.Err()
	}
	if err := c.std.Err(); err != nil {
		return err // c's, which std ended with
	}
	// The followed context may have ended with its end still on its way
	// (context.AfterFunc calls in a goroutine of its own): it is
	// delivered now, so that Err reports it at once, as a standard
	// child's does, and Done is closed before Err returns.
	c.mu.Lock()
	c.noticeLocked()
	ended, err, onEnd := c.ended, c.err, c.onEndLocked()
	c.mu.Unlock()
	if !ended {
		return nil
	}
	if onEnd != nil {
		onEnd()
	}
	return err
}

// onEndLocked returns the registration that ends std once c has ended
// (nil if c has not). Whoever sees the end runs it before reporting it,
// so that std is done by then even if another goroutine is still about to
// run it: it cancels std, which is a no-op once std has ended. Called with
// mu held.
func (c *tryContext) onEndLocked() func() {
	if !c.ended {
		return nil
	}
	return c.onEnd
}

// endCause returns why the context ended (nil if it has not), like
// context.Cause, without arming it.
func (c *tryContext) endCause() error {
	if c.armed.Load() {
		return context.Cause(c.std)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std != nil {
		return context.Cause(c.std)
	}
	c.noticeLocked()
	return c.cause
}

// String describes the context, as the context package's own do.
func (c *tryContext) String() string { return "rhttp.tryContext" }

// noticeLocked records the end of the followed context, if it has ended
// and c has not. Called with mu held.
func (c *tryContext) noticeLocked() {
	if c.ended {
		return
	}
	f := c.followedLocked()
	if err := f.Err(); err != nil {
		c.ended, c.err, c.cause = true, err, causeOf(f)
	}
}

// arm builds the standard context c stands for, once, and returns it.
func (c *tryContext) arm() context.Context {
	if c.armed.Load() {
		return c.std
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std == nil {
		c.armLocked()
	}
	return c.std
}

func (c *tryContext) armLocked() {
	c.noticeLocked()
	switch {
	case c.ended:
		// Ended by the control at once, with c's error and cause.
		c.std, c.cancel = context.WithCancelCause((*control)(c))
	case !c.detached && c.sameEnd():
		c.std, c.cancel = context.WithCancelCause(c.parent)
		c.child = true
	default:
		c.std, c.cancel = context.WithCancelCause((*control)(c))
		c.followLocked()
	}
	c.armed.Store(true)
}

// sameEnd reports whether the chain added no cancellation to the
// caller's context: parent has its Done channel and its deadline, and so
// ends exactly when caller does.
func (c *tryContext) sameEnd() bool {
	if c.parent.Done() != c.caller.Done() {
		return false
	}
	d, ok := c.caller.Deadline()
	pd, pok := c.parent.Deadline()
	return ok == pok && d.Equal(pd)
}

// followLocked makes the armed context end when the followed context
// ends. One that can never end (no Done channel) is not followed: there
// is nothing to unlink later.
func (c *tryContext) followLocked() {
	f := c.followedLocked()
	if f.Done() == nil {
		c.stop = nil
		return
	}
	c.stop = context.AfterFunc(f, func() { c.end(f.Err(), causeOf(f)) })
}

// end ends the context with err and cause, unless it has ended — by the
// followed context too, if that has ended by now: it came first.
func (c *tryContext) end(err, cause error) {
	c.mu.Lock()
	c.noticeLocked()
	if !c.ended {
		c.ended, c.err, c.cause = true, err, cause
	}
	cancel, cause := c.cancel, c.cause
	onEnd := c.onEndLocked()
	c.mu.Unlock()
	switch {
	case onEnd != nil:
		onEnd() // std ends with c's error and cause
	case c.child && cancel != nil:
		cancel(cause) // a no-op if std has ended with parent
	}
}

// try owns one try's tryContext, and holds what the try needs beside it
// (its request, its response and body, its status error), so that a try
// costs one allocation of its own.
type try struct {
	ctx tryContext

	req  http.Request // the try's shallow copy of the caller's request
	resp response
	body body
	se   StatusError
}

func newTry(parent, caller context.Context) *try {
	tr := new(try)
	tr.start(parent, caller)
	return tr
}

// start sets up a zero try under parent, the chain's context, for a
// request whose own context is caller.
func (tr *try) start(parent, caller context.Context) { tr.ctx.init(parent, caller) }

// end ends the try's context with err and cause, unless it has ended.
func (tr *try) end(err, cause error) { tr.ctx.end(err, cause) }

// detach makes the try follow the caller's context (the context of the
// request passed to RoundTrip) and its deadline instead of the chain's
// context, which is cancelled when a failed try returns even if its
// response is handed to the caller. A try whose context has ended stays
// ended.
func (tr *try) detach() {
	c := &tr.ctx
	if c.sameEnd() {
		// The chain added no cancellation of its own (only values): the
		// context followed ends exactly when the caller's does, and the
		// chain cannot end it earlier.
		return
	}
	c.mu.Lock()
	if c.std == nil {
		c.noticeLocked() // the chain's context may have ended first
		if !c.ended {
			c.detached = true
		}
		c.armLocked() // the deadline needs its timer from now on
	} else {
		if c.stop != nil {
			stopped := c.stop()
			c.stop = nil
			if !stopped { // the chain's context has ended: its end is on its way
				c.mu.Unlock()
				return
			}
		}
		if !c.ended {
			if perr := c.parent.Err(); perr != nil {
				// Ended, and the end was not delivered yet (a parent that
				// is not a standard context tells its children late): it
				// came first.
				c.mu.Unlock()
				c.end(perr, causeOf(c.parent))
				return
			}
			c.detached = true
			c.followLocked()
		}
	}
	if d, ok := c.parent.Deadline(); ok && !c.ended {
		c.timer = time.AfterFunc(time.Until(d), func() {
			c.end(context.DeadlineExceeded, context.DeadlineExceeded)
		})
	}
	c.mu.Unlock()
}

// release ends the try's context and frees what follows it.
func (tr *try) release() {
	c := &tr.ctx
	if c.armed.Load() {
		c.mu.Lock()
		stop, timer := c.stop, c.timer
		c.stop, c.timer = nil, nil
		c.mu.Unlock()
		if stop != nil {
			stop()
		}
		if timer != nil {
			timer.Stop()
		}
	}
	c.end(context.Canceled, context.Canceled)
}
