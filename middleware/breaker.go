package middleware

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/recourse-go/recourse/endpoint"
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
	// HalfOpenProbes is how many calls a half-open breaker admits; that
	// many successes in a row close it (default 1).
	HalfOpenProbes int
	// FailureRatio, when in (0, 1], trips the breaker when failures /
	// calls over Window reach it, once MinRequests calls were seen.
	FailureRatio float64
	// Window is the rolling window of ratio mode (default 1m, 10 buckets).
	Window time.Duration
	// MinRequests is the least number of calls in Window before ratio mode
	// may trip (default 10).
	MinRequests int
	// OnStateChange is called on every transition, in order, outside the
	// breaker's lock: on the goroutine of the breaker call (a try through
	// Breaker, or State) that made the transition, after gobreaker returns
	// and before that call does. It may call back into the breaker. If
	// calls on several goroutines make transitions at once, one of them
	// may deliver the others' too, still in order.
	OnStateChange func(name string, from, to endpoint.BreakerState)
}

// CircuitBreaker is a key's breaker: gobreaker/v2's state machine, told
// about each call by the Breaker decorator. Only tries the classifier
// calls retryable failures count against it; successes count for it;
// non-retryable errors (a 4xx, a panic), aborts (the caller's cancellation
// or deadline) and budget refusals are not counted at all.
type CircuitBreaker struct {
	cb    *gobreaker.CircuitBreaker[struct{}]
	cfg   BreakerConfig
	state atomic.Uint32 // endpoint.BreakerState, kept by gobreaker's OnStateChange

	// Transitions waiting for delivery to cfg.OnStateChange: gobreaker
	// reports them under its lock, they are delivered after it returns.
	pending  atomic.Int32 // len(queue), read without qmu on the hot path
	qmu      sync.Mutex
	queue    []transition
	flushing bool // a goroutine is delivering the queue
}

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

// NewCircuitBreaker returns a closed breaker configured by cfg.
func NewCircuitBreaker(cfg BreakerConfig) *CircuitBreaker {
	if cfg.ConsecutiveFailures <= 0 {
		cfg.ConsecutiveFailures = 5
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 10 * time.Second
	}
	if cfg.HalfOpenProbes <= 0 {
		cfg.HalfOpenProbes = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.MinRequests <= 0 {
		cfg.MinRequests = 10
	}
	st := gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: u32(cfg.HalfOpenProbes),
		Timeout:     cfg.Cooldown,
		IsExcluded:  func(err error) bool { return err == errBreakerExcluded },
	}
	if cfg.FailureRatio > 0 {
		ratio, minReq := cfg.FailureRatio, u32(cfg.MinRequests)
		st.Interval = cfg.Window
		st.BucketPeriod = cfg.Window / 10
		st.ReadyToTrip = func(c gobreaker.Counts) bool {
			return c.Requests >= minReq && float64(c.TotalFailures) >= ratio*float64(c.Requests)
		}
	} else {
		n := u32(cfg.ConsecutiveFailures)
		st.ReadyToTrip = func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= n }
	}
	b := &CircuitBreaker{cfg: cfg}
	st.OnStateChange = func(name string, from, to gobreaker.State) {
		// Under gobreaker's lock: record, deliver later (see flush).
		b.state.Store(uint32(stateOf(to)))
		if cfg.OnStateChange != nil {
			b.qmu.Lock()
			b.queue = append(b.queue, transition{name: name, from: stateOf(from), to: stateOf(to)})
			b.pending.Add(1)
			b.qmu.Unlock()
		}
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](st)
	return b
}

// Config returns the breaker's configuration (defaults filled in).
func (b *CircuitBreaker) Config() BreakerConfig { return b.cfg }

// State returns the breaker's current state. Reading it may move an open
// breaker whose cooldown has passed to half-open (and report that).
func (b *CircuitBreaker) State() endpoint.BreakerState {
	s := stateOf(b.cb.State())
	b.flush()
	return s
}

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
			var (
				resp     any
				err      error
				admitted bool
			)
			// Transitions gobreaker made are delivered once it has
			// returned, or panicked (a panicking try with recovery off).
			defer b.flush()
			// Execute's closure does not escape, so this allocates nothing.
			_, _ = b.cb.Execute(func() (struct{}, error) {
				admitted = true
				// gobreaker moved the state (and told us) while admitting.
				state := endpoint.BreakerState(b.state.Load())
				resp, err = next(withBreakerState(ctx, state), req)
				return struct{}{}, breakerVerdict(ctx, resp, err)
			})
			if !admitted {
				if rec := record.FromContext(ctx); rec != nil {
					info, _ := endpoint.AttemptFromContext(ctx)
					now := rec.Now()
					rec.Attempt(ctx, timeline.AttemptRecord{Attempt: max(info.Attempt, 1), StartTime: now, EndTime: now,
						Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonCircuitOpen, Err: errCircuitOpen.Err})
				}
				return nil, errCircuitOpen
			}
			return resp, err
		}
	}
}

// breakerVerdict maps a try's verdict to what gobreaker should count.
func breakerVerdict(ctx context.Context, resp any, err error) error {
	if err == nil {
		return nil
	}
	switch VerdictOf(ctx, resp, err).Outcome {
	case timeline.OutcomeSuccess:
		return nil
	case timeline.OutcomeRetryable:
		return errBreakerFailure
	}
	return errBreakerExcluded
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
