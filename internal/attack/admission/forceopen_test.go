package admissionattack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

type transition struct{ from, to endpoint.BreakerState }

// stateLog is a BreakerConfig.OnStateChange that records transitions.
type stateLog struct {
	mu sync.Mutex
	ts []transition
}

func (l *stateLog) on(_ string, from, to endpoint.BreakerState) {
	l.mu.Lock()
	l.ts = append(l.ts, transition{from, to})
	l.mu.Unlock()
}

func (l *stateLog) get() []transition {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]transition(nil), l.ts...)
}

// checkChain checks that transitions form one unbroken sequence from
// closed, each leaving the state the one before entered, never a self-loop.
func checkChain(t *testing.T, ts []transition, final endpoint.BreakerState) {
	t.Helper()
	cur := endpoint.BreakerClosed
	for i, tr := range ts {
		if tr.from != cur || tr.from == tr.to {
			t.Fatalf("transition %d: %v->%v but breaker was %v (all: %v)", i, tr.from, tr.to, cur, ts)
		}
		cur = tr.to
	}
	if cur != final {
		t.Fatalf("transitions end in %v, State() is %v", cur, final)
	}
}

// through returns an endpoint running op through b.
func through(b *middleware.CircuitBreaker, op func(ctx context.Context) error) endpoint.Endpoint {
	return middleware.Breaker(b)(endpoint.FromErrFunc(op))
}

func call(ep endpoint.Endpoint) error {
	_, err := ep(context.Background(), nil)
	return err
}

func TestForceOpenHoldsPastCooldown(t *testing.T) {
	l := &stateLog{}
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{Cooldown: 10 * time.Millisecond, OnStateChange: l.on})
	var ran atomic.Int32
	ep := through(b, func(context.Context) error { ran.Add(1); return nil })
	b.ForceOpen()
	b.ForceOpen()
	time.Sleep(80 * time.Millisecond) // eight cooldowns
	for i := 0; i < 20; i++ {
		if st := b.State(); st != endpoint.BreakerOpen {
			t.Fatalf("state after cooldown: %v, want open", st)
		}
		if err := call(ep); !errors.Is(err, middleware.ErrCircuitOpen) {
			t.Fatalf("call %d: %v, want ErrCircuitOpen", i, err)
		}
	}
	if ran.Load() != 0 || !b.Forced() {
		t.Fatalf("op ran %d times, Forced=%v", ran.Load(), b.Forced())
	}
	b.Reset()
	b.Reset()
	if b.Forced() || b.State() != endpoint.BreakerClosed {
		t.Fatalf("after Reset: forced=%v state=%v", b.Forced(), b.State())
	}
	if err := call(ep); err != nil {
		t.Fatalf("call after Reset: %v", err)
	}
	want := []transition{{endpoint.BreakerClosed, endpoint.BreakerOpen}, {endpoint.BreakerOpen, endpoint.BreakerClosed}}
	if got := l.get(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
}

func TestForceOpenWhileTrippedHoldsAndReportsNothing(t *testing.T) {
	l := &stateLog{}
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: 20 * time.Millisecond, OnStateChange: l.on})
	ep := through(b, func(context.Context) error { return errBoom })
	if err := call(ep); !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
	if b.State() != endpoint.BreakerOpen {
		t.Fatalf("not tripped: %v", b.State())
	}
	b.ForceOpen()
	time.Sleep(100 * time.Millisecond)
	if st := b.State(); st != endpoint.BreakerOpen || !b.Forced() {
		t.Fatalf("forced breaker went %v (forced=%v)", st, b.Forced())
	}
	want := []transition{{endpoint.BreakerClosed, endpoint.BreakerOpen}}
	if got := l.get(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	b.Reset()
	checkChain(t, l.get(), b.State())
}

func TestForceOpenFromHalfOpen(t *testing.T) {
	l := &stateLog{}
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: 20 * time.Millisecond, OnStateChange: l.on})
	_ = call(through(b, func(context.Context) error { return errBoom }))
	waitFor(t, "half-open", func() bool { return b.State() == endpoint.BreakerHalfOpen })
	b.ForceOpen()
	time.Sleep(100 * time.Millisecond)
	if st := b.State(); st != endpoint.BreakerOpen {
		t.Fatalf("state %v, want open", st)
	}
	checkChain(t, l.get(), endpoint.BreakerOpen)
	if n := len(l.get()); n != 3 {
		t.Fatalf("want closed->open->half_open->open, got %v", l.get())
	}
}

// A half-open probe admitted before ForceOpen that succeeds after it must
// not close the forced breaker.
func TestForceOpenNotUndoneByInFlightProbe(t *testing.T) {
	l := &stateLog{}
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: 20 * time.Millisecond, OnStateChange: l.on})
	_ = call(through(b, func(context.Context) error { return errBoom }))
	waitFor(t, "half-open", func() bool { return b.State() == endpoint.BreakerHalfOpen })
	in, out := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- call(through(b, func(context.Context) error { close(in); <-out; return nil }))
	}()
	<-in
	b.ForceOpen()
	close(out)
	if err := <-done; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := b.State(); st != endpoint.BreakerOpen || !b.Forced() {
		t.Fatalf("after probe success: state %v forced %v, want held open", st, b.Forced())
	}
	checkChain(t, l.get(), endpoint.BreakerOpen)
}

// "Tries admitted before Reset that end after it are not counted."
func TestResetIgnoresInFlightFailures(t *testing.T) {
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprint("forceFirst=", force), func(t *testing.T) {
			b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Minute})
			const n = 8
			in, out := make(chan struct{}, n), make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = call(through(b, func(context.Context) error { in <- struct{}{}; <-out; return errBoom }))
				}()
			}
			for i := 0; i < n; i++ {
				<-in
			}
			if force {
				b.ForceOpen()
			}
			b.Reset()
			close(out)
			wg.Wait()
			if st := b.State(); st != endpoint.BreakerClosed {
				t.Fatalf("failures admitted before Reset were counted: state %v", st)
			}
		})
	}
}

// An OnStateChange that calls back into the breaker (the docs allow it)
// must not deadlock, even when it undoes the transition it was told of.
func TestForceOpenCallbackReentry(t *testing.T) {
	var b *middleware.CircuitBreaker
	var once sync.Once
	l := &stateLog{}
	b = middleware.NewCircuitBreaker(middleware.BreakerConfig{Cooldown: time.Minute, OnStateChange: func(name string, from, to endpoint.BreakerState) {
		l.on(name, from, to)
		_ = b.State()
		_ = b.Forced()
		_ = b.Config()
		if to == endpoint.BreakerOpen {
			once.Do(b.Reset)
		}
	}})
	done := make(chan struct{})
	go func() { b.ForceOpen(); close(done) }()
	select {
	case <-done:
	case <-time.After(longWait):
		t.Fatal("ForceOpen with a re-entrant OnStateChange deadlocked")
	}
	if b.State() != endpoint.BreakerClosed || b.Forced() {
		t.Fatalf("state %v forced %v after callback Reset", b.State(), b.Forced())
	}
	checkChain(t, l.get(), endpoint.BreakerClosed)
	if len(l.get()) != 2 {
		t.Fatalf("transitions %v", l.get())
	}
}

// Hundreds of goroutines calling through a breaker that operators flip
// ForceOpen/Reset and that trips on its own: transitions reach
// OnStateChange in order, exactly once (an unbroken chain), under -race.
func TestForceOpenResetStorm(t *testing.T) {
	l := &stateLog{}
	b := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 3, Cooldown: 10 * time.Millisecond, HalfOpenProbes: 2, OnStateChange: l.on})
	var stop atomic.Bool
	var wg sync.WaitGroup
	var i atomic.Int64
	ep := through(b, func(context.Context) error {
		if i.Add(1)%3 == 0 {
			return errBoom
		}
		return nil
	})
	for g := 0; g < 200; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_ = call(ep)
				_ = b.State()
			}
		}()
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				if (k+g)%2 == 0 {
					b.ForceOpen()
				} else {
					b.Reset()
				}
				time.Sleep(time.Millisecond)
			}
		}(g)
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	b.Reset()
	checkChain(t, l.get(), b.State())
	if err := call(through(b, func(context.Context) error { return nil })); err != nil {
		t.Fatalf("call after storm: %v", err)
	}
	if len(l.get()) < 2 {
		t.Fatalf("storm made only %d transitions", len(l.get()))
	}
}

func executorTransitions(o *obs) []transition {
	parse := map[string]endpoint.BreakerState{"closed": endpoint.BreakerClosed, "half_open": endpoint.BreakerHalfOpen, "open": endpoint.BreakerOpen}
	var ts []transition
	for _, ev := range o.transitions() {
		ts = append(ts, transition{parse[ev.From], parse[ev.To]})
	}
	return ts
}

// Through the executor: ForceOpen holds past the policy's cooldown, calls
// fail fast with circuit_open, and both transitions reach observers once.
func TestExecutorForceOpenReset(t *testing.T) {
	o := newObs()
	const key = "adm.force"
	e := recourse.NewExecutor(recourse.WithObserver(o), recourse.WithPolicy(key, opts(fastRetry(3), breakerOpt(5, 10*time.Millisecond))...))
	if err := e.Do(context.Background(), key, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	b := e.Breaker(key)
	if b == nil {
		t.Fatal("no breaker after a call")
	}
	b.ForceOpen()
	time.Sleep(60 * time.Millisecond)
	var ran atomic.Int32
	for i := 0; i < 10; i++ {
		tl, err := e.DoWithTimeline(context.Background(), key, func(context.Context) error { ran.Add(1); return nil })
		if !errors.Is(err, middleware.ErrCircuitOpen) {
			t.Fatalf("call %d: %v", i, err)
		}
		if tl == nil || countReason(tl.Attempts, timeline.ReasonCircuitOpen) != 1 || len(tl.Attempts) != 1 {
			t.Fatalf("timeline %+v", tl)
		}
	}
	if ran.Load() != 0 {
		t.Fatalf("op ran %d times through a forced breaker", ran.Load())
	}
	b.Reset()
	if err := e.Do(context.Background(), key, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	want := []transition{{endpoint.BreakerClosed, endpoint.BreakerOpen}, {endpoint.BreakerOpen, endpoint.BreakerClosed}}
	if got := executorTransitions(o); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observer transitions %v, want %v", got, want)
	}
	for _, ev := range o.transitions() {
		if ev.Key != key {
			t.Fatalf("transition for key %q", ev.Key)
		}
	}
}

// An operator wants to isolate a dependency before its key has been
// called: Explain resolves the key, so the breaker should then exist.
func TestExecutorBreakerAfterExplain(t *testing.T) {
	const key = "adm.explain"
	e := recourse.NewExecutor(recourse.WithPolicy(key, breakerOpt(5, time.Second)))
	if e.Breaker(key) != nil {
		t.Log("Breaker non-nil before any call (fine)")
	}
	if _, err := e.Explain(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	b := e.Breaker(key)
	if b == nil {
		t.Fatal("Breaker(key) is nil after Explain resolved the key")
	}
	b.ForceOpen()
	if err := e.Do(context.Background(), key, func(context.Context) error { return nil }); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("call after ForceOpen of the Explain breaker: %v", err)
	}
}

// Executor storm: 300 goroutines call a key while operators flip its
// breaker; observers see an unbroken chain of transitions.
func TestExecutorForceOpenStormObserverChain(t *testing.T) {
	o := newObs()
	const key = "adm.storm"
	e := recourse.NewExecutor(recourse.WithObserver(o), recourse.WithPolicy(key, opts(fastRetry(2), breakerOpt(3, 10*time.Millisecond))...))
	_ = e.Do(context.Background(), key, func(context.Context) error { return nil })
	b := e.Breaker(key)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var n atomic.Int64
	for g := 0; g < 300; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_ = e.Do(context.Background(), key, func(context.Context) error {
					if n.Add(1)%4 == 0 {
						return errBoom
					}
					return nil
				})
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; !stop.Load(); k++ {
			if k%2 == 0 {
				e.Breaker(key).ForceOpen()
			} else {
				e.Breaker(key).Reset()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	b.Reset()
	checkChain(t, executorTransitions(o), b.State())
}

// README: `exec.Breaker(key).ForceOpen()`. Breaker returns nil for a key
// with no breaker (or not yet called); the chained idiom must not crash.
func TestNilBreakerMethodsDoNotPanic(t *testing.T) {
	e := recourse.NewExecutor()
	b := e.Breaker("adm.never")
	if b != nil {
		t.Skip("Breaker returned non-nil")
	}
	for name, f := range map[string]func(){
		"ForceOpen": func() { b.ForceOpen() },
		"Reset":     func() { b.Reset() },
		"Forced":    func() { _ = b.Forced() },
		"State":     func() { _ = b.State() },
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("nil (*CircuitBreaker).%s panicked: %v", name, r)
				}
			}()
			f()
		}()
	}
}

// Two operators (or an operator and a fleet signal) flipping one breaker at
// once: OnStateChange must still get the transitions in order.
func TestConcurrentForceOpenResetTransitionsInOrder(t *testing.T) {
	for rep := 0; rep < 20; rep++ {
		l := &stateLog{}
		b := middleware.NewCircuitBreaker(middleware.BreakerConfig{Cooldown: time.Minute, OnStateChange: l.on})
		var wg sync.WaitGroup
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for k := 0; k < 2000; k++ {
					if g == 0 {
						b.ForceOpen()
					} else {
						b.Reset()
					}
				}
			}(g)
		}
		wg.Wait()
		b.Reset()
		checkChain(t, l.get(), b.State())
	}
}
