// Package clock abstracts the passage of time for recourse.
//
// Every decorator that waits — retry backoff sleeps, hedge triggers, budget
// refills — takes a Clock instead of calling the time package directly, so
// tests can drive time with a Fake and stay deterministic and fast.
// Production code uses Real, the zero-size clock backed by package time.
//
// Deadlines carried by a context.Context are always real time: the context
// package arms its own timers. Fake time governs only the waits recourse
// performs itself.
package clock

import "time"

// Clock tells the time and makes timers.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine after d, unless the returned
	// Timer is stopped first. The Timer's C is nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the subset of *time.Timer recourse uses.
type Timer interface {
	// C returns the channel the timer fires on.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was active.
	Stop() bool
	// Reset rearms the timer to fire after d; it reports whether it was active.
	Reset(d time.Duration) bool
}

// Real is the Clock of package time. Its zero value is ready to use.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a timer backed by time.NewTimer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// AfterFunc returns a timer backed by time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
