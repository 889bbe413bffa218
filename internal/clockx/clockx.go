// Package clockx holds the helpers recourse's decorators and providers
// use on a clock.Clock: defaulting a nil clock and sleeping on one. Users
// pass clocks (clock.Real, clock.Fake) through options; they need neither.
package clockx

import (
	"context"
	"time"

	"github.com/recourse-go/recourse/clock"
)

// Or returns c, or clock.Real when c is nil.
func Or(c clock.Clock) clock.Clock {
	if c == nil {
		return clock.Real{}
	}
	return c
}

// Sleep waits for d on clock c, returning early with ctx.Err() when ctx is
// done first. A non-positive d returns at once (still reporting a done ctx).
func Sleep(ctx context.Context, c clock.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := Or(c).NewTimer(d)
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
