package middleware

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/recourse-go/recourse/clock"
)

// AdaptiveMinLimit (NewAdaptiveLimit) sets the lowest the limit may go (default 1; below 1
// is taken as 1).
func AdaptiveMinLimit(n int) Option { return option(func(l *AdaptiveLimit) { l.minLimit = n }) }

// AdaptiveMaxLimit (NewAdaptiveLimit) sets the highest the limit may go (default 1000; below
// the minimum is taken as the minimum, above 1<<30 as 1<<30).
func AdaptiveMaxLimit(n int) Option { return option(func(l *AdaptiveLimit) { l.maxLimit = n }) }

// AdaptiveInitialLimit (NewAdaptiveLimit) sets the limit to start from (default 20, clamped
// to the minimum and maximum).
func AdaptiveInitialLimit(n int) Option { return option(func(l *AdaptiveLimit) { l.initial = n }) }

// AdaptiveMaxWait (NewAdaptiveLimit) sets how long a try may wait for room (default 0:
// refused at once; negative is taken as 0).
func AdaptiveMaxWait(d time.Duration) Option { return option(func(l *AdaptiveLimit) { l.maxWait = d }) }

// AdaptiveWindow (NewAdaptiveLimit) sets how much the limit sees before it moves: a window
// of measurements ends once it holds at least samples released tries and
// has lasted at least minTime (defaults 20 and 20ms; samples below 1 is
// taken as 1, a negative minTime as 0).
func AdaptiveWindow(samples int, minTime time.Duration) Option {
	return option(func(l *AdaptiveLimit) { l.winSamples, l.winTime = samples, minTime })
}

// AdaptiveProbeInterval (NewAdaptiveLimit) sets how often the limit re-measures the
// dependency's latency without queueing (default 5s; 0 or less: never,
// the lowest latency ever seen stays the reference). See AdaptiveLimit.
func AdaptiveProbeInterval(d time.Duration) Option {
	return option(func(l *AdaptiveLimit) { l.probeEvery = d })
}

// Defaults of AdaptiveLimit.
const (
	defaultAdaptiveMin     = 1
	defaultAdaptiveMax     = 1000
	defaultAdaptiveInitial = 20
	defaultAdaptiveSamples = 20
	defaultAdaptiveWinTime = 20 * time.Millisecond
	defaultAdaptiveProbe   = 5 * time.Second
)

// AdaptiveLimit is a Limiter whose bound follows the dependency's
// latency, in the manner of TCP Vegas (as Netflix's concurrency-limits
// applies it to requests): it finds how many tries can run at once before
// they start to queue, and admits a few more than that.
//
// It keeps a reference latency — what a try takes when nothing queues —
// and, per window of measurements (see AdaptiveWindow), compares it with
// the window's average. By Little's law, in flight × (1 − reference /
// average) tries are queueing. The limit L aims at a small queue, between
// α = 10% and β = 20% of L (at least 1 and 2, at most 3 and 6 × log10 L,
// as in Vegas, for large limits): a queue up to α/2 grows it by β, one
// below α by max(1, log10 L); one above β shrinks it by half the excess
// over α (at least that much), so a limit far too high comes down in a
// few windows; in between it stays. A window in which one try in twenty
// or more was dropped (timed out or pushed back, see Limiter) shrinks it
// by a tenth. A window that never used half the limit leaves it alone:
// an idle key does not earn a limit it never tested.
//
// The reference is the lowest window average seen since the last probe.
// While the windows measure a queue of α or more (the limit is holding
// tries back), at most once per probe interval the limit probes: it
// halves until the tries admitted from then on have produced a window's
// worth of measurements, and halves again as long as that made latency
// fall by a fifth or more (tries were queueing). The last average becomes
// the reference — so that a dependency that got slower for good is
// measured as it now is rather than mistaken for a queue — and the limit
// returns to where it was. An idle window counts as a probe.
//
// The zero AdaptiveLimit is ready to use with the defaults.
type AdaptiveLimit struct {
	// configuration, fixed once set up
	minLimit, maxLimit, initial int
	maxWait                     time.Duration
	clock                       clock.Clock
	winSamples                  int
	winTime                     time.Duration
	probeEvery                  time.Duration
	full                        error

	permits permitPool

	mu       sync.Mutex
	ready    bool
	limit    float64
	inflight int
	seq      uint64 // admissions so far
	waiters  []*limitWaiter
	nwait    int // waiters not gone

	// the current window
	winStart   time.Time
	winN       int
	winSum     time.Duration
	winMaxIn   int
	winDrops   int
	reference  time.Duration // latency without queueing; 0: none yet
	nextProbe  time.Time
	probing    bool
	probeFrom  uint64 // admissions from here on are measured by the probe
	probeN     int
	probeSum   time.Duration
	probeSaved float64       // the limit before the probe
	probeLast  time.Duration // the average before this probe step
	smooth     time.Duration // moving average of the window averages
	queued     bool          // the last window measured a queue of α or more
}

// limitWaiter is a try waiting for room.
type limitWaiter struct {
	ch      chan struct{} // receives once room is given
	granted bool          // room was given (under mu)
	seq     uint64        // admission number, once granted
	gone    bool          // gave up waiting (under mu)
}

// maxAdaptiveLimit is the largest limit an AdaptiveLimit takes: larger
// options are clamped to it.
const maxAdaptiveLimit = 1 << 30

func (l *AdaptiveLimit) setClock(c clock.Clock) { l.clock = c }

// NewAdaptiveLimit returns an adaptive limit configured by opts.
func NewAdaptiveLimit(opts ...Option) *AdaptiveLimit {
	l := &AdaptiveLimit{}
	applyOptions(l, opts)
	l.setUp()
	return l
}

// setUp fills in defaults and clamps; called once, under mu or before
// l is shared.
func (l *AdaptiveLimit) setUp() {
	if l.ready {
		return
	}
	l.ready = true
	if l.minLimit == 0 {
		l.minLimit = defaultAdaptiveMin
	}
	// Limits are kept as float64 and back: past maxAdaptiveLimit the
	// conversion would overflow, and no process runs more tries at once.
	l.minLimit = min(max(l.minLimit, 1), maxAdaptiveLimit)
	if l.maxLimit == 0 {
		l.maxLimit = defaultAdaptiveMax
	}
	l.maxLimit = min(max(l.maxLimit, l.minLimit), maxAdaptiveLimit)
	if l.initial == 0 {
		l.initial = defaultAdaptiveInitial
	}
	l.initial = min(max(l.initial, l.minLimit), l.maxLimit)
	l.maxWait = max(l.maxWait, 0)
	if l.clock == nil {
		l.clock = clock.Real{}
	}
	if l.winSamples == 0 && l.winTime == 0 {
		l.winSamples, l.winTime = defaultAdaptiveSamples, defaultAdaptiveWinTime
	}
	l.winSamples = max(l.winSamples, 1)
	l.winTime = max(l.winTime, 0)
	if l.probeEvery == 0 {
		l.probeEvery = defaultAdaptiveProbe
	}
	l.limit = float64(l.initial)
	l.full = fmt.Errorf("%w (adaptive limit)", ErrBulkheadFull)
	l.winStart = l.clock.Now()
	l.nextProbe = l.winStart // the first window with a reference may probe at once
}

// Limit returns the current limit.
func (l *AdaptiveLimit) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setUp()
	return int(l.limit)
}

// InFlight returns how many admitted tries have not been released yet.
func (l *AdaptiveLimit) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// referenceNow returns the latency the limit takes for "no queueing" (0
// until the first window has ended).
func (l *AdaptiveLimit) referenceNow() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reference
}

// Acquire implements Limiter. Waiters are admitted in the order they
// came; a try arriving while others wait queues behind them.
func (l *AdaptiveLimit) Acquire(ctx context.Context) (func(dropped bool), error) {
	if ctx.Err() != nil {
		return nil, errWaiting(ctx)
	}
	l.mu.Lock()
	l.setUp()
	if l.nwait == 0 && l.inflight < int(l.limit) {
		seq := l.admitLocked()
		l.mu.Unlock()
		return l.permit(seq), nil
	}
	if l.maxWait <= 0 {
		l.mu.Unlock()
		return nil, l.full
	}
	w := &limitWaiter{ch: make(chan struct{}, 1)}
	l.waiters = append(l.waiters, w)
	l.nwait++
	l.mu.Unlock()

	t := l.clock.NewTimer(l.maxWait)
	var err error
	select {
	case <-w.ch:
		t.Stop()
		return l.permit(w.seq), nil
	case <-ctx.Done():
		t.Stop()
		err = errWaiting(ctx)
	case <-t.C():
		err = l.full
	}
	l.mu.Lock()
	if w.granted {
		// Room came as we gave up: give it back, unmeasured.
		l.inflight--
		l.grantLocked()
		l.mu.Unlock()
		return nil, err
	}
	w.gone = true
	l.nwait--
	l.mu.Unlock()
	return nil, err
}

// admitLocked counts one admission and returns its number.
func (l *AdaptiveLimit) admitLocked() uint64 {
	l.inflight++
	l.seq++
	l.winMaxIn = max(l.winMaxIn, l.inflight)
	return l.seq
}

// permit returns a held permit numbered seq, started now.
func (l *AdaptiveLimit) permit(seq uint64) func(bool) {
	p := l.permits.get(l)
	p.seq, p.start = seq, l.clock.Now()
	return p.fn
}

// releasePermit ends one admitted try and learns from its latency.
func (l *AdaptiveLimit) releasePermit(p *permit, dropped bool) {
	now := l.clock.Now()
	rtt := max(now.Sub(p.start), 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	l.sampleLocked(now, rtt, p.seq, dropped)
	l.grantLocked()
}

// grantLocked hands room to waiters, first come first served.
func (l *AdaptiveLimit) grantLocked() {
	for l.nwait > 0 && l.inflight < int(l.limit) {
		w := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		if w.gone {
			continue
		}
		l.nwait--
		w.seq = l.admitLocked()
		w.granted = true
		w.ch <- struct{}{}
	}
	if l.nwait == 0 {
		// Drop gone waiters left in the queue.
		for i := range l.waiters {
			l.waiters[i] = nil
		}
		l.waiters = l.waiters[:0]
	}
}

// sampleLocked adds one released try to the window (or the probe) and
// moves the limit when the window is complete.
func (l *AdaptiveLimit) sampleLocked(now time.Time, rtt time.Duration, seq uint64, dropped bool) {
	if l.probing {
		if seq < l.probeFrom {
			return // admitted before this probe step: may have queued
		}
		l.probeN++
		l.probeSum += rtt
		if l.probeN < l.winSamples {
			return
		}
		avg := max(l.probeSum/time.Duration(l.probeN), 1)
		if avg*5 < l.probeLast*4 && l.limit > float64(l.minLimit) {
			// Latency fell with concurrency: tries were queueing, and
			// may still be. Halve again and measure anew.
			l.probeLast = avg
			l.probeStepLocked()
			return
		}
		l.reference, l.smooth = avg, avg
		l.limit = l.probeSaved
		l.probing = false
		l.nextProbe = now.Add(l.probeEvery)
		l.resetWindowLocked(now)
		l.grantLocked()
		return
	}
	l.winN++
	l.winSum += rtt
	if dropped {
		l.winDrops++
	}
	if l.winN < l.winSamples || now.Sub(l.winStart) < l.winTime {
		return
	}
	l.updateLocked(now)
	l.resetWindowLocked(now)
	if l.probeEvery > 0 && l.queued && !now.Before(l.nextProbe) {
		l.probing = true
		l.probeSaved = l.limit
		l.probeStepLocked()
	}
}

// probeStepLocked halves the limit and measures the tries admitted from
// now on.
func (l *AdaptiveLimit) probeStepLocked() {
	l.probeFrom = l.seq + 1
	l.probeN, l.probeSum = 0, 0
	l.limit = math.Max(float64(l.minLimit), math.Floor(l.limit/2))
}

// resetWindowLocked starts a new window at now.
func (l *AdaptiveLimit) resetWindowLocked(now time.Time) {
	l.winStart, l.winN, l.winSum, l.winDrops = now, 0, 0, 0
	l.winMaxIn = l.inflight
}

// updateLocked moves the limit by what the finished window measured.
func (l *AdaptiveLimit) updateLocked(now time.Time) {
	avg := max(l.winSum/time.Duration(l.winN), 1)
	l.probeLast = avg
	lim := l.limit
	idle := float64(l.winMaxIn)*2 < lim
	l.queued = false
	// The reference moves on a smoothed average: the lowest of many
	// noisy window averages would sit below the true latency.
	if l.smooth <= 0 {
		l.smooth = avg
	} else {
		l.smooth = (4*l.smooth + avg) / 5
	}
	if l.reference <= 0 || l.smooth < l.reference {
		l.reference = l.smooth
	}
	if idle && l.probeEvery > 0 {
		// Nothing queued in an idle window: it is as good as a probe.
		l.reference = l.smooth
		l.nextProbe = now.Add(l.probeEvery)
	}
	switch {
	case l.winDrops*20 >= l.winN: // 5% or more dropped
		lim *= 0.9
	case idle:
		return
	default:
		inflight := math.Min(lim, float64(l.winMaxIn))
		queue := inflight * (1 - float64(l.reference)/float64(avg))
		g := math.Max(1, math.Log10(lim))
		alpha := min(max(lim/10, 1), 3*g)
		beta := min(max(lim/5, 2), 6*g)
		l.queued = queue >= alpha
		switch {
		case queue <= alpha/2:
			lim += beta
		case queue < alpha:
			lim += g
		case queue > beta:
			lim -= max(g, (queue-alpha)/2) // half the excess: fast when far off
		}
	}
	l.limit = math.Min(math.Max(lim, float64(l.minLimit)), float64(l.maxLimit))
	l.grantLocked()
}
