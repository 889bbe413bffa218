package hedge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// slowPrimary blocks until its try is cancelled; fastHedge answers at once.
func slowPrimary(ctx context.Context) (any, error) { <-ctx.Done(); return nil, ctx.Err() }
func fastHedge(context.Context) (any, error)       { return "fast", nil }

// panicky is an observer that panics in the callbacks it is told to.
type panicky struct {
	timeline.BaseObserver
	onAttemptHedge bool // OnAttempt of a hedged try
	onHedge        bool
}

func (p *panicky) OnAttempt(_ context.Context, _ string, rec timeline.AttemptRecord) {
	if p.onAttemptHedge && rec.HedgeIndex > 0 {
		panic("observer boom")
	}
}

func (p *panicky) OnHedge(context.Context, timeline.HedgeEvent) {
	if p.onHedge {
		panic("on-hedge boom")
	}
}

// race runs ep on its own goroutine, fires the hedge timer once, and
// returns what the call did: its result, or the value it panicked with.
func race(t *testing.T, f *clock.Fake, ep endpoint.Endpoint, ctx context.Context) (resp, panicked any, err error) {
	t.Helper()
	type result struct {
		resp     any
		err      error
		panicked any
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			r.panicked = recover()
			done <- r
		}()
		r.resp, r.err = ep(ctx, nil)
	}()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	select {
	case r := <-done:
		return r.resp, r.panicked, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not return")
	}
	return nil, nil, nil
}

func TestRegressObserverPanicOnHedgeGoroutineReachesCaller(t *testing.T) {
	for _, obs := range []*panicky{{onAttemptHedge: true}, {onHedge: true}} {
		f := clock.NewFake(time.Unix(0, 0))
		tr := &tries{byIndex: map[int]func(context.Context) (any, error){0: slowPrimary, 1: fastHedge}}
		ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(obs)), middleware.Retry(middleware.MaxAttempts(1)),
			New(FixedDelay(time.Millisecond), WithClock(f)), middleware.Classify(nil))(tr.endpoint)
		_, p, _ := race(t, f, ep, context.Background())
		if p != "observer boom" && p != "on-hedge boom" {
			t.Fatalf("%+v: the caller's goroutine panicked with %v, want the observer's panic", *obs, p)
		}
	}
}

func TestRegressOperationPanicOnHedgeGoroutineReachesCaller(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: slowPrimary,
		1: func(context.Context) (any, error) { panic("op boom") },
	}}
	ep := chain(New(FixedDelay(time.Millisecond), WithClock(f)), nil, tr.endpoint)
	if _, p, _ := race(t, f, ep, context.Background()); p != "op boom" {
		t.Fatalf("the caller's goroutine panicked with %v, want the operation's panic", p)
	}
}

func TestRegressRecoveredHedgePanicIsAPanicError(t *testing.T) {
	cases := []struct {
		obs   *panicky
		op    func(context.Context) (any, error)
		value string
	}{
		{&panicky{onAttemptHedge: true}, fastHedge, "observer boom"},
		{&panicky{onHedge: true}, fastHedge, "on-hedge boom"},
		{&panicky{}, func(context.Context) (any, error) { panic("op boom") }, "op boom"},
	}
	for _, c := range cases {
		f := clock.NewFake(time.Unix(0, 0))
		tr := &tries{byIndex: map[int]func(context.Context) (any, error){0: slowPrimary, 1: c.op}}
		ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(c.obs)),
			middleware.Retry(middleware.MaxAttempts(3)),
			New(FixedDelay(time.Millisecond), WithClock(f), recoverPanics("k")), middleware.Classify(nil))(tr.endpoint)
		_, p, err := race(t, f, ep, context.Background())
		if p != nil {
			t.Fatalf("%s: panicked with %v; with recovery on it must be an error", c.value, p)
		}
		var pe *middleware.PanicError
		if !errors.As(err, &pe) || pe.Value != c.value || pe.Key != "k" || len(pe.Stack) == 0 {
			t.Fatalf("err = %v, want a *PanicError carrying %q", err, c.value)
		}
		if tr.count() > 2 {
			t.Fatalf("%s: %d tries: a panic is not retried", c.value, tr.count())
		}
	}
}

func TestRegressPrimaryPanicCancelsAndAwaitsHedges(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	hedgeRunning, hedgeEnded := make(chan struct{}), make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(context.Context) (any, error) { <-hedgeRunning; panic("primary boom") },
		1: func(ctx context.Context) (any, error) {
			close(hedgeRunning)
			<-ctx.Done()
			close(hedgeEnded)
			return nil, ctx.Err()
		},
	}}
	ep := chain(New(FixedDelay(time.Millisecond), WithClock(f)), nil, tr.endpoint)
	if _, p, _ := race(t, f, ep, context.Background()); p != "primary boom" {
		t.Fatalf("panicked with %v", p)
	}
	select {
	case <-hedgeEnded:
	default:
		t.Fatal("the hedge outlived the panicking call: its try was not cancelled and awaited")
	}
}

// streamed collects what an observer is told: the records as they are
// streamed and the final timeline.
type streamed struct {
	timeline.BaseObserver
	mu     sync.Mutex
	recs   []timeline.AttemptRecord
	finals []*timeline.Timeline
}

func (s *streamed) OnAttempt(_ context.Context, _ string, rec timeline.AttemptRecord) {
	s.mu.Lock()
	s.recs = append(s.recs, rec)
	s.mu.Unlock()
}

func (s *streamed) OnFinish(_ context.Context, tl *timeline.Timeline) {
	s.mu.Lock()
	s.finals = append(s.finals, tl)
	s.mu.Unlock()
}

func TestRegressStreamedRecordsAgreeWithTheTimeline(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	obs := &streamed{}
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){0: slowPrimary, 1: fastHedge}}
	ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(obs)), middleware.Retry(middleware.MaxAttempts(1)),
		New(FixedDelay(time.Millisecond), WithClock(f)), middleware.Classify(nil))(tr.endpoint)
	if resp, p, err := race(t, f, ep, context.Background()); resp != "fast" || err != nil || p != nil {
		t.Fatalf("%v %v %v", resp, err, p)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.finals) != 1 {
		t.Fatalf("%d timelines", len(obs.finals))
	}
	final := obs.finals[0].Attempts
	if len(obs.recs) != len(final) || len(final) != 2 {
		t.Fatalf("streamed %+v\nfinal %+v", obs.recs, final)
	}
	for i := range final {
		s, e := obs.recs[i], final[i]
		if s.HedgeIndex != e.HedgeIndex || s.Outcome != e.Outcome || s.Reason != e.Reason {
			t.Errorf("record %d: streamed %d %s/%s, timeline %d %s/%s", i,
				s.HedgeIndex, s.Outcome, s.Reason, e.HedgeIndex, e.Outcome, e.Reason)
		}
		want := timeline.ReasonHedgeLost
		if e.HedgeIndex == 1 {
			want = timeline.ReasonHedgeWon
		}
		if e.Reason != want {
			t.Errorf("try %d: reason %s, want %s", e.HedgeIndex, e.Reason, want)
		}
	}
}

func TestRegressZerologDoesNotWarnAboutAHedgeLoser(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	var buf bytes.Buffer
	var mu sync.Mutex
	obs := timeline.NewZerologObserver(zerolog.New(lockedWriter{&mu, &buf}))
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){0: slowPrimary, 1: fastHedge}}
	ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(obs)), middleware.Retry(middleware.MaxAttempts(1)),
		New(FixedDelay(time.Millisecond), WithClock(f)), middleware.Classify(nil))(tr.endpoint)
	if resp, p, err := race(t, f, ep, context.Background()); resp != "fast" || err != nil || p != nil {
		t.Fatalf("%v %v %v", resp, err, p)
	}
	mu.Lock()
	defer mu.Unlock()
	var attempts int
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var ev map[string]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if ev["level"] == "warn" || ev["level"] == "error" {
			t.Errorf("logged at %s: %s", ev["level"], line)
		}
		if ev["event"] == "attempt" {
			attempts++
			if ev["hedge_index"] == 0.0 && ev["reason"] != timeline.ReasonHedgeLost {
				t.Errorf("the loser is logged as %s: %s", ev["reason"], line)
			}
		}
	}
	if attempts != 2 {
		t.Fatalf("%d attempt events:\n%s", attempts, buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// panickyTrigger is a fixed delay whose latency feed panics.
type panickyTrigger struct{ FixedDelay }

func (panickyTrigger) ObserveLatency(time.Duration) { panic("trigger boom") }

func TestRegressTriggerPanicOnThePrimaryDoesNotStrandAHedge(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	hedgeRunning, hedgeEnded := make(chan struct{}), make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(context.Context) (any, error) { <-hedgeRunning; return "primary", nil },
		1: func(ctx context.Context) (any, error) {
			close(hedgeRunning)
			<-ctx.Done()
			close(hedgeEnded)
			return nil, ctx.Err()
		},
	}}
	ep := chain(New(panickyTrigger{FixedDelay(time.Millisecond)}, WithClock(f)), nil, tr.endpoint)
	if _, p, _ := race(t, f, ep, context.Background()); p != "trigger boom" {
		t.Fatalf("panicked with %v", p)
	}
	select {
	case <-hedgeEnded:
	default:
		t.Fatal("the hedge outlived the call")
	}
}

// boomResp is a response whose Discard panics.
type boomResp struct{}

func (boomResp) Discard() { panic("discard boom") }

func TestRegressDiscardPanicOnAHedgeGoroutineReachesCaller(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	hedgeRunning := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(context.Context) (any, error) { <-hedgeRunning; return "primary", nil },
		1: func(ctx context.Context) (any, error) {
			close(hedgeRunning)
			<-ctx.Done() // lost: its response is dropped
			return boomResp{}, nil
		},
	}}
	ep := chain(New(FixedDelay(time.Millisecond), WithClock(f)), nil, tr.endpoint)
	if _, p, _ := race(t, f, ep, context.Background()); p != "discard boom" {
		t.Fatalf("panicked with %v", p)
	}
}

func TestRegressCancellationAroundTheHedgeTimer(t *testing.T) {
	// The caller cancels at about the time hedges fire and tries end:
	// every call must return promptly, leave nothing running (goleak),
	// report either a try's result or the cancellation, and tell its
	// observer what its timeline says.
	op := func(ctx context.Context, _ any) (any, error) {
		select {
		case <-time.After(time.Duration(time.Now().UnixNano()%3000) * time.Microsecond):
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	obs := &streamed{}
	ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(obs)), middleware.Retry(middleware.MaxAttempts(2)),
		New(FixedDelay(time.Millisecond), MaxHedges(2)), middleware.Classify(nil))(op)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((w*40+i)%25)*100*time.Microsecond)
				start := time.Now()
				resp, err := ep(ctx, nil)
				cancel()
				if took := time.Since(start); took > 10*time.Second { // a hang, not a slow machine
					t.Errorf("call took %v", took)
				}
				if (resp == "done") == (err != nil) {
					t.Errorf("resp %v err %v", resp, err)
				}
			}
		}(w)
	}
	wg.Wait()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	type verdict struct {
		outcome timeline.Outcome
		reason  string
	}
	count := map[verdict]int{}
	for _, r := range obs.recs {
		count[verdict{r.Outcome, r.Reason}]++
	}
	for _, tl := range obs.finals {
		for _, r := range tl.Attempts {
			count[verdict{r.Outcome, r.Reason}]--
		}
	}
	for v, n := range count {
		if n != 0 {
			t.Errorf("%s/%s: %d more streamed than in the timelines", v.outcome, v.reason, n)
		}
	}
}

// hedgeCounter counts OnHedge events and budget decisions.
type hedgeCounter struct {
	timeline.BaseObserver
	mu               sync.Mutex
	hedges, budgeted int
}

func (h *hedgeCounter) OnHedge(context.Context, timeline.HedgeEvent) {
	h.mu.Lock()
	h.hedges++
	h.mu.Unlock()
}

func (h *hedgeCounter) OnBudgetDecision(context.Context, timeline.BudgetDecision) {
	h.mu.Lock()
	h.budgeted++
	h.mu.Unlock()
}

func TestRegressNoHedgeOnceTheCallerHasGivenUp(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	release := make(chan struct{})
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: func(context.Context) (any, error) { <-release; return nil, errFlaky }, // deaf to its context
		1: fastHedge,
	}}
	obs := &hedgeCounter{}
	ep := endpoint.Chain(middleware.Observe("k", middleware.WithObserver(obs)), middleware.Retry(middleware.MaxAttempts(1)),
		New(FixedDelay(time.Millisecond), WithClock(f)), middleware.BudgetGate(middleware.UnlimitedBudget{}),
		middleware.Classify(nil))(tr.endpoint)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := ep(ctx, nil); done <- err }()
	f.BlockUntil(1)
	cancel()                    // the caller gives up …
	f.Advance(time.Millisecond) // … just before the hedge is due
	close(release)
	if err := <-done; err == nil {
		t.Fatal("a cancelled call succeeded")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if tr.count() != 1 || obs.hedges != 0 || obs.budgeted != 0 {
		t.Fatalf("tries %d, hedge events %d, budget decisions %d: a hedge was spawned for a call already cancelled",
			tr.count(), obs.hedges, obs.budgeted)
	}
}

func TestRegressTrackerClampsNegativeLatencies(t *testing.T) {
	// A clock that steps backwards between a try's start and end gives a
	// negative latency: it must not count as the slowest one possible.
	tr := NewLatencyTracker(4)
	for i := 0; i < 4; i++ {
		tr.Observe(-time.Second)
	}
	if q := tr.Quantile(1); q > time.Millisecond {
		t.Fatalf("p100 of negative latencies = %v", q)
	}
}

// pushbackErr is a retryable failure carrying server pushback.
type pushbackErr struct{ d time.Duration }

func (p pushbackErr) Error() string             { return "busy" }
func (p pushbackErr) RetryAfter() time.Duration { return p.d }

// firedClock is a fake clock that reports each AfterFunc call's return.
type firedClock struct {
	*clock.Fake
	fired chan struct{}
}

func (c firedClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return c.Fake.AfterFunc(d, func() { f(); c.fired <- struct{}{} })
}

func TestRegressServerPushbackStopsFurtherHedges(t *testing.T) {
	// A hedge told by the server to back off: the attempt spawns no more
	// hedges (the retry loop honours the pushback before the next one).
	f := firedClock{clock.NewFake(time.Unix(0, 0)), make(chan struct{}, 2)}
	tr := &tries{byIndex: map[int]func(context.Context) (any, error){
		0: slowPrimary,
		1: func(context.Context) (any, error) { return nil, pushbackErr{time.Second} },
		2: fastHedge,
	}}
	ep := chain(New(FixedDelay(time.Millisecond), MaxHedges(2), WithClock(f)), nil, tr.endpoint)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := ep(ctx, nil); done <- err }()
	f.BlockUntil(1)
	f.Advance(time.Millisecond) // hedge 1: pushed back
	<-f.fired                   // hedge 1 has run and been taken into account
	f.BlockUntil(1)
	f.Advance(time.Millisecond) // hedge 2 would be due
	<-f.fired
	cancel()
	<-done
	if n := tr.count(); n != 2 {
		t.Fatalf("%d tries: a hedge was spawned after the server pushed back", n)
	}
}
