package fleet

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse/middleware"
)

// Budget is a retry budget shared by every replica that builds one with
// the same name on the same Redis: retries and hedges, fleet-wide, stay
// within ratio × first tries + floor × window over a sliding window. It
// implements middleware.Budget and middleware.Outcomes; register it with
// recourse.WithBudget.
//
// First tries never wait on Redis: they are counted locally and sent in
// batches (every FlushInterval, and with each retry decision). A retry or
// hedge is decided by one script on Redis (one round trip, Redis's clock)
// within DecisionTimeout; a replica deciding often takes a small lease of
// tokens and spends it locally. While Redis is down or slow, the fallback
// budget decides, and the fleet budget resumes once Redis answers again.
// A decision never waits longer than DecisionTimeout, whatever the
// client's options: the caller waits on its own timer, not on go-redis.
//
// Decision reasons: "first_try" for a first try; "fleet_available" and
// "fleet_exceeded" for retries and hedges Redis decided; "fleet_leased"
// for one paid from a local lease; "fleet_fallback:" followed by the
// fallback's own reason (such as "fleet_fallback:ratio_available") for one
// the fallback decided; "fleet_nil" for a retry or hedge a nil *Budget
// refuses.
//
// A Budget runs one background goroutine from its first use until Close.
// A nil or zero Budget allows first tries and refuses everything else;
// use NewBudget.
type Budget struct {
	rdb       redis.UniversalClient
	name, key string
	cfg       budgetConfig
	outcomes  middleware.Outcomes // cfg.fallback as Outcomes, or nil
	args      []any               // script arguments that never change (ratio…slots)

	pending     atomic.Int64 // first tries counted, not yet sent
	pendingFrom atomic.Int64 // unix ns when the oldest unsent first try was counted
	downUntil   atomic.Int64 // unix ns before which Redis is not asked; 0 when up

	mu        sync.Mutex // guards the lease
	lease     int64      // tokens held locally
	leaseEnd  time.Time
	leaseSize int64 // tokens per cost asked for next
	lastAsk   time.Time

	reqs    chan *request
	life    sync.Mutex // guards started, closed, quit, done
	running atomic.Bool
	closed  atomic.Bool
	quit    chan struct{}
	done    chan struct{}
}

// request is a retry or hedge waiting for the worker's round trip.
type request struct {
	want, least int64
	reply       chan reply // buffered: the worker never blocks on it
}

// reply is the worker's answer to a request.
type reply struct {
	grant int64
	err   error
}

// Decision reasons of Budget (see its doc).
const (
	reasonFirstTry  = "first_try"
	reasonAvailable = "fleet_available"
	reasonExceeded  = "fleet_exceeded"
	reasonLeased    = "fleet_leased"
	reasonFallback  = "fleet_fallback:"
	reasonNil       = "fleet_nil"
)

// maxBatch bounds the decisions sent in one pipeline.
const maxBatch = 64

// errClosed answers requests left when the budget closes.
var errClosed = errors.New("fleet: budget closed")

// NewBudget returns the fleet budget name on rdb (10 % of first tries plus
// 1 per second over 10s, with a local ratio budget as fallback, unless
// opts say otherwise). Every replica that should share the budget uses the
// same name and Redis, and the same ratio, floor and window. Its key is
// "recourse:fleet:{name}:budget": the hash tag keeps it on one Redis
// Cluster node. A nil rdb makes a budget that always falls back; an empty
// name is "default". Call Close when done with it.
func NewBudget(rdb redis.UniversalClient, name string, opts ...BudgetOption) *Budget {
	var cfg budgetConfig
	cfg.ratio, cfg.floor = defaultRatio, defaultFloor
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg.normalize()
	if name == "" {
		name = "default"
	}
	b := &Budget{rdb: rdb, name: name, cfg: cfg, key: cfg.prefix + "{" + name + "}:budget",
		reqs: make(chan *request, 4*maxBatch), leaseSize: 1}
	b.outcomes, _ = cfg.fallback.(middleware.Outcomes)
	slot := cfg.window / slots
	b.args = []any{strconv.FormatFloat(cfg.ratio, 'g', -1, 64), strconv.FormatFloat(cfg.floor, 'g', -1, 64),
		strconv.FormatInt(slot.Milliseconds(), 10), strconv.Itoa(slots)}
	return b
}

// Name returns the budget's name.
func (b *Budget) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// Key returns the budget's Redis key.
func (b *Budget) Key() string {
	if b == nil {
		return ""
	}
	return b.key
}

// Degraded reports whether the fallback decides for now: Redis failed or
// was slow within the probe interval, or the budget is closed, or it has
// no Redis client.
func (b *Budget) Degraded() bool {
	return b == nil || b.rdb == nil || b.closed.Load() || b.down(time.Now())
}

// Take counts a first try (always allowed, never waiting on Redis), or
// decides a retry or hedge: from a local lease, else by one round trip to
// Redis, else — Redis down, slow or closed — by the fallback.
func (b *Budget) Take(ctx context.Context, t middleware.Try) middleware.Decision {
	if b == nil || b.cfg.fallback == nil { // nil, or the zero Budget
		if t.Kind == middleware.TryFirst {
			return middleware.Decision{Allowed: true, Reason: reasonFirstTry}
		}
		return middleware.Decision{Allowed: false, Reason: reasonNil}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if t.Kind == middleware.TryFirst {
		b.cfg.fallback.Take(ctx, t) // keeps the fallback warm; first tries are never refused
		if b.rdb != nil && !b.closed.Load() {
			if b.pending.Add(1) == 1 {
				b.pendingFrom.Store(time.Now().UnixNano())
			}
			b.start()
		}
		return middleware.Decision{Allowed: true, Reason: reasonFirstTry}
	}
	cost := int64(max(t.Cost, 1))
	now := time.Now()
	b.mu.Lock()
	if b.lease >= cost && now.Before(b.leaseEnd) {
		b.lease -= cost
		b.mu.Unlock()
		b.charge(ctx, t)
		return middleware.Decision{Allowed: true, Reason: reasonLeased}
	}
	// Lease more while decisions come faster than a lease lives.
	if !b.lastAsk.IsZero() && now.Sub(b.lastAsk) < b.cfg.leaseTTL {
		b.leaseSize = min(2*b.leaseSize, int64(b.cfg.maxLease))
	} else {
		b.leaseSize = 1
	}
	b.lastAsk = now
	want := cost
	if cost <= math.MaxInt64/b.leaseSize {
		want = cost * b.leaseSize
	}
	b.mu.Unlock()

	if b.rdb == nil || b.closed.Load() || b.down(now) {
		return b.fallback(ctx, t)
	}
	b.start()
	req := &request{want: want, least: cost, reply: make(chan reply, 1)}
	select {
	case b.reqs <- req:
	default: // a queue this long means Redis is not keeping up
		b.markDown()
		return b.fallback(ctx, t)
	}
	timer := time.NewTimer(b.cfg.timeout)
	defer timer.Stop()
	select {
	case r := <-req.reply:
		if r.err != nil {
			return b.fallback(ctx, t)
		}
		if r.grant < cost {
			return middleware.Decision{Allowed: false, Reason: reasonExceeded}
		}
		if extra := r.grant - cost; extra > 0 {
			b.mu.Lock()
			if !time.Now().Before(b.leaseEnd) {
				b.lease = 0
			}
			b.lease += extra
			b.leaseEnd = time.Now().Add(b.cfg.leaseTTL)
			b.mu.Unlock()
		}
		b.charge(ctx, t)
		return middleware.Decision{Allowed: true, Reason: reasonAvailable}
	case <-timer.C:
		b.markDown()
		return b.fallback(ctx, t)
	case <-ctx.Done():
		// The caller gave up; that says nothing about Redis.
		return b.fallback(ctx, t)
	}
}

// RecordOutcome passes a try's outcome to the fallback, if it learns from
// outcomes (middleware.Outcomes), so that it is warm when it takes over.
func (b *Budget) RecordOutcome(t middleware.Try, success bool) {
	if b != nil && b.outcomes != nil {
		b.outcomes.RecordOutcome(t, success)
	}
}

// charge tells the fallback of a retry or hedge the fleet allowed, as it
// is told of every first try, so that when it takes over it does not
// grant this replica's share of the window a second time. Its answer does
// not matter: the fleet's decision stands.
func (b *Budget) charge(ctx context.Context, t middleware.Try) {
	_ = b.cfg.fallback.Take(ctx, t)
}

// fallback asks the fallback budget and marks its decision as such.
func (b *Budget) fallback(ctx context.Context, t middleware.Try) middleware.Decision {
	d := b.cfg.fallback.Take(ctx, t)
	d.Reason = reasonFallback + d.Reason
	return d
}

// down reports whether Redis is being left alone at now.
func (b *Budget) down(now time.Time) bool {
	until := b.downUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// markDown leaves Redis alone for the probe interval.
func (b *Budget) markDown() {
	b.downUntil.Store(time.Now().Add(b.cfg.probe).UnixNano())
}

// Close stops the budget's background goroutine after a last attempt to
// send the first tries it counted. Afterwards the fallback decides every
// retry and hedge. Close is safe to call more than once and concurrently
// with Take; it returns nil.
//
// Close waits for that last attempt at most closeWait (half a second). A
// Redis that hangs can hold the goroutine longer, inside go-redis: until
// the client's ReadTimeout (3s by default; never, with -1). Create the
// client with ContextTimeoutEnabled, as for BreakerSignal, and go-redis
// honours the budget's own deadlines, so the goroutine ends with Close.
func (b *Budget) Close() error {
	if b == nil {
		return nil
	}
	b.life.Lock()
	defer b.life.Unlock()
	if b.closed.Swap(true) || !b.running.Load() {
		return nil
	}
	close(b.quit)
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C: // Redis hangs and the client ignores deadlines: see above
	}
	return nil
}

// closeWait bounds how long Close waits for the last flush.
const closeWait = 500 * time.Millisecond

// start runs the worker unless it runs or the budget is closed.
func (b *Budget) start() {
	if b.running.Load() {
		return
	}
	b.life.Lock()
	defer b.life.Unlock()
	if b.running.Load() || b.closed.Load() {
		return
	}
	b.quit, b.done = make(chan struct{}), make(chan struct{})
	b.running.Store(true)
	go b.run()
}
