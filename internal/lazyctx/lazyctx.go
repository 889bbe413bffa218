// Package lazyctx provides a cancelable context with an optional deadline
// that costs one allocation until somebody waits on it.
//
// context.WithTimeout arms a runtime timer, registers with its parent and
// allocates a done channel and a cancel closure at once — five or six
// allocations per deadline, paid on every try even when the operation
// never looks at its context. Ctx does that work only when Done or
// AfterFunc is first called: until then Err and Deadline are answered by
// comparing the clock with the deadline and asking the parent. Operations
// that wait on their context (network calls) get a real channel, timer
// and parent registration; those that never wait pay for a struct.
//
// Ctx implements the AfterFunc method the context package looks for, so
// standard contexts derived from it never need a goroutine to propagate
// cancellation.
package lazyctx

import (
	"context"
	"sync"
	"time"

	"github.com/recourse-go/recourse/endpoint"
)

// Ctx is a context with its own cancellation and optional deadline.
type Ctx struct {
	parent   context.Context
	deadline time.Time // zero: none of its own
	cause    error     // reported by Cause when the deadline passes

	mu         sync.Mutex
	done       chan struct{} // made by the first Done
	err        error         // set once, when the context ends
	errCause   error
	timer      *time.Timer
	stopParent func() bool
	funcs      []*afterFunc
}

type afterFunc struct{ f func() }

type key struct{}

// WithCancel returns a context that ends when Cancel is called or parent ends.
func WithCancel(parent context.Context) *Ctx {
	return &Ctx{parent: parent}
}

// WithTimeout returns a context that also ends d from now; Cause then
// reports cause (context.DeadlineExceeded if nil).
func WithTimeout(parent context.Context, d time.Duration, cause error) *Ctx {
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	return &Ctx{parent: parent, deadline: time.Now().Add(d), cause: cause}
}

// Deadline returns the earlier of its own deadline and its parent's.
func (c *Ctx) Deadline() (time.Time, bool) {
	pd, ok := c.parent.Deadline()
	if c.deadline.IsZero() || (ok && pd.Before(c.deadline)) {
		return pd, ok
	}
	return c.deadline, true
}

// Value returns c for its own key and asks the parent otherwise.
func (c *Ctx) Value(k any) any {
	if k == (key{}) {
		return c
	}
	return c.parent.Value(k)
}

// Err reports why the context ended, or nil. A deadline that has passed
// or a parent that has ended ends it here, even if nobody waited.
func (c *Ctx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if perr := c.parent.Err(); perr != nil {
		c.finish(perr, Cause(c.parent))
	} else if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		c.finish(context.DeadlineExceeded, c.cause)
	} else {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done returns a channel closed when the context ends, arming the timer
// and the parent registration the first time it is called.
func (c *Ctx) Done() <-chan struct{} {
	c.mu.Lock()
	if c.done != nil {
		d := c.done
		c.mu.Unlock()
		return d
	}
	c.done = make(chan struct{})
	d := c.done
	if c.err != nil {
		close(c.done)
		c.mu.Unlock()
		return d
	}
	if !c.deadline.IsZero() {
		c.timer = time.AfterFunc(time.Until(c.deadline), c.expire)
	}
	c.mu.Unlock()
	if c.parent.Done() != nil {
		stop := context.AfterFunc(c.parent, c.parentDone)
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			stop()
		} else {
			c.stopParent = stop
			c.mu.Unlock()
		}
	}
	return d
}

// AfterFunc calls f in its own goroutine once the context ends, unless
// the returned stop is called first (it reports whether it stopped f).
// The context package uses it for contexts derived from c.
func (c *Ctx) AfterFunc(f func()) func() bool {
	c.Done() // make sure the end will be noticed
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.funcs = append(c.funcs, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.funcs {
			if x == a {
				c.funcs = append(c.funcs[:i], c.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

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

// Cancel ends the context with context.Canceled, if it has not ended,
// and releases its timer and parent registration. Call it when done.
func (c *Ctx) Cancel() { c.finish(context.Canceled, context.Canceled) }

func (c *Ctx) expire() { c.finish(context.DeadlineExceeded, c.cause) }

func (c *Ctx) parentDone() { c.finish(c.parent.Err(), Cause(c.parent)) }

func (c *Ctx) finish(err, cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err, c.errCause = err, cause
	if c.done != nil {
		close(c.done)
	}
	timer, stop, funcs := c.timer, c.stopParent, c.funcs
	c.timer, c.stopParent, c.funcs = nil, nil, nil
	c.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	if stop != nil {
		stop()
	}
	for _, a := range funcs {
		go a.f()
	}
}

// String describes the context.
func (c *Ctx) String() string { return "lazyctx.Ctx" }

// Cause returns why ctx ended like context.Cause, but also sees through
// Ctx values, whose causes context.Cause cannot read on every Go version.
func Cause(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	if c, ok := ctx.Value(key{}).(*Ctx); ok {
		if c.Err() != nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.errCause
		}
	}
	return context.Cause(ctx)
}
