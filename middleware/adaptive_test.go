package middleware

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
)

// queueDep is a dependency of c parallel servers in front of a FIFO
// queue, each taking base per try, run in virtual time against l. Every
// step, the offered load fills whatever l admits (an infinite backlog);
// time then moves to the next completion. It returns, per step, the
// latency of the tries that completed.
type queueDep struct {
	t        *testing.T
	f        *clock.Fake
	l        *AdaptiveLimit
	c        int
	base     time.Duration
	free     []time.Time // when each server is next free
	inflight []running
}

type running struct {
	done    time.Time
	start   time.Time
	release func(bool)
}

func newQueueDep(t *testing.T, l *AdaptiveLimit, f *clock.Fake, c int, base time.Duration) *queueDep {
	d := &queueDep{t: t, f: f, l: l, c: c, base: base}
	d.setServers(c)
	return d
}

// setServers changes the number of servers (keeping busy ones busy).
func (d *queueDep) setServers(c int) {
	now := d.f.Now()
	for len(d.free) < c {
		d.free = append(d.free, now)
	}
	d.free = d.free[:c]
	d.c = c
}

// run drives the backlog for dur of virtual time and returns the
// latencies of the tries that completed.
func (d *queueDep) run(dur time.Duration) []time.Duration {
	end := d.f.Now().Add(dur)
	var lats []time.Duration
	for d.f.Now().Before(end) {
		for {
			rel, err := d.l.Acquire(context.Background())
			if err != nil {
				break
			}
			now := d.f.Now()
			// FIFO: the server that frees first takes it.
			sort.Slice(d.free, func(i, j int) bool { return d.free[i].Before(d.free[j]) })
			start := d.free[0]
			if start.Before(now) {
				start = now
			}
			done := start.Add(d.base)
			d.free[0] = done
			d.inflight = append(d.inflight, running{done: done, start: now, release: rel})
		}
		if len(d.inflight) == 0 {
			d.t.Fatal("nothing admitted and nothing running")
		}
		sort.Slice(d.inflight, func(i, j int) bool { return d.inflight[i].done.Before(d.inflight[j].done) })
		next := d.inflight[0].done
		if wait := next.Sub(d.f.Now()); wait > 0 {
			d.f.Advance(wait)
		}
		for len(d.inflight) > 0 && !d.inflight[0].done.After(d.f.Now()) {
			r := d.inflight[0]
			d.inflight = d.inflight[1:]
			lats = append(lats, r.done.Sub(r.start))
			r.release(false)
		}
	}
	return lats
}

func mean(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(max(len(ds), 1))
}

func TestAdaptiveLimitFindsCapacityUnderBacklog(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	l := NewAdaptiveLimit(WithClock(f), AdaptiveInitialLimit(5))
	d := newQueueDep(t, l, f, 20, 10*time.Millisecond)
	d.run(5 * time.Second) // converge
	lats := d.run(5 * time.Second)
	got, avg := l.Limit(), mean(lats)
	t.Logf("limit %d, mean latency %v, reference %v, throughput %d/s", got, avg, l.referenceNow(), len(lats)/5)
	if got < 20 || got > 32 {
		t.Fatalf("limit %d, want near the 20 servers (20..32)", got)
	}
	if avg > 15*time.Millisecond {
		t.Fatalf("mean latency %v, want near the unloaded 10ms", avg)
	}
	if tput := len(lats) / 5; tput < 1800 {
		t.Fatalf("throughput %d/s, want ≥ 90%% of the 2000/s capacity", tput)
	}
}

func TestAdaptiveLimitFollowsCapacityDownAndUp(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	l := NewAdaptiveLimit(WithClock(f))
	d := newQueueDep(t, l, f, 40, 10*time.Millisecond)
	d.run(5 * time.Second)
	high := l.Limit()
	d.setServers(10) // lost three quarters of its servers
	d.run(5 * time.Second)
	low := l.Limit()
	lats := d.run(2 * time.Second)
	if low > 18 || mean(lats) > 16*time.Millisecond {
		t.Fatalf("after capacity 40 -> 10: limit %d (was %d), mean latency %v; want the limit to follow", low, high, mean(lats))
	}
	d.setServers(40)
	d.run(5 * time.Second)
	if up := l.Limit(); up < 40 {
		t.Fatalf("after capacity 10 -> 40: limit %d, want ≥ 40", up)
	}
}

// A dependency that got slower for good (not queueing: every try takes
// twice as long at any load) is re-measured by a probe, so the limit does
// not collapse.
func TestAdaptiveLimitProbeRemeasuresASlowerDependency(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	l := NewAdaptiveLimit(WithClock(f), AdaptiveProbeInterval(time.Second))
	d := newQueueDep(t, l, f, 20, 10*time.Millisecond)
	d.run(3 * time.Second)
	d.base = 20 * time.Millisecond
	d.run(10 * time.Second)
	lats := d.run(3 * time.Second)
	if got := l.Limit(); got < 10 { // a probe may have halved it just now
		t.Fatalf("limit %d after the dependency slowed to 20ms, want near 20 (reference %v)", got, l.referenceNow())
	}
	if tput := len(lats) / 3; tput < 900 {
		t.Fatalf("throughput %d/s, want ≥ 90%% of the 1000/s capacity", tput)
	}
	if ref := l.referenceNow(); ref < 18*time.Millisecond || ref > 25*time.Millisecond {
		t.Fatalf("reference %v, want the new 20ms", ref)
	}
}

func TestAdaptiveLimitIdleKeyDoesNotGrow(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	l := NewAdaptiveLimit(WithClock(f), AdaptiveInitialLimit(10))
	for i := 0; i < 1000; i++ {
		rel := mustAcquire(t, l)
		f.Advance(time.Millisecond)
		rel(false)
	}
	if got := l.Limit(); got != 10 {
		t.Fatalf("limit %d after 1000 tries one at a time, want 10 unchanged", got)
	}
}

func TestAdaptiveLimitDropsShrinkIt(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	l := NewAdaptiveLimit(WithClock(f), AdaptiveInitialLimit(100), AdaptiveWindow(10, 0), AdaptiveProbeInterval(-1))
	var rels []func(bool)
	for i := 0; i < 60; i++ {
		rels = append(rels, mustAcquire(t, l))
	}
	f.Advance(time.Millisecond)
	for _, r := range rels[:10] {
		r(true)
	}
	if got := l.Limit(); got != 90 {
		t.Fatalf("limit %d after a window of drops, want 90", got)
	}
	for _, r := range rels[10:] {
		r(false)
	}
}

func TestAdaptiveLimitOptionsClamp(t *testing.T) {
	l := NewAdaptiveLimit(AdaptiveMinLimit(-3), AdaptiveMaxLimit(-1), AdaptiveInitialLimit(500), AdaptiveMaxWait(-time.Second),
		AdaptiveWindow(-1, -time.Second), nil, WithClock(nil))
	if l.minLimit != 1 || l.maxLimit != 1 || l.Limit() != 1 || l.maxWait != 0 || l.winSamples != 1 || l.winTime != 0 {
		t.Fatalf("clamped to min %d max %d limit %d wait %v window %d/%v", l.minLimit, l.maxLimit, l.Limit(), l.maxWait, l.winSamples, l.winTime)
	}
	l = NewAdaptiveLimit(AdaptiveMinLimit(5), AdaptiveMaxLimit(8), AdaptiveInitialLimit(2))
	if l.Limit() != 5 {
		t.Fatalf("initial below min: limit %d, want 5", l.Limit())
	}
	var zero AdaptiveLimit
	rel := mustAcquire(t, &zero)
	rel(false)
	if zero.Limit() != defaultAdaptiveInitial || zero.InFlight() != 0 {
		t.Fatalf("zero value: limit %d in flight %d", zero.Limit(), zero.InFlight())
	}
}

func TestAdaptiveLimitRefusesAtLimitAndIgnoresExtraRelease(t *testing.T) {
	l := NewAdaptiveLimit(AdaptiveInitialLimit(2), AdaptiveMaxLimit(2))
	r1, r2 := mustAcquire(t, l), mustAcquire(t, l)
	if _, err := l.Acquire(context.Background()); !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("third: %v, want ErrBulkheadFull", err)
	}
	r1(false)
	r1(false)
	if l.InFlight() != 1 {
		t.Fatalf("in flight %d after an extra release, want 1", l.InFlight())
	}
	r2(false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("done ctx: %v", err)
	}
}

func TestAdaptiveLimitWaitersFIFOAndBounded(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	l := NewAdaptiveLimit(WithClock(f), AdaptiveInitialLimit(1), AdaptiveMaxLimit(1), AdaptiveMaxWait(time.Second))
	hold := mustAcquire(t, l)
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rel, err := l.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			rel(false)
		}(i)
		f.BlockUntil(i + 1) // waiter i armed its timer before i+1 comes
	}
	hold(false)
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("waiter %d admitted in place %d", got, want)
		}
		want++
	}

	// Bounded by max wait.
	hold = mustAcquire(t, l)
	defer hold(false)
	done := make(chan error, 1)
	go func() { _, err := l.Acquire(context.Background()); done <- err }()
	f.BlockUntil(1)
	f.Advance(time.Second)
	if err := <-done; !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("after max wait: %v", err)
	}
	// Bounded by ctx, with its cause.
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("bye")
	go func() { _, err := l.Acquire(ctx); done <- err }()
	f.BlockUntil(1)
	cancel(cause)
	if err := <-done; !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("cancelled: %v", err)
	}
	if l.InFlight() != 1 || l.nwait != 0 {
		t.Fatalf("in flight %d, waiting %d; want 1, 0", l.InFlight(), l.nwait)
	}
}

func TestAdaptiveLimitThousandGoroutines(t *testing.T) {
	l := NewAdaptiveLimit(AdaptiveInitialLimit(8), AdaptiveMaxLimit(16), AdaptiveMaxWait(2*time.Millisecond), AdaptiveWindow(5, 0))
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := context.Background()
			if i%7 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
			}
			rel, err := l.Acquire(ctx)
			if err != nil {
				return
			}
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(100 * time.Microsecond)
			running.Add(-1)
			rel(i%11 == 0)
		}(i)
	}
	wg.Wait()
	if peak.Load() > 16 || l.InFlight() != 0 || l.nwait != 0 {
		t.Fatalf("peak %d (max 16), in flight %d, waiting %d", peak.Load(), l.InFlight(), l.nwait)
	}
}

func TestAdaptiveLimitAdmitAllocatesNothing(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items under the race detector")
	}
	l := NewAdaptiveLimit()
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() {
		rel, _ := l.Acquire(ctx)
		rel(false)
	}); n != 0 {
		t.Fatalf("%v allocations per admit+release", n)
	}
}

func BenchmarkAdaptiveLimit(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		l := NewAdaptiveLimit()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rel, _ := l.Acquire(ctx)
			rel(false)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := NewAdaptiveLimit(AdaptiveInitialLimit(1000))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if rel, err := l.Acquire(ctx); err == nil {
					rel(false)
				}
			}
		})
	})
}
