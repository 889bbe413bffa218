package main

import (
	"container/heap"
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/recourse-go/recourse/clock"
)

// result is one configuration's run.
type result struct {
	name                      string
	p50, p99                  time.Duration // of admitted tries, as their clients saw them
	goodAll                   float64       // answered in time / capacity, whole run
	goodHealthy, goodDegraded float64
	shed, timedOut            float64   // fractions of arrivals
	limitRange                [2][2]int // adaptive: min/max limit, healthy and degraded phases
	perBucket                 []bucketStats
}

// bucketStats is one plot bucket.
type bucketStats struct {
	p99  time.Duration
	good float64 // goodput / capacity
	lim  int     // adaptive limit at the bucket's end (0: none)
}

// event is a try ending for its client: answered, or given up.
type event struct {
	at      time.Duration
	release func(bool)
	dropped bool
}

type events []event

func (e events) Len() int           { return len(e) }
func (e events) Less(i, j int) bool { return e[i].at < e[j].at }
func (e events) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)        { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// serversAt is the dependency's number of servers at t.
func serversAt(t time.Duration) int {
	if t >= runFor/3 && t < 2*runFor/3 {
		return degraded
	}
	return servers
}

// simulate runs one configuration: newLimiter (nil: no limit) admits the
// arrivals, offered at load × overload × the healthy capacity.
func simulate(name string, newLimiter func(clock.Clock) limiter, load float64) result {
	rng := rand.New(rand.NewPCG(2026, 12))
	vc := &vclock{}
	vc.set(0)
	var l limiter
	if newLimiter != nil {
		l = newLimiter(vc)
	}
	limitOf := func() int {
		if a, ok := l.(interface{ Limit() int }); ok {
			return a.Limit()
		}
		return 0
	}
	rate := load * overload * float64(servers) / base.Seconds() // arrivals per second
	nb := int(runFor / bucket)
	type acc struct {
		lats []time.Duration
		good int
		lim  int
	}
	buckets := make([]acc, nb)
	var (
		pending        events
		free           = make([]time.Duration, servers) // when each server is next free
		arrivals, shed int
		timedOut       int
		lats           []time.Duration
		limRange       = [2][2]int{{math.MaxInt, 0}, {math.MaxInt, 0}}
		ctx            = context.Background()
	)
	deliver := func(upTo time.Duration) {
		for pending.Len() > 0 && pending[0].at <= upTo {
			ev := heap.Pop(&pending).(event)
			vc.set(ev.at)
			ev.release(ev.dropped)
		}
	}
	t := time.Duration(0)
	for {
		t += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if t >= runFor {
			break
		}
		deliver(t)
		vc.set(t)
		if lim := limitOf(); lim > 0 {
			ph := 0
			if serversAt(t) == degraded {
				ph = 1
			}
			limRange[ph][0], limRange[ph][1] = min(limRange[ph][0], lim), max(limRange[ph][1], lim)
		}
		arrivals++
		release := func(bool) {}
		if l != nil {
			rel, err := l.Acquire(ctx)
			if err != nil {
				shed++
				continue
			}
			release = rel
		}
		// The dependency: the server that frees first takes the try.
		c := serversAt(t)
		if len(free) != c {
			sort.Slice(free, func(i, j int) bool { return free[i] < free[j] })
			for len(free) < c {
				free = append(free, t)
			}
			free = free[:c]
		}
		k := 0
		for i := range free {
			if free[i] < free[k] {
				k = i
			}
		}
		start := max(free[k], t)
		done := start + time.Duration((0.5+0.5*rng.ExpFloat64())*float64(base))
		free[k] = done
		end, late := done, done-t > deadline
		if late {
			end = t + deadline // the client gives up; the server goes on
			timedOut++
		} else if b := int(done / bucket); b < nb {
			buckets[b].good++
		}
		lats = append(lats, end-t)
		if b := int(t / bucket); b < nb {
			buckets[b].lats = append(buckets[b].lats, end-t)
			buckets[b].lim = limitOf()
		}
		heap.Push(&pending, event{at: end, release: release, dropped: late})
	}
	deliver(math.MaxInt64)

	r := result{name: name, p50: pct(lats, 0.5), p99: pct(lats, 0.99),
		shed: float64(shed) / float64(arrivals), timedOut: float64(timedOut) / float64(arrivals), limitRange: limRange}
	var good, capTotal, goodH, capH, goodD, capD float64
	for i, b := range buckets {
		at := time.Duration(i) * bucket
		capacity := float64(serversAt(at)) / base.Seconds() * bucket.Seconds()
		bs := bucketStats{p99: pct(b.lats, 0.99), good: float64(b.good) / capacity, lim: b.lim}
		r.perBucket = append(r.perBucket, bs)
		good, capTotal = good+float64(b.good), capTotal+capacity
		if serversAt(at) == degraded {
			goodD, capD = goodD+float64(b.good), capD+capacity
		} else {
			goodH, capH = goodH+float64(b.good), capH+capacity
		}
	}
	r.goodAll, r.goodHealthy, r.goodDegraded = good/capTotal, goodH/capH, goodD/capD
	return r
}

// pct returns the q quantile of ds (sorting it).
func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
