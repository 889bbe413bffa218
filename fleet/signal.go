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

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// Breakers finds a key's local circuit breaker, or nil if it has none
// (yet). *recourse.Executor implements it.
type Breakers interface {
	Breaker(key string) *middleware.CircuitBreaker
}

// BreakerSignal shares "this dependency is down" across a fleet. Each
// replica keeps its own circuit breakers; the signal publishes, per key,
// whether this replica's own breaker is open, and reads how many replicas
// say so. When a quorum of the replicas reporting a key say open, it holds
// this replica's breaker for the key open (CircuitBreaker.ForceOpen), so
// that a replica with little traffic does not have to discover the outage
// alone; when the quorum goes, it releases it (Reset). An operator's
// Reset of a held breaker lasts until the next poll, which holds it again
// while the quorum stands (to keep a dependency closed against the fleet,
// change its policy instead). Replicas whose own breaker opened are never
// held: they probe the dependency half-open, as usual, and their recovery
// ends the quorum.
//
// Register the signal as (part of) the executor's observer, so that a
// local breaker that opens is published at once, and run it:
//
//	sig := fleet.NewBreakerSignal(rdb, fleet.Keys("payments.Charge"))
//	exec := recourse.NewExecutor(recourse.WithObserver(sig), …)
//	go sig.Run(ctx, exec) // until ctx is done
//
// A replica that cannot reach Redis for the report lifetime releases the
// breakers it holds, and its own breakers decide alone. Give the signal a
// client created with ContextTimeoutEnabled: go-redis otherwise ignores
// context deadlines on its sockets, and a hung Redis holds a poll for the
// client's ReadTimeout (3s by default) before the signal can let go.
type BreakerSignal struct {
	// BaseObserver supplies the Observer methods the signal ignores;
	// OnBreakerState is its own.
	timeline.BaseObserver

	rdb   redis.UniversalClient
	cfg   signalConfig
	index string

	mu      sync.Mutex
	learned map[string]struct{} // keys seen in OnBreakerState since the last poll
	listed  []string            // keys the fleet index listed at the last poll
	held    map[string]*middleware.CircuitBreaker
	views   map[string]View
	lastOK  time.Time

	nudge   chan struct{}
	running atomic.Bool
}

// View is the fleet's view of one key at the last poll.
type View struct {
	// Live is how many replicas report the key.
	Live int
	// Open is how many of them report their own breaker open.
	Open int
	// Quorum reports whether Open reached the quorum.
	Quorum bool
	// Held reports whether this replica holds its breaker open for it.
	Held bool
}

// ErrSignalRunning is returned by Run when the signal already runs.
var ErrSignalRunning = errors.New("fleet: BreakerSignal.Run called while running")

// NewBreakerSignal returns a breaker signal on rdb; nothing happens until
// Run.
func NewBreakerSignal(rdb redis.UniversalClient, opts ...SignalOption) *BreakerSignal {
	var cfg signalConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg.normalize()
	s := &BreakerSignal{rdb: rdb, cfg: cfg, index: cfg.prefix + "{breakers}:open",
		learned: map[string]struct{}{}, held: map[string]*middleware.CircuitBreaker{},
		views: map[string]View{}, nudge: make(chan struct{}, 1)}
	return s
}

// Replica returns the id this replica reports under.
func (s *BreakerSignal) Replica() string { return s.cfg.replica }

// OnBreakerState notes the key and, when a breaker opens, makes Run
// publish at once.
func (s *BreakerSignal) OnBreakerState(ev timeline.BreakerStateChange) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.learned == nil { // the zero BreakerSignal
		s.learned = map[string]struct{}{}
	}
	if len(s.learned) < max(s.cfg.maxKeys, 1) {
		s.learned[ev.Key] = struct{}{}
	}
	s.mu.Unlock()
	if ev.To == endpoint.BreakerOpen.String() {
		select {
		case s.nudge <- struct{}{}:
		default:
		}
	}
}

// View returns the fleet's view of key at the last poll.
func (s *BreakerSignal) View(key string) View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.views[key]
}

// Run publishes and reads the fleet's reports every poll interval (and at
// once when a local breaker opens) until ctx is done, then releases the
// breakers it holds open, withdraws this replica's reports and returns
// nil. It returns an error at once if rdb or breakers is nil or the signal
// already runs. Run is the signal's only goroutine: the caller's.
func (s *BreakerSignal) Run(ctx context.Context, breakers Breakers) error {
	if s == nil || s.rdb == nil {
		return errors.New("fleet: BreakerSignal.Run: redis client is nil")
	}
	if breakers == nil {
		return errors.New("fleet: BreakerSignal.Run: breakers is nil")
	}
	if ctx == nil {
		return errors.New("fleet: BreakerSignal.Run: context is nil")
	}
	if !s.running.CompareAndSwap(false, true) {
		return ErrSignalRunning
	}
	defer s.running.Store(false)
	defer s.stop()
	tick := time.NewTicker(s.cfg.poll)
	defer tick.Stop()
	s.mu.Lock()
	s.lastOK = time.Now()
	s.mu.Unlock()
	for {
		s.poll(ctx, breakers)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.nudge:
		}
	}
}

// poll runs one round: one pipeline reporting each watched key and
// reading the index; a second, for keys the index newly listed.
func (s *BreakerSignal) poll(ctx context.Context, breakers Breakers) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.cfg.keys)+len(s.learned)+len(s.listed)+len(s.held))
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] && len(keys) < s.cfg.maxKeys {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, k := range s.cfg.keys {
		add(k)
	}
	for k := range s.learned {
		add(k)
	}
	clear(s.learned)
	for _, k := range s.listed {
		add(k)
	}
	for k := range s.held {
		add(k)
	}
	s.mu.Unlock()

	listed, ok := s.round(ctx, breakers, keys, true)
	var fresh []string
	for _, k := range listed {
		if !seen[k] && len(keys)+len(fresh) < s.cfg.maxKeys {
			fresh = append(fresh, k)
		}
	}
	if ok && len(fresh) > 0 {
		s.round(ctx, breakers, fresh, false)
	}
	s.mu.Lock()
	if ok {
		s.listed = listed
	}
	for k := range s.views {
		if !seen[k] && !contains(fresh, k) {
			delete(s.views, k) // no longer watched
		}
	}
	stale := time.Since(s.lastOK) > s.cfg.ttl
	s.mu.Unlock()
	if stale {
		s.releaseAll() // Redis gone too long: the local breakers decide alone
	}
}

// round reports keys (those with a local breaker), reads the fleet's
// views and holds or releases breakers; with index it also lists the keys
// reported open and returns the index. ok reports whether Redis answered.
func (s *BreakerSignal) round(ctx context.Context, breakers Breakers, keys []string, index bool) (listed []string, ok bool) {
	type item struct {
		key string
		b   *middleware.CircuitBreaker
	}
	items := make([]item, 0, len(keys))
	var open []any
	for _, k := range keys {
		b := breakers.Breaker(k)
		if b == nil {
			s.release(k, nil) // evicted or never built: nothing to hold
			continue
		}
		items = append(items, item{k, b})
		if ownOpen(b) {
			open = append(open, k)
		}
	}
	if len(items) == 0 && !index {
		return nil, true
	}
	ttl := strconv.FormatInt(s.cfg.ttl.Milliseconds(), 10)
	run := func(eval bool) ([]*redis.Cmd, *redis.Cmd) {
		rctx, cancel := context.WithTimeout(ctx, max(s.cfg.poll/2, 50*time.Millisecond))
		defer cancel()
		pipe := s.rdb.Pipeline()
		script := (*redis.Script).EvalSha
		if eval {
			script = (*redis.Script).Eval
		}
		cmds := make([]*redis.Cmd, len(items))
		for i, it := range items {
			st := "0"
			if ownOpen(it.b) {
				st = "1"
			}
			cmds[i] = script(reportScript, rctx, pipe, []string{s.keyOf(it.key)}, s.cfg.replica, st, ttl)
		}
		var idx *redis.Cmd
		if index {
			idx = script(indexScript, rctx, pipe, []string{s.index}, append([]any{ttl}, open...)...)
		}
		_, _ = pipe.Exec(rctx)
		return cmds, idx
	}
	cmds, idx := run(false)
	if noScript(cmds, idx) {
		cmds, idx = run(true)
	}
	ok = true
	for i, it := range items {
		res, err := cmds[i].Int64Slice()
		if err != nil || len(res) != 2 {
			ok = false
			continue
		}
		s.decide(it.key, it.b, int(res[0]), int(res[1]))
	}
	if idx != nil {
		var err error
		if listed, err = idx.StringSlice(); err != nil {
			ok = false
		}
	}
	if ok {
		s.mu.Lock()
		s.lastOK = time.Now()
		s.mu.Unlock()
	}
	return listed, ok
}

// noScript reports whether Redis lacked a script (after a restart).
func noScript(cmds []*redis.Cmd, idx *redis.Cmd) bool {
	if idx != nil && redis.HasErrorPrefix(idx.Err(), "NOSCRIPT") {
		return true
	}
	for _, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// ownOpen reports whether b is open or half-open by itself, not held open.
func ownOpen(b *middleware.CircuitBreaker) bool {
	return !b.Forced() && b.State() != endpoint.BreakerClosed
}

// quorum reports whether open of live replicas make a quorum.
func (s *BreakerSignal) quorum(live, open int) bool {
	if open <= 0 {
		return false
	}
	if n := s.cfg.quorumN; n > 0 && open >= n {
		return true
	}
	f := s.cfg.quorumF
	return f > 0 && float64(open) >= math.Ceil(f*float64(live))
}

// decide holds key's breaker b open on a quorum, releases it without.
// Only a closed breaker is held: one open by itself keeps probing.
func (s *BreakerSignal) decide(key string, b *middleware.CircuitBreaker, live, open int) {
	q := s.quorum(live, open)
	s.mu.Lock()
	prev := s.held[key]
	s.mu.Unlock()
	if prev != nil && prev != b {
		s.release(key, prev) // the executor built a new breaker for the key
		prev = nil
	}
	switch {
	case q && prev == nil && !b.Forced() && b.State() == endpoint.BreakerClosed:
		s.mu.Lock()
		s.held[key] = b
		s.mu.Unlock()
		b.ForceOpen()
	case q && prev != nil && !prev.Forced():
		// The hold was lifted (an operator's Reset) while the quorum
		// stands: hold it again, unless the breaker has since opened by
		// itself, which then probes on its own and is not held.
		if b.State() == endpoint.BreakerClosed {
			b.ForceOpen()
		} else {
			s.mu.Lock()
			delete(s.held, key)
			s.mu.Unlock()
		}
	case !q && prev != nil:
		s.release(key, prev)
	}
	s.mu.Lock()
	s.views[key] = View{Live: live, Open: open, Quorum: q, Held: s.held[key] != nil}
	s.mu.Unlock()
}

// release resets the breaker held open for key, if it is b (or b is nil).
func (s *BreakerSignal) release(key string, b *middleware.CircuitBreaker) {
	s.mu.Lock()
	h := s.held[key]
	if h == nil || (b != nil && h != b) {
		s.mu.Unlock()
		return
	}
	delete(s.held, key)
	if v, ok := s.views[key]; ok {
		v.Held = false
		s.views[key] = v
	}
	s.mu.Unlock()
	if h.Forced() {
		h.Reset()
	}
}

// releaseAll releases every breaker the signal holds.
func (s *BreakerSignal) releaseAll() {
	s.mu.Lock()
	keys := make([]string, 0, len(s.held))
	for k := range s.held {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.release(k, nil)
	}
}

// stop releases every held breaker and withdraws this replica's reports.
func (s *BreakerSignal) stop() {
	s.releaseAll()
	s.mu.Lock()
	keys := make([]string, 0, len(s.views))
	for k := range s.views {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	pipe := s.rdb.Pipeline()
	for _, k := range keys {
		pipe.HDel(ctx, s.keyOf(k), s.cfg.replica)
	}
	_, _ = pipe.Exec(ctx)
}

// keyOf returns the Redis key of key's reports.
func (s *BreakerSignal) keyOf(key string) string { return s.cfg.prefix + "{" + key + "}:breaker" }

// contains reports whether keys holds k.
func contains(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}
