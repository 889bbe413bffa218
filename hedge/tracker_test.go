package hedge

import (
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestBucketsAreMonotonicAndTight(t *testing.T) {
	prev := time.Duration(0)
	for b := 0; b < numBuckets; b++ {
		ub := upperBound(b)
		if ub <= prev {
			t.Fatalf("upperBound(%d) = %v ≤ upperBound(%d) = %v", b, ub, b-1, prev)
		}
		prev = ub
	}
	for _, d := range []time.Duration{0, time.Microsecond, 7 * time.Microsecond, 9 * time.Microsecond, time.Millisecond, 1234567 * time.Microsecond, time.Hour} {
		b := bucketOf(d)
		if ub := upperBound(b); ub <= d {
			t.Fatalf("%v in bucket %d whose upper bound is %v", d, b, ub)
		}
		if b > 0 && upperBound(b-1) > d {
			t.Fatalf("%v in bucket %d but bucket %d ends at %v", d, b, b-1, upperBound(b-1))
		}
		if d >= 8*time.Microsecond && float64(upperBound(b)-d) > 0.125*float64(d)+float64(time.Microsecond) {
			t.Fatalf("bucket of %v too wide: upper bound %v", d, upperBound(b))
		}
	}
}

func TestQuantileMatchesExactWithinBucketError(t *testing.T) {
	tr := NewLatencyTracker(2048)
	var samples []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		d := time.Duration(r.ExpFloat64() * float64(2*time.Millisecond))
		if r.IntN(100) == 0 {
			d += 80 * time.Millisecond // the tail
		}
		samples = append(samples, d)
		tr.Observe(d)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := samples[int(q*float64(len(samples)))-1]
		got := tr.Quantile(q)
		if got < exact || float64(got) > 1.13*float64(exact)+float64(time.Microsecond) {
			t.Fatalf("q%.2f = %v, exact %v", q, got, exact)
		}
	}
}

func TestTrackerWindowEvictsOldSamples(t *testing.T) {
	tr := NewLatencyTracker(100)
	for i := 0; i < 100; i++ {
		tr.Observe(100 * time.Millisecond)
	}
	for i := 0; i < 100; i++ {
		tr.Observe(time.Millisecond)
	}
	if tr.Count() != 100 {
		t.Fatalf("count = %d", tr.Count())
	}
	if q := tr.Quantile(1); q > 2*time.Millisecond {
		t.Fatalf("max = %v: old samples were not evicted", q)
	}
}

func TestTrackerConcurrentObserve(t *testing.T) {
	tr := NewLatencyTracker(64)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				tr.Observe(time.Duration(i) * time.Microsecond)
				_ = tr.Quantile(0.99)
			}
		}()
	}
	wg.Wait()
	var total int64
	for i := range tr.counts {
		total += tr.counts[i].Load()
	}
	if total != 64 {
		t.Fatalf("histogram holds %d samples, window is 64", total)
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	tr := NewLatencyTracker(0)
	if n := testing.AllocsPerRun(1000, func() { tr.Observe(time.Millisecond) }); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}

func TestLatencyTriggerWarmsUp(t *testing.T) {
	tr := NewLatencyTracker(0)
	trig := NewLatencyTrigger(tr, 0.99, MinSamples(20))
	if _, ok := trig.Delay(); ok {
		t.Fatal("cold trigger without fallback must not hedge")
	}
	if d, ok := NewLatencyTrigger(tr, 0.99, Fallback(7*time.Millisecond)).Delay(); !ok || d != 7*time.Millisecond {
		t.Fatalf("fallback = %v %v", d, ok)
	}
	for i := 0; i < 19; i++ {
		trig.ObserveLatency(5 * time.Millisecond)
	}
	if _, ok := trig.Delay(); ok {
		t.Fatal("hedging before MinSamples")
	}
	trig.ObserveLatency(5 * time.Millisecond)
	d, ok := trig.Delay()
	if !ok || d < 5*time.Millisecond || d > 6*time.Millisecond {
		t.Fatalf("delay = %v %v, want ≈ p99 = 5ms", d, ok)
	}
	// The floor guards very fast keys.
	fast := NewLatencyTrigger(NewLatencyTracker(0), 0.99, MinSamples(1), Floor(2*time.Millisecond))
	fast.ObserveLatency(10 * time.Microsecond)
	if d, _ := fast.Delay(); d != 2*time.Millisecond {
		t.Fatalf("floored delay = %v", d)
	}
}
