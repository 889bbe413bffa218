package middleware

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/internal/tryctx"
	"github.com/recourse-go/recourse/timeline"
)

// ErrCircuitOpen is returned (wrapped) when a key's circuit breaker refuses
// a call: open, or half-open with all its probes in flight. The operation
// is not called.
var ErrCircuitOpen = fmt.Errorf("recourse: circuit open")

// BreakerConfig configures a CircuitBreaker.
type BreakerConfig struct {
	// Name appears in state-change events; the executor uses the key.
	Name string
	// ConsecutiveFailures trips the breaker after that many failures in a
	// row (default 5). Ignored when FailureRatio is set.
	ConsecutiveFailures int
	// Cooldown is how long the breaker stays open (default 10s).
	Cooldown time.Duration
	// CooldownJitter, when in (0, 1], lengthens each open period by a
	// random fraction of Cooldown up to CooldownJitter, so that the
	// replicas of a fleet that opened together do not probe together. An
	// open period then lasts between Cooldown and
	// Cooldown×(1+CooldownJitter). Zero, negative and NaN mean exactly
	// Cooldown; values above 1 are taken as 1.
	CooldownJitter float64
	// HalfOpenProbes is how many calls a half-open breaker admits; that
	// many successes in a row close it (default 1).
	HalfOpenProbes int
	// FailureRatio, when in (0, 1], trips the breaker when failures /
	// calls over Window reach it, once MinRequests calls were seen.
	FailureRatio float64
	// Window is the rolling window of ratio mode and of slow-call
	// detection (default 1m, 10 buckets).
	Window time.Duration
	// MinRequests is the least number of calls in Window before ratio mode
	// or slow-call detection may trip (default 10).
	MinRequests int
	// SlowCallDuration, when positive, turns on slow-call detection: a
	// successful try that took at least this long is a slow call. In
	// Window, once MinRequests counted tries were seen, the breaker opens
	// when slow calls / counted tries reach SlowCallRate. A half-open
	// probe that is slow counts as a failed probe.
	SlowCallDuration time.Duration
	// SlowCallRate is the slow-call ratio in (0, 1] that opens the breaker
	// (default 1: every counted try in the window was slow). Used only
	// with SlowCallDuration.
	SlowCallRate float64
	// Clock times tries for slow-call detection and, with CooldownJitter,
	// whole open periods (default: the real clock): a breaker given a fake
	// clock that never advances then stays open. Without CooldownJitter
	// the cooldown is timed by gobreaker, which reads the real clock.
	Clock clock.Clock
	// OnStateChange is called on every transition, in order, outside the
	// breaker's lock: on the goroutine of the breaker call (a try through
	// Breaker, State, ForceOpen or Reset) that made the transition, after
	// gobreaker returns and before that call does. It may call back into
	// the breaker. If calls on several goroutines make transitions at
	// once, one of them may deliver the others' too, still in order.
	OnStateChange func(name string, from, to endpoint.BreakerState)
}

// CircuitBreaker is a key's breaker: gobreaker/v2's state machine, told
// about each call by the Breaker decorator. Only tries the classifier
// calls retryable failures count against it; successes count for it;
// non-retryable errors (a 4xx, a panic), aborts (the caller's cancellation
// or deadline), budget and bulkhead refusals are not counted at all.
//
// A closed breaker in consecutive-failures mode that has counted no
// failure since its last success lets successful tries through without
// consulting gobreaker, so that callers on many cores do not contend on
// its lock: such a success would change none of the counts that decide a
// transition. Every failure, every state other than closed, and every try
// in ratio mode still goes through gobreaker.
//
// An operator can hold the breaker open with ForceOpen and close it with
// Reset. The zero CircuitBreaker is not usable; call NewCircuitBreaker.
type CircuitBreaker struct {
	cfg BreakerConfig
	clk clock.Clock
	m   atomic.Pointer[machine]

	// forced is set by ForceOpen and cleared by Reset.
	forced atomic.Bool
	// holdUntil is the clock reading (UnixNano) before which an open
	// breaker keeps refusing although gobreaker's cooldown has passed:
	// the jittered part of the open period. Zero when none.
	holdUntil atomic.Int64
	// reported is the last state delivered or queued for OnStateChange
	// (endpoint.BreakerState), so that ForceOpen and Reset report real
	// transitions only.
	reported atomic.Uint32

	slow *slowWindow // nil unless SlowCallDuration > 0

	// Transitions waiting for delivery to cfg.OnStateChange: gobreaker
	// reports them under its lock, they are delivered after it returns.
	pending  atomic.Int32 // len(queue), read without qmu on the hot path
	qmu      sync.Mutex
	queue    []transition
	flushing bool // a goroutine is delivering the queue
}

// machine is one gobreaker state machine and what the lock-free path
// knows of it. Reset replaces the machine; tries still running on the old
// one report to it, where nothing reads their results any more.
type machine struct {
	cb *gobreaker.CircuitBreaker[struct{}]
	// word packs what the lock-free path reads, written only under
	// gobreaker's lock: bits 0–1 the state (endpoint.BreakerState), bit 2
	// "clean" (closed, consecutive mode, no failure counted since the last
	// success or transition), bits 3 and up the generation (transitions
	// so far; gobreaker's own generation moves exactly with them, as the
	// breaker never sets a closed-state interval without buckets).
	word atomic.Uint64
	// trip makes the next counted failure open the breaker: slow-call
	// detection reached its rate.
	trip atomic.Bool
}

const (
	wordStateMask = 3
	wordClean     = 4
	wordGenShift  = 3
)

func (m *machine) state() endpoint.BreakerState {
	return endpoint.BreakerState(m.word.Load() & wordStateMask)
}

func wordGen(w uint64) uint64 { return w >> wordGenShift }

// transition is one state change awaiting delivery.
type transition struct {
	name     string
	from, to endpoint.BreakerState
}

// Sentinels passed to gobreaker as a call's result.
var (
	errBreakerFailure  = fmt.Errorf("recourse: counted failure")
	errBreakerExcluded = fmt.Errorf("recourse: not counted")
)

// lateFailure is a failure of a try the lock-free path admitted in the
// generation it holds, reported to gobreaker after the try: counted only
// if the machine is still in that generation, as gobreaker itself does
// for the tries it admits.
type lateFailure uint64

func (lateFailure) Error() string { return "recourse: counted failure" }

// NewCircuitBreaker returns a closed breaker configured by cfg. Zero or
// negative fields take their defaults; FailureRatio and SlowCallRate
// outside (0, 1] (or NaN) are treated as unset, CooldownJitter as its
// field says.
func NewCircuitBreaker(cfg BreakerConfig) *CircuitBreaker {
	if cfg.ConsecutiveFailures <= 0 {
		cfg.ConsecutiveFailures = 5
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 10 * time.Second
	}
	if !(cfg.CooldownJitter > 0) {
		cfg.CooldownJitter = 0
	}
	cfg.CooldownJitter = min(cfg.CooldownJitter, 1)
	if cfg.HalfOpenProbes <= 0 {
		cfg.HalfOpenProbes = 1
	}
	if !(cfg.FailureRatio > 0 && cfg.FailureRatio <= 1) {
		cfg.FailureRatio = 0
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.MinRequests <= 0 {
		cfg.MinRequests = 10
	}
	if cfg.SlowCallDuration < 0 {
		cfg.SlowCallDuration = 0
	}
	if cfg.SlowCallDuration > 0 && !(cfg.SlowCallRate > 0 && cfg.SlowCallRate <= 1) {
		cfg.SlowCallRate = 1
	}
	if cfg.SlowCallDuration == 0 {
		cfg.SlowCallRate = 0
	}
	b := &CircuitBreaker{cfg: cfg, clk: clockx.Or(cfg.Clock)}
	if cfg.SlowCallDuration > 0 {
		b.slow = newSlowWindow(cfg)
	}
	b.m.Store(b.newMachine())
	return b
}

// newMachine builds a closed gobreaker state machine for b's settings.
func (b *CircuitBreaker) newMachine() *machine {
	cfg := b.cfg
	m := &machine{}
	consecutive := cfg.FailureRatio == 0
	st := gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: u32(cfg.HalfOpenProbes),
		Timeout:     cfg.Cooldown,
		// Only failures the decorator reports count: anything else gobreaker
		// sees (the text of a panic it recovered) is not counted, as a
		// recovered panic is not. A late failure from an older generation
		// is dropped, as gobreaker drops a result from one.
		IsExcluded: func(err error) bool {
			if lf, ok := err.(lateFailure); ok {
				return uint64(lf) != wordGen(m.word.Load())
			}
			return err != nil && err != errBreakerFailure
		},
		// Called under gobreaker's lock just before it counts a result:
		// the one place the clean bit may be set.
		IsSuccessful: func(err error) bool {
			ok := err == nil
			if w := m.word.Load(); endpoint.BreakerState(w&wordStateMask) == endpoint.BreakerClosed && consecutive {
				if ok {
					m.word.Store(w | wordClean)
				} else {
					m.word.Store(w &^ wordClean)
				}
			}
			return ok
		},
	}
	if consecutive {
		n := u32(cfg.ConsecutiveFailures)
		st.ReadyToTrip = func(c gobreaker.Counts) bool { return m.trip.Swap(false) || c.ConsecutiveFailures >= n }
	} else {
		ratio, minReq := cfg.FailureRatio, u32(cfg.MinRequests)
		st.Interval = cfg.Window
		st.BucketPeriod = cfg.Window / 10
		st.ReadyToTrip = func(c gobreaker.Counts) bool {
			return m.trip.Swap(false) || c.Requests >= minReq && float64(c.TotalFailures) >= ratio*float64(c.Requests)
		}
	}
	st.OnStateChange = func(name string, from, to gobreaker.State) {
		// Under gobreaker's lock: record, deliver later (see flush).
		w := m.word.Load()
		nw := (wordGen(w)+1)<<wordGenShift | uint64(stateOf(to))
		if to == gobreaker.StateClosed && consecutive {
			nw |= wordClean
		}
		m.word.Store(nw)
		m.trip.Store(false)
		b.qmu.Lock()
		defer b.qmu.Unlock()
		if b.m.Load() != m || b.forced.Load() {
			// Replaced by Reset, or held open by ForceOpen: what this
			// machine does is nobody's business until Reset.
			return
		}
		switch to {
		case gobreaker.StateOpen:
			b.startHold()
		case gobreaker.StateClosed:
			if b.slow != nil {
				b.slow.reset()
			}
		}
		b.enqueueLocked(stateOf(to))
	}
	m.cb = gobreaker.NewCircuitBreaker[struct{}](st)
	if consecutive {
		m.word.Store(wordClean) // closed, generation 0, nothing counted
	}
	return m
}

// startHold starts the jittered part of an open period, if any.
func (b *CircuitBreaker) startHold() {
	if b.cfg.CooldownJitter == 0 {
		return
	}
	extra := time.Duration(rand.Float64() * b.cfg.CooldownJitter * float64(b.cfg.Cooldown))
	b.holdUntil.Store(b.clk.Now().Add(b.cfg.Cooldown + extra).UnixNano())
}

// held reports whether b refuses tries without asking gobreaker: forced
// open, or inside the jittered part of an open period.
func (b *CircuitBreaker) held() bool {
	if b.forced.Load() {
		return true
	}
	h := b.holdUntil.Load()
	if h == 0 {
		return false
	}
	if b.clk.Now().UnixNano() < h {
		return true
	}
	b.holdUntil.CompareAndSwap(h, 0)
	return false
}

// enqueueLocked records a move to state to, from the state last reported,
// and queues it for delivery when someone listens. b.qmu is held: every
// transition is decided and queued under it, so the reported transitions
// chain (each starts where the last ended) whatever runs concurrently.
func (b *CircuitBreaker) enqueueLocked(to endpoint.BreakerState) {
	from := endpoint.BreakerState(b.reported.Load())
	if from == to {
		return
	}
	b.reported.Store(uint32(to))
	if b.cfg.OnStateChange == nil {
		return
	}
	b.queue = append(b.queue, transition{name: b.cfg.Name, from: from, to: to})
	b.pending.Add(1)
}

// Config returns the breaker's configuration (defaults filled in).
func (b *CircuitBreaker) Config() BreakerConfig { return b.cfg }

// State returns the breaker's current state. Reading it may move an open
// breaker whose cooldown has passed to half-open (and report that).
func (b *CircuitBreaker) State() endpoint.BreakerState {
	if b == nil {
		return endpoint.BreakerClosed
	}
	if b.held() {
		return endpoint.BreakerOpen
	}
	s := stateOf(b.m.Load().cb.State())
	b.flush()
	return s
}

// ForceOpen opens the breaker and holds it open: every try is refused
// with ErrCircuitOpen, without probing, however long the cooldown, until
// Reset. It is for operators isolating a dependency by hand, and for
// fleet-wide signals. The transition (if the breaker was not open) is
// reported to OnStateChange; while forced, the state machine underneath
// reports nothing (a probe admitted before ForceOpen that ends after it
// does not close the breaker). On a nil breaker (Executor.Breaker's answer
// for a key whose policy has none) ForceOpen and Reset do nothing and
// State reports closed.
func (b *CircuitBreaker) ForceOpen() {
	if b == nil {
		return
	}
	b.qmu.Lock()
	if !b.forced.Swap(true) {
		b.enqueueLocked(endpoint.BreakerOpen)
	}
	b.qmu.Unlock()
	b.flush()
}

// Reset closes the breaker with its counts cleared and ends ForceOpen and
// any open period. Tries admitted before Reset that end after it are not
// counted. The transition (if the breaker was not closed) is reported to
// OnStateChange.
func (b *CircuitBreaker) Reset() {
	if b == nil {
		return
	}
	m := b.newMachine()
	b.qmu.Lock()
	b.m.Store(m)
	if b.slow != nil {
		b.slow.reset()
	}
	b.holdUntil.Store(0)
	b.forced.Store(false)
	b.enqueueLocked(endpoint.BreakerClosed)
	b.qmu.Unlock()
	b.flush()
}

// startForced makes a new breaker, not yet used, start held open as by
// ForceOpen, without reporting a transition.
func startForced(b *CircuitBreaker) {
	b.forced.Store(true)
	b.reported.Store(uint32(endpoint.BreakerOpen))
}

// Forced reports whether ForceOpen holds the breaker open.
func (b *CircuitBreaker) Forced() bool { return b != nil && b.forced.Load() }

// flush delivers queued transitions to cfg.OnStateChange in order, on
// this goroutine, outside gobreaker's lock. Only one goroutine delivers at
// a time; a flush that finds another under way (or is made from inside
// OnStateChange) returns at once and the delivering goroutine picks up
// what it queued. A panicking OnStateChange propagates to the caller and
// leaves the rest of the queue for the next flush.
func (b *CircuitBreaker) flush() {
	if b.pending.Load() == 0 {
		return
	}
	b.qmu.Lock()
	if b.flushing {
		b.qmu.Unlock()
		return
	}
	b.flushing = true
	defer func() {
		b.flushing = false
		b.qmu.Unlock()
	}()
	for len(b.queue) > 0 {
		tr := b.queue[0]
		b.queue[0] = transition{}
		b.queue = b.queue[1:]
		b.pending.Add(-1)
		b.qmu.Unlock()
		func() {
			defer b.qmu.Lock() // relocked even if the callback panics
			b.cfg.OnStateChange(tr.name, tr.from, tr.to)
		}()
	}
	b.queue = nil
}

func stateOf(s gobreaker.State) endpoint.BreakerState {
	switch s {
	case gobreaker.StateHalfOpen:
		return endpoint.BreakerHalfOpen
	case gobreaker.StateOpen:
		return endpoint.BreakerOpen
	}
	return endpoint.BreakerClosed
}

// errCircuitOpen is the one error every refused call returns: shared and
// immutable, so refusing allocates nothing.
var errCircuitOpen = &ClassifiedError{
	Err:     fmt.Errorf("%w", ErrCircuitOpen),
	Verdict: Verdict{Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonCircuitOpen},
}

// Breaker returns the decorator that runs each attempt through b. While b
// is open (or half-open with its probes taken) the attempt is refused
// without calling next: it is recorded with reason "circuit_open" and
// returns an error wrapping ErrCircuitOpen. An admitted attempt runs with
// the breaker's state in its endpoint.AttemptInfo, so the hedge decorator
// can hold back while the breaker is probing.
func Breaker(b *CircuitBreaker) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			// Transitions gobreaker made are delivered once it has
			// returned, or panicked (a panicking try with recovery off).
			defer b.flush()
			if b.held() {
				return nil, refuse(ctx)
			}
			m := b.m.Load()
			if w := m.word.Load(); w&(wordStateMask|wordClean) == wordClean {
				return b.closedFast(ctx, req, next, m, wordGen(w))
			}
			var (
				resp     any
				err      error
				admitted bool
			)
			// Execute's closure does not escape, so this allocates nothing.
			_, _ = m.cb.Execute(func() (struct{}, error) {
				admitted = true
				// gobreaker moved the state (and told us) while admitting.
				state := m.state()
				start := b.startTry()
				resp, err = next(withBreakerState(ctx, state), req)
				return struct{}{}, b.verdict(ctx, m, resp, err, start, state)
			})
			if !admitted {
				return nil, refuse(ctx)
			}
			return resp, err
		}
	}
}

// closedFast runs a try on the lock-free path: the breaker was closed and
// clean in generation gen, so the try is admitted (as gobreaker would) and
// a success changes nothing that matters; only a failure is reported.
func (b *CircuitBreaker) closedFast(ctx context.Context, req any, next endpoint.Endpoint, m *machine, gen uint64) (any, error) {
	start := b.startTry()
	resp, err := next(withBreakerState(ctx, endpoint.BreakerClosed), req)
	switch v := b.verdict(ctx, m, resp, err, start, endpoint.BreakerClosed); v {
	case nil, errBreakerExcluded:
	default:
		_, _ = m.cb.Execute(func() (struct{}, error) { return struct{}{}, lateFailure(gen) })
	}
	return resp, err
}

// refuse records a refused try and returns the shared refusal error.
func refuse(ctx context.Context) error {
	if rec := record.FromContext(ctx); rec != nil {
		info, _ := endpoint.AttemptFromContext(ctx)
		now := rec.Now()
		rec.Attempt(ctx, timeline.AttemptRecord{Attempt: max(info.Attempt, 1), StartTime: now, EndTime: now,
			Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonCircuitOpen, Err: errCircuitOpen.Err})
	}
	return errCircuitOpen
}

// startTry reads the clock when slow-call detection needs the try's
// duration, and returns the zero time otherwise.
func (b *CircuitBreaker) startTry() time.Time {
	if b.slow == nil {
		return time.Time{}
	}
	return b.clk.Now()
}

// verdict maps a try's verdict to what gobreaker should count: nil for a
// success, errBreakerFailure for a counted failure, errBreakerExcluded for
// anything not counted. With slow-call detection on, a counted try enters
// the slow-call window; reaching the slow-call rate makes the result a
// failure that trips m (the machine that admitted the try), and a slow
// half-open probe fails.
func (b *CircuitBreaker) verdict(ctx context.Context, m *machine, resp any, err error, start time.Time, state endpoint.BreakerState) error {
	v := errBreakerExcluded
	if err == nil {
		v = nil
	} else {
		switch VerdictOf(ctx, resp, err).Outcome {
		case timeline.OutcomeSuccess:
			v = nil
		case timeline.OutcomeRetryable:
			v = errBreakerFailure
		}
	}
	if b.slow == nil || v == errBreakerExcluded {
		return v
	}
	now := b.clk.Now()
	slow := v == nil && now.Sub(start) >= b.cfg.SlowCallDuration
	if state != endpoint.BreakerClosed {
		if slow {
			return errBreakerFailure
		}
		return v
	}
	if b.slow.add(now, slow) {
		// The machine that admitted the try, not one a Reset put in its
		// place meanwhile: a stale trip must not open a fresh breaker.
		m.trip.Store(true)
		return errBreakerFailure
	}
	return v
}

// u32 converts a positive count for gobreaker, which counts in uint32:
// larger counts saturate rather than wrap (to 0, tripping at once).
func u32(n int) uint32 {
	if uint64(n) > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

// withBreakerState records the breaker's state in ctx's AttemptInfo and
// returns the context to use. When ctx already carries an AttemptInfo the
// record is updated in place, allocating nothing: the retry loop gives each
// attempt its own, and the breaker runs before any hedge copies it. Only
// the breaker, on the attempt's own goroutine, calls it.
func withBreakerState(ctx context.Context, s endpoint.BreakerState) context.Context {
	if c, ok := tryctx.AttemptOf[endpoint.AttemptInfo](ctx); ok {
		c.Info.Breaker = s
		return ctx
	}
	return endpoint.WithAttempt(ctx, endpoint.AttemptInfo{Attempt: 1, Breaker: s})
}
