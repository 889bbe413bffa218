package timeline

import (
	"context"
	"sync"
)

// Capture holds the timeline of a call made with a context from Record.
type Capture struct {
	mu sync.Mutex
	tl *Timeline
}

type captureKey struct{}

// Record returns a context that asks the next recourse call made with it to
// keep its timeline, and the Capture to read it from afterwards:
//
//	ctx, c := timeline.Record(ctx)
//	err := recourse.Do(ctx, "payments.Charge", charge)
//	for _, a := range c.Timeline().Attempts { … }
//
// If several calls use the context, the Capture keeps the last to finish.
func Record(ctx context.Context) (context.Context, *Capture) {
	c := &Capture{}
	return context.WithValue(ctx, captureKey{}, c), c
}

// CaptureFromContext returns the Capture installed by Record, or nil.
func CaptureFromContext(ctx context.Context) *Capture {
	c, _ := ctx.Value(captureKey{}).(*Capture)
	return c
}

// Timeline returns the captured timeline, or nil if no call has finished.
func (c *Capture) Timeline() *Timeline {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tl
}

// Set stores tl; the observe decorator calls it when a call finishes.
func (c *Capture) Set(tl *Timeline) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.tl = tl
	c.mu.Unlock()
}
