package hedge

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// LatencyTracker keeps the latencies of a key's most recent tries and
// answers quantile queries over them. Observe is lock-free and allocation
// free: samples go into a ring, and a log-linear histogram (8 buckets per
// power of two of microseconds, ≤ 12.5 % relative error) is kept in step
// with it, so a quantile is a walk over a few hundred counters.
type LatencyTracker struct {
	ring   []atomic.Int32 // histogram bucket of each recent sample, -1 if empty
	pos    atomic.Uint64  // samples observed so far
	counts [numBuckets]atomic.Int64
}

const (
	subBits    = 3
	subBuckets = 1 << subBits
	maxExp     = 40 // 2^41 µs ≈ 25 days: anything slower lands in the last bucket
	numBuckets = subBuckets + (maxExp-subBits+1)*subBuckets
)

// DefaultSamples is the number of recent samples a tracker keeps.
const DefaultSamples = 1024

// NewLatencyTracker returns a tracker over the last window samples
// (DefaultSamples when window ≤ 0).
func NewLatencyTracker(window int) *LatencyTracker {
	if window <= 0 {
		window = DefaultSamples
	}
	t := &LatencyTracker{ring: make([]atomic.Int32, window)}
	for i := range t.ring {
		t.ring[i].Store(-1)
	}
	return t
}

// Observe adds one latency sample, evicting the oldest when full.
func (t *LatencyTracker) Observe(d time.Duration) {
	b := int32(bucketOf(d))
	slot := (t.pos.Add(1) - 1) % uint64(len(t.ring))
	if old := t.ring[slot].Swap(b); old >= 0 {
		t.counts[old].Add(-1)
	}
	t.counts[b].Add(1)
}

// Count returns the number of samples in the window.
func (t *LatencyTracker) Count() int {
	n := t.pos.Load()
	if n > uint64(len(t.ring)) {
		return len(t.ring)
	}
	return int(n)
}

// observed returns the number of samples ever observed.
func (t *LatencyTracker) observed() uint64 { return t.pos.Load() }

// Quantile returns the q-quantile (0 < q ≤ 1) of the window's samples,
// rounded up to its histogram bucket's upper bound, or 0 with no samples.
func (t *LatencyTracker) Quantile(q float64) time.Duration {
	var total int64
	for i := range t.counts {
		total += t.counts[i].Load()
	}
	if total <= 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.9999999)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range t.counts {
		seen += t.counts[i].Load()
		if seen >= rank {
			return upperBound(i)
		}
	}
	return upperBound(numBuckets - 1)
}

// bucketOf maps a latency to its histogram bucket; a negative one (a
// clock stepped back) counts as zero.
func bucketOf(d time.Duration) int {
	if d < 0 {
		d = 0
	}
	u := uint64(d / time.Microsecond)
	if u < subBuckets {
		return int(u)
	}
	exp := bits.Len64(u) - 1
	if exp > maxExp {
		return numBuckets - 1
	}
	sub := (u >> (exp - subBits)) & (subBuckets - 1)
	return subBuckets + (exp-subBits)*subBuckets + int(sub)
}

// upperBound returns the smallest latency above bucket b.
func upperBound(b int) time.Duration {
	if b < subBuckets {
		return time.Duration(b+1) * time.Microsecond
	}
	exp := (b-subBuckets)/subBuckets + subBits
	sub := uint64((b - subBuckets) % subBuckets)
	lower := (subBuckets + sub) << (exp - subBits)
	return time.Duration(lower+(1<<(exp-subBits))) * time.Microsecond
}
