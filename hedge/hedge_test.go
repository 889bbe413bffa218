package hedge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/lazyctx"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

var errFlaky = errors.New("flaky")

// tries is an endpoint whose behaviour depends on the try's hedge index.
type tries struct {
	mu      sync.Mutex
	started []int
	byIndex map[int]func(ctx context.Context) (any, error)
}

func (tr *tries) endpoint(ctx context.Context, _ any) (any, error) {
	info, _ := endpoint.AttemptFromContext(ctx)
	tr.mu.Lock()
	tr.started = append(tr.started, info.HedgeIndex)
	f := tr.byIndex[info.HedgeIndex]
	tr.mu.Unlock()
	return f(ctx)
}

func (tr *tries) count() int { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.started) }

// chain is the compiled order around hedging: observe → retry → hedge →
// budget → classify.
func chain(h endpoint.Middleware, b middleware.Budget, ep endpoint.Endpoint) endpoint.Endpoint {
	return endpoint.Chain(middleware.Observe("k"), middleware.Retry(middleware.MaxAttempts(1)), h,
		middleware.BudgetGate(b), middleware.Classify(nil))(ep)
}

func TestFixedDelayHedgeWinsAndCancelsTheSlowTry(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	primaryCancelled := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(ctx context.Context) (any, error) {
			select {
			case <-time.After(200 * time.Millisecond):
				return "slow", nil
			case <-ctx.Done():
				close(primaryCancelled)
				return nil, ctx.Err()
			}
		},
		1: func(context.Context) (any, error) { return "fast", nil },
	}}
	ep := chain(New(FixedDelay(20*time.Millisecond), WithClock(f)), nil, tr.endpoint)
	ctx, c := timeline.Record(context.Background())

	start := time.Now()
	type result struct {
		resp any
		err  error
	}
	done := make(chan result, 1)
	go func() { resp, err := ep(ctx, nil); done <- result{resp, err} }()
	f.BlockUntil(1) // the hedge timer is armed while the primary runs
	f.Advance(20 * time.Millisecond)
	r := <-done
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Fatalf("call took %v; the hedge should have won at once", took)
	}
	if r.err != nil || r.resp != "fast" {
		t.Fatalf("got %v, %v", r.resp, r.err)
	}
	select {
	case <-primaryCancelled:
	default:
		t.Fatal("the slow try's context was not cancelled before the call returned")
	}
	a := c.Timeline().Attempts
	if len(a) != 2 {
		t.Fatalf("records = %+v", a)
	}
	reasons := map[int]string{}
	for _, r := range a {
		reasons[r.HedgeIndex] = r.Reason
	}
	if reasons[1] != timeline.ReasonHedgeWon || reasons[0] != timeline.ReasonHedgeLost {
		t.Fatalf("reasons = %v", reasons)
	}
	// goleak (TestMain) checks that no try outlived the call.
}

func TestPrimaryWinsBeforeTheTriggerWithoutSpawning(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(context.Context) (any, error) { return "ok", nil },
	}}
	ep := chain(New(FixedDelay(time.Second), WithClock(f)), nil, tr.endpoint)
	if resp, err := ep(context.Background(), nil); resp != "ok" || err != nil {
		t.Fatalf("%v %v", resp, err)
	}
	if tr.count() != 1 || f.Waiters() != 0 {
		t.Fatalf("tries %d, timers left armed %d", tr.count(), f.Waiters())
	}
}

func TestRetryableFailureDoesNotEndTheRace(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	release := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(ctx context.Context) (any, error) { <-release; return nil, errFlaky },
		1: func(ctx context.Context) (any, error) {
			close(release) // the primary fails while this hedge still runs
			time.Sleep(5 * time.Millisecond)
			return "hedged", nil
		},
	}}
	ep := chain(New(FixedDelay(time.Millisecond), WithClock(f)), nil, tr.endpoint)
	done := make(chan any, 1)
	go func() { resp, _ := ep(context.Background(), nil); done <- resp }()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	if got := <-done; got != "hedged" {
		t.Fatalf("got %v, want the hedge's success", got)
	}
}

func TestNonRetryableFailureEndsTheRace(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	hedgeCancelled := make(chan struct{})
	fatal := errors.New("bad request")
	hedgeStarted := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(ctx context.Context) (any, error) { <-hedgeStarted; return nil, middleware.Permanent(fatal) },
		1: func(ctx context.Context) (any, error) {
			close(hedgeStarted)
			<-ctx.Done()
			close(hedgeCancelled)
			return nil, ctx.Err()
		},
	}}
	ep := chain(New(FixedDelay(time.Millisecond), WithClock(f)), nil, tr.endpoint)
	done := make(chan error, 1)
	go func() { _, err := ep(context.Background(), nil); done <- err }()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	if err := <-done; !errors.Is(err, fatal) {
		t.Fatalf("err = %v", err)
	}
	<-hedgeCancelled
}

func TestNoHedgingUnlessBreakerClosed(t *testing.T) {
	for _, s := range []endpoint.BreakerState{endpoint.BreakerHalfOpen, endpoint.BreakerOpen} {
		f := clock.NewFake(time.Unix(0, 0))
		tr := &tries{byIndex: map[int]func(context.Context) (any, error){
			0: func(context.Context) (any, error) { return "ok", nil },
		}}
		h := New(FixedDelay(time.Nanosecond), WithClock(f))(tr.endpoint)
		ctx := endpoint.WithAttempt(context.Background(), endpoint.AttemptInfo{Attempt: 1, Breaker: s})
		if _, err := h(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if f.Waiters() != 0 || tr.count() != 1 {
			t.Fatalf("breaker %v: timers %d tries %d", s, f.Waiters(), tr.count())
		}
	}
}

func TestHedgeRefusedByBudgetDoesNotRun(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	finish := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(ctx context.Context) (any, error) { <-finish; return "primary", nil },
		1: func(context.Context) (any, error) { t.Error("refused hedge ran"); return nil, nil },
	}}
	denials := make(chan timeline.BudgetDecision, 1)
	obs := &budgetObserver{ch: denials}
	ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(obs)), middleware.Retry(middleware.MaxAttempts(1)),
		New(FixedDelay(time.Millisecond), WithClock(f)), middleware.BudgetGate(middleware.NewTokenBucketBudget(0, 0)),
		middleware.Classify(nil))(tr.endpoint)
	ctx, c := timeline.Record(context.Background())
	done := make(chan any, 1)
	go func() { resp, _ := ep(ctx, nil); done <- resp }()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	d := <-denials // the hedge asked and was refused
	close(finish)
	if got := <-done; got != "primary" {
		t.Fatalf("got %v", got)
	}
	if d.Allowed || !d.Hedge {
		t.Fatalf("decision = %+v", d)
	}
	var denied int
	for _, a := range c.Timeline().Attempts {
		if a.Reason == timeline.ReasonBudgetDenied && a.Hedge {
			denied++
		}
	}
	if denied != 1 {
		t.Fatalf("timeline = %v", c.Timeline())
	}
}

type budgetObserver struct {
	timeline.BaseObserver
	ch chan timeline.BudgetDecision
}

func (b *budgetObserver) OnBudgetDecision(_ context.Context, d timeline.BudgetDecision) {
	if !d.Allowed {
		b.ch <- d
	}
}

func TestMaxHedgesBoundsConcurrentTries(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	var inFlight, peak atomic.Int32
	started := make(chan struct{}, 4)
	block := func(ctx context.Context) (any, error) {
		started <- struct{}{}
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-ctx.Done()
		inFlight.Add(-1)
		return nil, ctx.Err()
	}
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){0: block, 1: block, 2: block, 3: block}}
	ctx, cancel := context.WithCancel(context.Background())
	ep := chain(New(FixedDelay(time.Millisecond), MaxHedges(2), WithClock(f)), nil, tr.endpoint)
	done := make(chan struct{})
	go func() { _, _ = ep(ctx, nil); close(done) }()
	for i := 0; i < 2; i++ {
		f.BlockUntil(1)
		f.Advance(time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		<-started
	}
	f.Advance(time.Hour) // nothing more may fire
	cancel()
	<-done
	if tr.count() != 3 || peak.Load() != 3 {
		t.Fatalf("tries %d peak %d, want primary + 2 hedges", tr.count(), peak.Load())
	}
}

func TestLatencyTriggerHedgesOnlyWhenWarmAndAtTheQuantile(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	trig := NewLatencyTrigger(NewLatencyTracker(0), 0.99, MinSamples(20))
	var hedged atomic.Int32
	var primaryCost atomic.Int64
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(ctx context.Context) (any, error) {
			if d := time.Duration(primaryCost.Load()); d > 0 {
				f.Advance(d) // a fast call: its latency is d on the fake clock
				return "fast", nil
			}
			<-ctx.Done() // the slow call
			return nil, ctx.Err()
		},
		1: func(context.Context) (any, error) { hedged.Add(1); return "hedge", nil },
	}}
	ep := chain(New(trig, WithClock(f)), nil, tr.endpoint)

	// Cold: no hedge timer is ever armed.
	primaryCost.Store(int64(5 * time.Millisecond))
	for i := 0; i < 19; i++ {
		if _, err := ep(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if f.Waiters() != 0 {
			t.Fatalf("call %d armed a hedge before the tracker was warm", i)
		}
	}
	if _, err := ep(context.Background(), nil); err != nil { // the 20th sample
		t.Fatal(err)
	}
	if n := trig.tracker.Count(); n != 20 {
		t.Fatalf("tracker has %d samples, want 20 fed by the decorator", n)
	}

	// Warm at p99 ≈ 5ms: a slow call is hedged after about 5ms, not before.
	primaryCost.Store(0)
	done := make(chan any, 1)
	go func() { resp, _ := ep(context.Background(), nil); done <- resp }()
	f.BlockUntil(1)
	f.Advance(4 * time.Millisecond)
	if hedged.Load() != 0 || f.Waiters() != 1 {
		t.Fatalf("hedged before the p99")
	}
	f.Advance(2 * time.Millisecond)
	if got := <-done; got != "hedge" || hedged.Load() != 1 {
		t.Fatalf("got %v, hedged %d", got, hedged.Load())
	}
}

func TestGroupKeepsRacingAfterARetryableFailure(t *testing.T) {
	g := &group{ctx: context.Background(), tries: []*lazyctx.Ctx{lazyctx.WithCancel(context.Background()), lazyctx.WithCancel(context.Background())}}
	retryable := &middleware.ClassifiedError{Err: errFlaky, Verdict: middleware.Verdict{Outcome: timeline.OutcomeRetryable}}
	g.consider(0, nil, retryable)
	if g.decided || !g.hasLast {
		t.Fatal("a retryable failure of the primary ended the race")
	}
	g.consider(1, "ok", nil)
	if !g.decided || g.winner != 1 || g.resp != "ok" {
		t.Fatalf("decided %v winner %d resp %v", g.decided, g.winner, g.resp)
	}
}

// held is a response holding a resource.
type held struct {
	name      string
	discarded atomic.Bool
}

func (h *held) Discard() { h.discarded.Store(true) }

func TestLosingResponsesAreDiscarded(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	primary, hedged := &held{name: "primary"}, &held{name: "hedge"}
	hedgeDone := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(ctx context.Context) (any, error) {
			<-hedgeDone
			return primary, nil // finished too, but after the hedge won
		},
		1: func(context.Context) (any, error) { defer close(hedgeDone); return hedged, nil },
	}}
	ep := chain(New(FixedDelay(time.Millisecond), WithClock(f)), nil, tr.endpoint)
	done := make(chan any, 1)
	go func() { resp, _ := ep(context.Background(), nil); done <- resp }()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	winner := (<-done).(*held)
	loser := primary
	if winner == primary {
		loser = hedged
	}
	if winner.discarded.Load() || !loser.discarded.Load() {
		t.Fatalf("winner %s discarded=%v, loser %s discarded=%v", winner.name, winner.discarded.Load(), loser.name, loser.discarded.Load())
	}
}

func TestAtMostOnceIsNeverHedged(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){0: func(context.Context) (any, error) { return "ok", nil }}}
	h := New(FixedDelay(time.Nanosecond), WithClock(f))(tr.endpoint)
	if _, err := h(endpoint.AtMostOnce(context.Background()), nil); err != nil || f.Waiters() != 0 {
		t.Fatalf("err %v, timers armed %d", err, f.Waiters())
	}
}
