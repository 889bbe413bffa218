package rhttp

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/internal/lazyctx"
)

// tryContext is the context a try's request is sent under: a
// context.WithCancelCause child of the chain's context (parent), which
// ends when parent does or when the try ends it (release, a drain cut).
// The chain does not cancel the contexts of a response that goes back to
// the caller — a successful one, or a final failed status — until its
// body is closed: the decorators hand their cancel functions to it
// (endpoint.CancelAdopter), so its body stays readable, bounded by the
// policy's deadlines, and a response the chain drops releases them when
// it is discarded.
//
// It is lazy: most tries are never waited on by anyone but a transport
// that watches its request's context (an in-memory RoundTripper, a cache,
// a mock never does), so until somebody calls Done, derives a context
// from it or asks the context package for its cause, it is a few fields
// of the try: Err asks parent, and an end of the try's own is recorded
// under the mutex, unless parent has ended by then (it came first). At
// that moment the context arms: it builds the standard context it stands
// for — a plain child of parent, which the context package cancels with
// parent, synchronously, or, once it has ended, a standard context that
// has ended the same way — and answers Done, Err and the cause from it
// from then on.
//
// The context package finds that standard context (through Value) when it
// derives a context from a tryContext or reads its cause, so derived
// contexts join the standard tree and context.Cause reads the standard
// cause.
type tryContext struct {
	parent context.Context // the chain's context: values, deadline and end

	armed atomic.Bool // std is set; read without mu after this

	mu     sync.Mutex
	ended  bool // err and cause are set (before arming)
	err    error
	cause  error
	std    context.Context         // the standard context, once armed
	cancel context.CancelCauseFunc // std's
}

// Deadline returns the deadline of the chain's context.
func (c *tryContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }

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
		return c.std.Err()
	}
	c.mu.Lock()
	if c.std != nil { // armed since the check above
		c.mu.Unlock()
		return c.std.Err()
	}
	c.noticeLocked()
	err := c.err
	c.mu.Unlock()
	return err
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

// noticeLocked records the end of parent, if it has ended and c has not.
// Called with mu held, before arming.
func (c *tryContext) noticeLocked() {
	if c.ended {
		return
	}
	if err := c.parent.Err(); err != nil {
		c.ended, c.err, c.cause = true, err, causeOf(c.parent)
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
	if !c.ended {
		c.std, c.cancel = context.WithCancelCause(c.parent)
		c.armed.Store(true)
		return
	}
	// Ended before anyone waited: a standard context that has ended the
	// same way, with parent's values but not its cancellation (parent may
	// end later, after c).
	base := context.WithoutCancel(c.parent)
	if errors.Is(c.err, context.DeadlineExceeded) {
		var cancel context.CancelFunc
		c.std, cancel = context.WithDeadlineCause(base, time.Time{}, c.cause)
		c.cancel = func(error) { cancel() }
	} else {
		c.std, c.cancel = context.WithCancelCause(base)
		c.cancel(c.cause)
	}
	c.armed.Store(true)
}

// end ends the context with err and cause, unless it has ended — by
// parent too, if that has ended by now: it came first. An armed context
// ends with context.Canceled and cause, as a standard child does.
func (c *tryContext) end(err, cause error) {
	c.mu.Lock()
	if c.std == nil {
		c.noticeLocked()
		if !c.ended {
			c.ended, c.err, c.cause = true, err, cause
		}
		c.mu.Unlock()
		return
	}
	cancel := c.cancel
	c.mu.Unlock()
	cancel(cause) // a no-op if std has ended
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

func newTry(parent context.Context) *try {
	tr := new(try)
	tr.start(parent)
	return tr
}

// start sets up a zero try under parent, the chain's context.
func (tr *try) start(parent context.Context) { tr.ctx.parent = parent }

// end ends the try's context with err and cause, unless it has ended.
func (tr *try) end(err, cause error) { tr.ctx.end(err, cause) }

// release ends the try's context, which unlinks it from parent.
func (tr *try) release() { tr.ctx.end(context.Canceled, context.Canceled) }
