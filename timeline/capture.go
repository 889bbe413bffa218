package timeline

import (
	"context"

	"github.com/recourse-go/recourse/internal/callctx"
)

// Capture holds the timeline of a call made with a context from Record.
type Capture struct {
	slot callctx.Slot[*Timeline]
}

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
	return context.WithValue(ctx, callctx.CaptureKey{}, &c.slot), c
}

// Timeline returns the captured timeline, or nil if no call has finished.
func (c *Capture) Timeline() *Timeline {
	if c == nil {
		return nil
	}
	return c.slot.Get()
}
