package middleware

import (
	"sync"
	"time"
)

// slowBuckets is how many buckets the slow-call window has.
const slowBuckets = 10

// slowWindow counts a breaker's counted tries and its slow calls over a
// rolling window of slowBuckets buckets, read from the breaker's clock.
type slowWindow struct {
	mu       sync.Mutex
	period   time.Duration // one bucket
	rate     float64
	minCalls int
	buckets  [slowBuckets]slowBucket
	calls    int // sums over the live buckets
	slow     int
}

type slowBucket struct {
	epoch       int64 // clock reading / period when the bucket was filled
	live        bool  // epoch is set
	calls, slow int
}

func newSlowWindow(cfg BreakerConfig) *slowWindow {
	return &slowWindow{
		period:   max(cfg.Window/slowBuckets, time.Nanosecond),
		rate:     cfg.SlowCallRate,
		minCalls: cfg.MinRequests,
	}
}

// add counts one try at now, slow or not, and reports whether the window
// has reached the slow-call rate: once it does, the window starts again,
// as the breaker's own counts do when it opens.
func (w *slowWindow) add(now time.Time, slow bool) bool {
	epoch := now.UnixNano() / int64(w.period)
	w.mu.Lock()
	defer w.mu.Unlock()
	i := int(uint64(epoch) % slowBuckets)
	for j := range w.buckets {
		// Drop buckets older than the window (or from a clock that went
		// back by more than a bucket).
		if bk := &w.buckets[j]; bk.live && (epoch-bk.epoch >= slowBuckets || bk.epoch > epoch) {
			w.calls -= bk.calls
			w.slow -= bk.slow
			*bk = slowBucket{}
		}
	}
	bk := &w.buckets[i]
	if !bk.live || bk.epoch != epoch {
		w.calls -= bk.calls
		w.slow -= bk.slow
		*bk = slowBucket{epoch: epoch, live: true}
	}
	bk.calls++
	w.calls++
	if slow {
		bk.slow++
		w.slow++
	}
	if w.calls >= w.minCalls && w.slow > 0 && float64(w.slow) >= w.rate*float64(w.calls) {
		w.clear()
		return true
	}
	return false
}

// reset empties the window.
func (w *slowWindow) reset() {
	w.mu.Lock()
	w.clear()
	w.mu.Unlock()
}

func (w *slowWindow) clear() {
	w.buckets = [slowBuckets]slowBucket{}
	w.calls, w.slow = 0, 0
}
