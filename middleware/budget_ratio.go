package middleware

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/recourse-go/recourse/clock"
)

// ratioBudget lets retries and hedges be at most a fraction of first tries
// over a sliding window, plus a small floor per second so that a quiet key
// can still retry — the retry budget of the SRE book and of gRPC's retry
// throttling. Unlike a token bucket it scales with traffic: at 10 %, a
// dependency that fails everything receives at most 1.1× its normal load.
//
// The window is split into 10 slots that expire one at a time. Any clock
// reading is accepted: slots are counted from a reading of the clock (so
// the real clock's monotonic reading is used), a clock that steps back by
// less than the window keeps the window's accounting, and a jump by more
// than the window in either direction (or to a reading time.Time.Sub
// cannot measure, such as the zero time) starts a fresh window, in which
// only the floor allows extras until first tries are counted again.
type ratioBudget struct {
	ratio  float64
	floor  float64 // extra tries per second always allowed
	window time.Duration
	slot   time.Duration
	clock  clock.Clock

	mu    sync.Mutex
	epoch time.Time // slot indices count from here
	high  int64     // highest slot index seen since epoch
	slots [ratioSlots]ratioSlot
}

const ratioSlots = 10

type ratioSlot struct {
	index  int64 // which slot period this holds
	firsts float64
	extras float64
}

// Ratio (NewRatioBudget) sets the allowed extras per first try (default 0.1).
func Ratio(r float64) Option { return option(func(b *ratioBudget) { b.ratio = r }) }

// RatioFloor (NewRatioBudget) sets extra tries per second allowed regardless of traffic
// (default 1).
func RatioFloor(perSecond float64) Option {
	return option(func(b *ratioBudget) { b.floor = perSecond })
}

// RatioWindow (NewRatioBudget) sets the sliding window (default 10s).
func RatioWindow(d time.Duration) Option { return option(func(b *ratioBudget) { b.window = d }) }

func (b *ratioBudget) setClock(c clock.Clock) { b.clock = c }

// NewRatioBudget returns a ratio budget: 10 % over 10s with a floor of
// 1 extra try per second unless opts say otherwise.
//
// It lets retries and hedges be at most a fraction of first tries over a
// sliding window, plus a small floor per second so that a quiet key can
// still retry — the retry budget of the SRE book and of gRPC's retry
// throttling. Unlike a token bucket it scales with traffic: at 10 %, a
// dependency that fails everything receives at most 1.1× its normal load.
// Any clock reading is accepted; a jump by more than the window, either
// way, starts a fresh window in which only the floor allows extras.
func NewRatioBudget(opts ...Option) Budget { return newRatioBudget(opts...) }

// newRatioBudget is NewRatioBudget with its concrete type.
func newRatioBudget(opts ...Option) *ratioBudget {
	b := &ratioBudget{ratio: 0.1, floor: 1, window: 10 * time.Second, clock: clock.Real{}}
	applyOptions(b, opts)
	if b.ratio < 0 || b.ratio != b.ratio {
		b.ratio = 0
	}
	if b.floor < 0 || b.floor != b.floor {
		b.floor = 0
	}
	if b.window < ratioSlots*time.Millisecond {
		b.window = ratioSlots * time.Millisecond
	}
	b.slot = b.window / ratioSlots
	b.epoch = b.clock.Now()
	return b
}

// Ratio budget decision reasons (Decision.Reason).
const (
	reasonRatioAvailable = "ratio_available"
	reasonRatioExceeded  = "ratio_exceeded"
)

// Take counts a first try, or admits a retry or hedge if extras in the
// window stay within ratio × firsts + floor × window.
func (b *ratioBudget) Take(_ context.Context, t Try) Decision {
	at := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.index(at)
	pos := now % ratioSlots
	if pos < 0 {
		pos += ratioSlots
	}
	cur := &b.slots[pos]
	if cur.index != now {
		*cur = ratioSlot{index: now}
	}
	if t.Kind == TryFirst {
		cur.firsts++
		return Decision{Allowed: true, Reason: reasonFirstTry}
	}
	var firsts, extras float64
	for i := range b.slots {
		// Slots after now are kept after a small backward step.
		if s := &b.slots[i]; s.index > now-ratioSlots && s.index <= b.high {
			firsts += s.firsts
			extras += s.extras
		}
	}
	cost := float64(costOf(t))
	if extras+cost > b.ratio*firsts+b.floor*b.window.Seconds() {
		return Decision{Allowed: false, Reason: reasonRatioExceeded}
	}
	cur.extras += cost
	return Decision{Allowed: true, Reason: reasonRatioAvailable}
}

// index returns the slot index of at, starting a fresh window when at is
// a window or more away from the latest reading, either way, or too far
// from the epoch to measure. b.mu is held.
func (b *ratioBudget) index(at time.Time) int64 {
	d := at.Sub(b.epoch)
	now := int64(d / b.slot)
	if d%b.slot < 0 {
		now-- // floor, not truncation, before the epoch
	}
	if d == math.MinInt64 || d == math.MaxInt64 || now >= b.high+ratioSlots || now <= b.high-ratioSlots {
		b.epoch, b.high, b.slots = at, 0, [ratioSlots]ratioSlot{}
		return 0
	}
	b.high = max(b.high, now)
	return now
}
