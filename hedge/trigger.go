package hedge

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// Trigger decides how long a try may run before a hedge is spawned.
// Implementations must be safe for concurrent use.
type Trigger interface {
	// Delay returns the delay for the attempt about to start; ok=false
	// means "do not hedge this attempt".
	Delay() (d time.Duration, ok bool)
	// Name names the trigger in events ("fixed", "latency").
	Name() string
}

// LatencyObserver is implemented by triggers that learn from latencies:
// the decorator reports every try that completed on its own.
type LatencyObserver interface {
	ObserveLatency(d time.Duration)
}

// FixedDelay hedges every attempt that runs longer than d.
type FixedDelay time.Duration

// Delay returns d; a non-positive d disables hedging.
func (f FixedDelay) Delay() (time.Duration, bool) { return time.Duration(f), f > 0 }

// String describes the trigger, as in "fixed 20ms".
func (f FixedDelay) String() string { return "fixed " + time.Duration(f).String() }

// Name returns "fixed".
func (FixedDelay) Name() string { return "fixed" }

// LatencyTrigger hedges an attempt when it outlives a quantile of the
// key's recent latencies. Until MinSamples latencies are known it uses its
// fallback delay (none: no hedging until warm). The quantile is
// recomputed every few samples, not per call.
type LatencyTrigger struct {
	tracker    *LatencyTracker
	q          float64
	minSamples int
	fallback   time.Duration
	floor      time.Duration

	cachedAt atomic.Uint64 // tracker.observed() when cached was computed, +1
	cached   atomic.Int64
}

// MinSamples (NewLatencyTrigger) sets how many samples are needed before the quantile is
// trusted (default 20).
func MinSamples(n int) Option { return option(func(t *LatencyTrigger) { t.minSamples = n }) }

// Fallback (NewLatencyTrigger) sets the delay used before MinSamples samples exist; 0 (the
// default) means do not hedge until then.
func Fallback(d time.Duration) Option { return option(func(t *LatencyTrigger) { t.fallback = d }) }

// Floor (NewLatencyTrigger) sets the least delay the trigger returns (default 1ms), so a very
// fast key does not hedge on scheduler noise.
func Floor(d time.Duration) Option { return option(func(t *LatencyTrigger) { t.floor = d }) }

// recomputeEvery is how many new samples make the cached quantile stale.
const recomputeEvery = 16

// NewLatencyTrigger returns a trigger at quantile q (0.99 for p99) of the
// latencies in tracker.
func NewLatencyTrigger(tracker *LatencyTracker, q float64, opts ...Option) *LatencyTrigger {
	t := &LatencyTrigger{tracker: tracker, q: q, minSamples: 20, floor: time.Millisecond}
	applyOptions(t, opts)
	if t.tracker == nil {
		t.tracker = NewLatencyTracker(0)
	}
	if !(t.q > 0 && t.q <= 1) {
		t.q = 0.99
	}
	return t
}

// Delay returns the tracked quantile (at least the floor), or the fallback
// before the tracker is warm.
func (t *LatencyTrigger) Delay() (time.Duration, bool) {
	if t.tracker.Count() < t.minSamples {
		return t.fallback, t.fallback > 0
	}
	seen := t.tracker.observed()
	at := t.cachedAt.Load()
	if at == 0 || seen-(at-1) >= recomputeEvery {
		d := t.tracker.Quantile(t.q)
		if d < t.floor {
			d = t.floor
		}
		t.cached.Store(int64(d))
		t.cachedAt.Store(seen + 1)
		return d, true
	}
	return time.Duration(t.cached.Load()), true
}

// ObserveLatency feeds the tracker.
func (t *LatencyTrigger) ObserveLatency(d time.Duration) { t.tracker.Observe(d) }

// Name returns "latency".
func (*LatencyTrigger) Name() string { return "latency" }

// String describes the trigger: its quantile and its fallback delay, as
// in "p99 of the key's latencies (fixed 10ms until 20 samples)".
func (t *LatencyTrigger) String() string {
	return fmt.Sprintf("p%s of the key's latencies (fixed %v until %d samples)",
		strconv.FormatFloat(t.q*100, 'g', 6, 64), t.fallback, t.minSamples)
}
