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
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// refusedNow asserts that a call of key is refused by the bulkhead
// without running, in exactly one bulkhead_full record.
func refusedNow(t *testing.T, e *recourse.Executor, key string) {
	t.Helper()
	var ran atomic.Bool
	tl, err := e.DoWithTimeline(context.Background(), key, func(context.Context) error { ran.Store(true); return nil })
	if !errors.Is(err, middleware.ErrBulkheadFull) {
		t.Fatalf("call into a full bulkhead: %v, want ErrBulkheadFull", err)
	}
	if ran.Load() {
		t.Fatal("op ran although the bulkhead refused it")
	}
	if tl == nil || len(tl.Attempts) != 1 || tl.Attempts[0].Reason != timeline.ReasonBulkheadFull {
		t.Fatalf("refused call's timeline: %s", fmtRecs(tl.Attempts))
	}
}

func TestBulkheadRefusalNotRetriedNotCounted(t *testing.T) {
	const key = "adm.bh.refuse"
	o := newObs()
	e := recourse.NewExecutor(recourse.WithObserver(o), recourse.WithPolicy(key, opts(fastRetry(3), bulkheadOpt(2, 0), breakerOpt(1, time.Minute))...))
	h := hold(t, e, key, 2)
	for i := 0; i < 50; i++ {
		refusedNow(t, e, key)
	}
	if st := e.Breaker(key).State(); st != endpoint.BreakerClosed {
		t.Fatalf("breaker counted bulkhead refusals: %v", st)
	}
	for _, err := range h.stop() {
		if err != nil {
			t.Fatal(err)
		}
	}
	canRunAtOnce(t, e, key, 2)
	if len(o.transitions()) != 0 {
		t.Fatalf("breaker transitions: %v", o.transitions())
	}
}

// Never more than max_concurrent inside, whatever the storm, and
// afterwards max_concurrent can run at once again.
func TestBulkheadBoundUnderStorm(t *testing.T) {
	const key, max = "adm.bh.storm", 4
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(3), bulkheadOpt(max, time.Millisecond), policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 3}))...))
	var inside, peak atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 200; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(g%5)*time.Millisecond)
				_ = e.Do(ctx, key, func(ctx context.Context) error {
					n := inside.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					defer inside.Add(-1)
					select {
					case <-time.After(time.Duration(k%3) * time.Millisecond):
					case <-ctx.Done():
					}
					if k%4 == 0 {
						return errBoom
					}
					if k%7 == 0 {
						panic("op panic")
					}
					return nil
				})
				cancel()
			}
		}(g)
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Fatalf("%d tries ran at once under max_concurrent %d", p, max)
	}
	h := hold(t, e, key, max)
	var ran atomic.Bool
	tl, err := e.DoWithTimeline(context.Background(), key, func(context.Context) error { ran.Store(true); return nil })
	if !errors.Is(err, middleware.ErrBulkheadFull) || ran.Load() {
		t.Fatalf("call into the full bulkhead: %v ran=%v (%s)", err, ran.Load(), fmtRecs(tl.Attempts))
	}
	h.stop()
	canRunAtOnce(t, e, key, max)
}

func TestBulkheadReleasedOnPanic(t *testing.T) {
	const key = "adm.bh.panic"
	for _, recovery := range []bool{true, false} {
		t.Run(fmt.Sprint("recover=", recovery), func(t *testing.T) {
			o := []recourse.Option{recourse.WithPolicy(key, opts(fastRetry(2), bulkheadOpt(1, 0))...)}
			if !recovery {
				o = append(o, recourse.WithoutPanicRecovery())
			}
			e := recourse.NewExecutor(o...)
			for i := 0; i < 10; i++ {
				func() {
					defer func() { _ = recover() }()
					err := e.Do(context.Background(), key, func(context.Context) error { panic("boom") })
					var pe *recourse.PanicError
					if recovery && !errors.As(err, &pe) {
						t.Fatalf("panic became %v", err)
					}
				}()
			}
			canRunAtOnce(t, e, key, 1)
		})
	}
}

func TestBulkheadReleasedOnCancelWhileWaiting(t *testing.T) {
	const key = "adm.bh.cancel"
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(3), bulkheadOpt(1, time.Minute))...))
	h := hold(t, e, key, 1)
	const n = 100
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ran atomic.Int32
	errs := make(chan error, n)
	tls := make(chan *timeline.Timeline, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := ctx
			if i%2 == 1 {
				var cc context.CancelFunc
				c, cc = context.WithTimeout(context.Background(), 30*time.Millisecond)
				defer cc()
			}
			tl, err := e.DoWithTimeline(c, key, func(context.Context) error { ran.Add(1); return nil })
			errs <- err
			tls <- tl
		}(i)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	wg.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waiters took %v to leave", d)
	}
	close(errs)
	close(tls)
	for err := range errs {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("waiter: %v", err)
		}
	}
	for tl := range tls {
		if tl == nil || len(tl.Attempts) != 1 {
			t.Fatalf("waiter timeline: %+v", tl)
		}
		if r := tl.Attempts[0].Reason; r != timeline.ReasonCanceled && r != timeline.ReasonTimeout {
			t.Errorf("waiter's reason %q, want canceled or timeout", r)
		}
	}
	if ran.Load() != 0 {
		t.Fatalf("%d waiters ran after cancellation", ran.Load())
	}
	h.stop()
	canRunAtOnce(t, e, key, 1)
	// and a waiter with time to spare gets the slot as soon as it frees
	h = hold(t, e, key, 1)
	got := make(chan error)
	go func() { got <- e.Do(context.Background(), key, func(context.Context) error { return nil }) }()
	time.Sleep(20 * time.Millisecond)
	h.stop()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(longWait):
		t.Fatal("waiter never admitted: slot lost")
	}
}

// A hedge that finds no slot is not sent and does not fail the call.
func TestHedgeWithoutSlotDoesNotFailCall(t *testing.T) {
	const key = "adm.bh.hedge"
	hedge := policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 2 * time.Millisecond, MaxHedges: 2})
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(1), bulkheadOpt(1, 0), hedge)...))
	var ran atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), key, func(context.Context) error {
		ran.Add(1)
		time.Sleep(40 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatalf("call failed: %v (%s)", err, fmtRecs(tl.Attempts))
	}
	if ran.Load() != 1 {
		t.Fatalf("op ran %d times with one slot", ran.Load())
	}
}

// The primary fails after its hedge was refused a slot: the caller gets the
// primary's real error, and the retry loop keeps retrying.
func TestHedgeWithoutSlotKeepsRealErrorAndRetries(t *testing.T) {
	const key = "adm.bh.hedgefail"
	hedge := policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 2 * time.Millisecond, MaxHedges: 1})
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(3), bulkheadOpt(1, 0), hedge)...))
	var ran atomic.Int32
	tl, err := e.DoWithTimeline(context.Background(), key, func(context.Context) error {
		ran.Add(1)
		time.Sleep(30 * time.Millisecond)
		return errBoom
	})
	if !errors.Is(err, errBoom) || errors.Is(err, middleware.ErrBulkheadFull) {
		t.Fatalf("call error %v, want the op's own error (%s)", err, fmtRecs(tl.Attempts))
	}
	if ran.Load() != 3 {
		t.Fatalf("op ran %d times, want 3 attempts (%s)", ran.Load(), fmtRecs(tl.Attempts))
	}
}

// A hedge loser's slot is given back: after the race, max_concurrent calls
// can run at once again.
func TestHedgeLoserReleasesSlot(t *testing.T) {
	const key = "adm.bh.loser"
	hedge := policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 3 * time.Millisecond, MaxHedges: 1})
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(1), bulkheadOpt(2, 0), hedge)...))
	for i := 0; i < 20; i++ {
		var n atomic.Int32
		tl, err := e.DoWithTimeline(context.Background(), key, func(ctx context.Context) error {
			if n.Add(1) == 1 {
				<-ctx.Done() // the primary hangs until it loses
				time.Sleep(5 * time.Millisecond)
				return ctx.Err()
			}
			return nil
		})
		if err != nil {
			t.Fatalf("hedged call: %v (%s)", err, fmtRecs(tl.Attempts))
		}
	}
	canRunAtOnce(t, e, key, 2)
}

// A retry refused by the bulkhead after a real failure returns the real
// error and spends no budget token.
func TestRetryRefusedAfterRealFailure(t *testing.T) {
	const key = "adm.bh.retry"
	budget := middleware.NewTokenBucketBudget(1, 0)
	e := recourse.NewExecutor(recourse.WithBudget("b", budget), recourse.WithPolicy(key,
		policy.MaxAttempts(2), policy.Backoff(150*time.Millisecond, 150*time.Millisecond, 1), policy.Jitter(policy.JitterNone),
		bulkheadOpt(1, 0), policy.WithBudget("b")))
	failed := make(chan struct{})
	res := make(chan error)
	var ran atomic.Int32
	go func() {
		res <- e.Do(context.Background(), key, func(context.Context) error {
			if ran.Add(1) == 1 {
				defer close(failed)
			}
			return errBoom
		})
	}()
	<-failed
	time.Sleep(10 * time.Millisecond) // let the first try give its slot back
	h := hold(t, e, key, 1)
	err := <-res
	h.stop()
	if !errors.Is(err, errBoom) {
		t.Fatalf("retry refused by the bulkhead: call returned %v, want the real error", err)
	}
	if ran.Load() != 1 {
		t.Fatalf("op ran %d times", ran.Load())
	}
	if tok := budget.(middleware.TokenReporter).Tokens(); tok < 0.999 {
		t.Fatalf("bulkhead-refused retry spent a token: %v left", tok)
	}
}

// A recourse call nested in a try of the same key, with one slot, is
// refused at once rather than deadlocking.
func TestNestedSameKeyDoesNotDeadlock(t *testing.T) {
	const key = "adm.bh.nested"
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(2), bulkheadOpt(1, 20*time.Millisecond))...))
	done := make(chan error)
	go func() {
		done <- e.Do(context.Background(), key, func(ctx context.Context) error {
			return e.Do(ctx, key, func(context.Context) error { return nil })
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, middleware.ErrBulkheadFull) {
			t.Fatalf("nested call: %v", err)
		}
	case <-time.After(longWait):
		t.Fatal("nested call deadlocked")
	}
	canRunAtOnce(t, e, key, 1)
}

// Odd bulkhead values in Go policies: no panic, bounds as documented.
func TestBulkheadOddPolicyValues(t *testing.T) {
	for i, bh := range []policy.BulkheadPolicy{
		{MaxConcurrent: 1 << 40},
		{MaxConcurrent: 1 << 40, MaxWait: 1 << 62},
		{MaxConcurrent: 3, MaxWait: time.Nanosecond},
		{Adaptive: true},
		{Adaptive: true, MaxConcurrent: 1 << 40, MaxWait: 1 << 62},
		{MaxWait: time.Second}, // no bulkhead
	} {
		key := fmt.Sprintf("adm.bh.odd%d", i)
		e, err := recourse.New(recourse.WithPolicy(key, opts(fastRetry(1), policy.WithBulkhead(bh))...))
		if err != nil {
			t.Logf("%+v: New refused: %v", bh, err)
			continue
		}
		if err := e.Do(context.Background(), key, func(context.Context) error { return nil }); err != nil {
			t.Fatalf("%+v: %v", bh, err)
		}
		c, err := e.Explain(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Policy.Bulkhead.MaxConcurrent; got > 100000 {
			t.Fatalf("%+v normalized to max_concurrent %d > 100000", bh, got)
		}
	}
	for _, bh := range []policy.BulkheadPolicy{{MaxConcurrent: -1}, {MaxConcurrent: 2, MaxWait: -time.Second}} {
		if _, err := recourse.New(recourse.WithPolicy("adm.bh.neg", policy.WithBulkhead(bh))); err == nil {
			t.Logf("%+v accepted by New", bh)
		} else if !errors.Is(err, policy.ErrInvalid) {
			t.Fatalf("%+v: %v", bh, err)
		}
		// Whatever New says, NewExecutor must not panic on it.
		e := recourse.NewExecutor(recourse.WithPolicy("adm.bh.neg", policy.WithBulkhead(bh)))
		_ = e.Do(context.Background(), "adm.bh.neg", func(context.Context) error { return nil })
	}
}

// Through a policy: an adaptive bulkhead never admits more than its ceiling.
func TestAdaptiveBulkheadCeiling(t *testing.T) {
	const key, max = "adm.bh.adaptive", 3
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(1), policy.WithBulkhead(policy.BulkheadPolicy{Adaptive: true, MaxConcurrent: max}))...))
	var inside, peak atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				_ = e.Do(context.Background(), key, func(context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					time.Sleep(time.Millisecond)
					return nil
				})
			}
		}()
	}
	wg.Wait()
	if peak.Load() > max {
		t.Fatalf("adaptive bulkhead let %d run with ceiling %d", peak.Load(), max)
	}
}
