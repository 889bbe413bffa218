package ctxattack

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
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func basePol(maxAttempts int, extra ...policy.Option) []policy.Option {
	return append([]policy.Option{policy.MaxAttempts(maxAttempts), policy.Backoff(time.Millisecond, 2*time.Millisecond, 2), policy.Jitter(policy.JitterNone)}, extra...)
}

func expectAllAbort(t *testing.T, obs *recObs, key, reason string, wantN int) {
	t.Helper()
	rs := obs.get(key)
	if wantN >= 0 && len(rs) != wantN {
		t.Errorf("%s: %d records, want %d: %s", key, len(rs), wantN, fmtRecs(rs))
	}
	for _, r := range rs {
		if r.Outcome != timeline.OutcomeAbort || r.Reason != reason {
			t.Errorf("%s: record %s, want abort %q", key, fmtRecs([]timeline.AttemptRecord{r}), reason)
		}
	}
}

func expectBreakerClosed(t *testing.T, e *recourse.Executor, key string) {
	t.Helper()
	b := e.Breaker(key)
	if b == nil {
		t.Fatalf("%s: no breaker", key)
	}
	if s := b.State(); s != endpoint.BreakerClosed {
		t.Errorf("%s: breaker %v, want closed (the outer deadline must not count)", key, s)
	}
}

// TestNestedCutByOuterPerAttempt: B inside A's try, cut by A's per-attempt
// deadline: for B an abort "timeout", not retried, not counted by B's breaker.
// A's own try is a retryable "timeout".
func TestNestedCutByOuterPerAttempt(t *testing.T) {
	bShapes := []struct {
		name string
		opts []policy.Option
	}{
		{"B-none", nil},
		{"B-perAttempt1s", []policy.Option{policy.TimeoutPerAttempt(time.Second)}},
		{"B-overall1s", []policy.Option{policy.OverallTimeout(time.Second)}},
		{"B-both", []policy.Option{policy.TimeoutPerAttempt(time.Second), policy.OverallTimeout(2 * time.Second)}},
		{"B-hedged-both", []policy.Option{policy.TimeoutPerAttempt(time.Second), policy.OverallTimeout(2 * time.Second), hedgeOpt()}},
		{"B-perAttempt-equal", []policy.Option{policy.TimeoutPerAttempt(15 * time.Millisecond)}},
	}
	aShapes := []struct {
		name string
		opts []policy.Option
	}{
		{"A-perAttempt", []policy.Option{policy.TimeoutPerAttempt(15 * time.Millisecond)}},
		{"A-both", []policy.Option{policy.TimeoutPerAttempt(15 * time.Millisecond), policy.OverallTimeout(time.Second)}},
		{"A-hedged", []policy.Option{policy.TimeoutPerAttempt(15 * time.Millisecond), hedgeOpt()}},
		{"A-breaker", []policy.Option{policy.TimeoutPerAttempt(15 * time.Millisecond), breakerOpt(100)}},
	}
	for _, as := range aShapes {
		for _, bs := range bShapes {
			t.Run(as.name+"/"+bs.name, func(t *testing.T) {
				obs := newRecObs()
				e := recourse.NewExecutor(
					recourse.WithPolicy("n.A", basePol(2, as.opts...)...),
					recourse.WithPolicy("n.B", basePol(3, append(bs.opts, breakerOpt(1))...)...),
					recourse.WithObserver(obs),
				)
				var aTries, bTries atomic.Int32
				var bErrs []error
				var mu sync.Mutex
				errA := e.Do(context.Background(), "n.A", func(ctx context.Context) error {
					aTries.Add(1)
					errB := e.Do(ctx, "n.B", func(ctx context.Context) error {
						bTries.Add(1)
						<-ctx.Done()
						return ctx.Err()
					})
					mu.Lock()
					bErrs = append(bErrs, errB)
					mu.Unlock()
					return errB
				})
				if !errors.Is(errA, context.DeadlineExceeded) {
					t.Errorf("A err = %v", errA)
				}
				hedgedA := len(as.opts) > 1 && as.name == "A-hedged"
				hedgedB := bs.name == "B-hedged-both"
				// A: every primary try a retryable timeout.
				for _, r := range obs.get("n.A") {
					if r.Outcome != timeline.OutcomeRetryable || r.Reason != "timeout" {
						t.Errorf("A record %s, want retryable timeout", fmtRecs([]timeline.AttemptRecord{r}))
					}
				}
				if !hedgedA && !hedgedB {
					if got := bTries.Load(); got != aTries.Load() {
						t.Errorf("B ran %d tries for %d A tries: B retried a cut by A's deadline; B records %s", got, aTries.Load(), fmtRecs(obs.get("n.B")))
					}
					expectAllAbort(t, obs, "n.B", "timeout", int(aTries.Load()))
				} else {
					for _, r := range obs.get("n.B") {
						if r.Outcome == timeline.OutcomeRetryable {
							t.Errorf("B record retryable: %s", fmtRecs(obs.get("n.B")))
						}
					}
				}
				expectBreakerClosed(t, e, "n.B")
				for _, err := range bErrs {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("B err = %v, want the op's own DeadlineExceeded", err)
					}
				}
			})
		}
	}
}

// TestNestedCutByOuterOverall: A's overall deadline cuts B: abort for both.
func TestNestedCutByOuterOverall(t *testing.T) {
	obs := newRecObs()
	e := recourse.NewExecutor(
		recourse.WithPolicy("n.A", basePol(3, policy.OverallTimeout(15*time.Millisecond))...),
		recourse.WithPolicy("n.B", basePol(3, policy.TimeoutPerAttempt(time.Second), breakerOpt(1))...),
		recourse.WithObserver(obs),
	)
	start := time.Now()
	err := e.Do(context.Background(), "n.A", func(ctx context.Context) error {
		return e.Do(ctx, "n.B", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("call took %v with a 15ms overall timeout", el)
	}
	expectAllAbort(t, obs, "n.B", "timeout", 1)
	expectAllAbort(t, obs, "n.A", "timeout", 1)
	expectBreakerClosed(t, e, "n.B")
}

// TestNestedOwnTimeout: B's own per-attempt deadline is a B timeout:
// retryable, retried, counted by B's breaker.
func TestNestedOwnTimeout(t *testing.T) {
	for _, aOpts := range [][]policy.Option{
		{policy.TimeoutPerAttempt(time.Second)},
		{policy.TimeoutPerAttempt(time.Second), policy.OverallTimeout(2 * time.Second), hedgeOpt()},
		nil,
	} {
		t.Run(fmt.Sprint(len(aOpts)), func(t *testing.T) {
			obs := newRecObs()
			e := recourse.NewExecutor(
				recourse.WithPolicy("n.A", basePol(1, aOpts...)...),
				recourse.WithPolicy("n.B", basePol(3, policy.TimeoutPerAttempt(3*time.Millisecond), breakerOpt(3))...),
				recourse.WithObserver(obs),
			)
			var bTries atomic.Int32
			var once sync.Once
			errA := e.Do(context.Background(), "n.A", func(ctx context.Context) error {
				first := false
				once.Do(func() { first = true })
				if !first { // a hedge of A: wait to be cancelled
					<-ctx.Done()
					return ctx.Err()
				}
				return e.Do(ctx, "n.B", func(ctx context.Context) error {
					bTries.Add(1)
					<-ctx.Done()
					if c := context.Cause(ctx); c != errAT {
						t.Errorf("B's own expiry: Cause %v", c)
					}
					return ctx.Err()
				})
			})
			if bTries.Load() != 3 {
				t.Errorf("B tries %d, want 3: %s", bTries.Load(), fmtRecs(obs.get("n.B")))
			}
			for _, r := range obs.get("n.B") {
				if r.Outcome != timeline.OutcomeRetryable || r.Reason != "timeout" {
					t.Errorf("B record %s want retryable timeout", fmtRecs([]timeline.AttemptRecord{r}))
				}
			}
			if s := e.Breaker("n.B").State(); s != endpoint.BreakerOpen {
				t.Errorf("B breaker %v after 3 own timeouts, want open", s)
			}
			if !errors.Is(errA, errAT) {
				t.Errorf("A err %v should wrap B's ErrAttemptTimeout", errA)
			}
			for _, r := range obs.get("n.A") {
				if r.Reason == "timeout" {
					// A's own deadline did not pass: B's timeout is just an error for A.
					t.Logf("NOTE: A's try labelled %q although A's deadline did not pass: %s", r.Reason, fmtRecs([]timeline.AttemptRecord{r}))
				}
			}
		})
	}
}

// TestNestedThreeDeep: C in B in A; A's per-attempt cuts all.
func TestNestedThreeDeep(t *testing.T) {
	mixes := []struct {
		name    string
		a, b, c []policy.Option
	}{
		{"pa/both/pa", []policy.Option{policy.TimeoutPerAttempt(20 * time.Millisecond)},
			[]policy.Option{policy.TimeoutPerAttempt(time.Second), policy.OverallTimeout(2 * time.Second)},
			[]policy.Option{policy.TimeoutPerAttempt(time.Second)}},
		{"both/none/ov", []policy.Option{policy.TimeoutPerAttempt(20 * time.Millisecond), policy.OverallTimeout(time.Second)},
			nil,
			[]policy.Option{policy.OverallTimeout(time.Second)}},
		{"pa/hedged/pa", []policy.Option{policy.TimeoutPerAttempt(20 * time.Millisecond)},
			[]policy.Option{hedgeOpt(), policy.TimeoutPerAttempt(time.Second)},
			[]policy.Option{policy.TimeoutPerAttempt(time.Second)}},
		{"hedged-pa/pa/pa-equal", []policy.Option{policy.TimeoutPerAttempt(20 * time.Millisecond), hedgeOpt()},
			[]policy.Option{policy.TimeoutPerAttempt(20 * time.Millisecond)},
			[]policy.Option{policy.TimeoutPerAttempt(20 * time.Millisecond)}},
	}
	for _, m := range mixes {
		t.Run(m.name, func(t *testing.T) {
			obs := newRecObs()
			e := recourse.NewExecutor(
				recourse.WithPolicy("n.A", basePol(2, m.a...)...),
				recourse.WithPolicy("n.B", basePol(3, append(m.b, breakerOpt(1))...)...),
				recourse.WithPolicy("n.C", basePol(3, append(m.c, breakerOpt(1))...)...),
				recourse.WithObserver(obs),
			)
			var cTries atomic.Int32
			_ = e.Do(context.Background(), "n.A", func(ctx context.Context) error {
				return e.Do(ctx, "n.B", func(ctx context.Context) error {
					return e.Do(ctx, "n.C", func(ctx context.Context) error {
						cTries.Add(1)
						<-ctx.Done()
						return ctx.Err()
					})
				})
			})
			for _, k := range []string{"n.B", "n.C"} {
				for _, r := range obs.get(k) {
					if r.Outcome == timeline.OutcomeRetryable {
						t.Errorf("%s retryable record (cut by A's deadline): %s", k, fmtRecs(obs.get(k)))
					}
				}
				expectBreakerClosed(t, e, k)
			}
			for _, r := range obs.get("n.C") {
				if r.Outcome != timeline.OutcomeAbort {
					t.Errorf("C record %s", fmtRecs([]timeline.AttemptRecord{r}))
				}
			}
		})
	}
}

// TestNestedSameKeyRecursive: key R inside R inside R, all with the same
// per-attempt timeout: the outermost deadline fires first; the inner calls
// abort, only the outermost retries, the breaker counts only its tries.
func TestNestedSameKeyRecursive(t *testing.T) {
	for _, extra := range [][]policy.Option{nil, {hedgeOpt()}, {policy.OverallTimeout(time.Second)}} {
		t.Run(fmt.Sprint(len(extra)), func(t *testing.T) {
			e := recourse.NewExecutor(recourse.WithPolicy("n.R", basePol(2, append(extra, policy.TimeoutPerAttempt(20*time.Millisecond), breakerOpt(3))...)...))
			var mu sync.Mutex
			tls := map[int][]*timeline.Timeline{}
			var tries [3]atomic.Int32
			var op func(depth int) func(ctx context.Context) error
			op = func(depth int) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					if info, _ := endpoint.AttemptFromContext(ctx); info.HedgeIndex > 0 {
						<-ctx.Done()
						return ctx.Err()
					}
					tries[depth].Add(1)
					if depth == 2 {
						<-ctx.Done()
						return ctx.Err()
					}
					tl, err := e.DoWithTimeline(ctx, "n.R", op(depth+1))
					mu.Lock()
					tls[depth+1] = append(tls[depth+1], tl)
					mu.Unlock()
					return err
				}
			}
			tl0, _ := e.DoWithTimeline(context.Background(), "n.R", op(0))
			tls[0] = []*timeline.Timeline{tl0}
			if tries[0].Load() != 2 || tries[1].Load() != 2 || tries[2].Load() != 2 {
				t.Errorf("tries per depth %d/%d/%d, want 2/2/2", tries[0].Load(), tries[1].Load(), tries[2].Load())
			}
			for depth := 1; depth <= 2; depth++ {
				for _, tl := range tls[depth] {
					for _, r := range tl.Attempts {
						if r.HedgeIndex > 0 {
							continue
						}
						// A hedged inner race labels the try that did not end
						// it "hedge_lost"; its outcome must still be abort.
						if r.Outcome != timeline.OutcomeAbort || (r.Reason != "timeout" && r.Reason != "hedge_lost") {
							t.Errorf("depth %d record %s, want abort timeout", depth, fmtRecs([]timeline.AttemptRecord{r}))
						}
					}
				}
			}
			for _, r := range tl0.Attempts {
				if r.HedgeIndex == 0 && (r.Outcome != timeline.OutcomeRetryable || r.Reason != "timeout") {
					t.Errorf("outer record %s, want retryable timeout", fmtRecs([]timeline.AttemptRecord{r}))
				}
			}
			expectBreakerClosed(t, e, "n.R")
		})
	}
}

// TestNestedHedgeLoser: B inside A's losing primary try is cancelled by the
// race: abort "canceled", not retried, not counted.
func TestNestedHedgeLoser(t *testing.T) {
	obs := newRecObs()
	e := recourse.NewExecutor(
		recourse.WithPolicy("n.A", basePol(1, hedgeOpt(), policy.TimeoutPerAttempt(time.Second))...),
		recourse.WithPolicy("n.B", basePol(3, breakerOpt(1), policy.TimeoutPerAttempt(time.Second))...),
		recourse.WithObserver(obs),
	)
	var bTries atomic.Int32
	err := e.Do(context.Background(), "n.A", func(ctx context.Context) error {
		if info, _ := endpoint.AttemptFromContext(ctx); info.HedgeIndex > 0 {
			return nil
		}
		return e.Do(ctx, "n.B", func(ctx context.Context) error {
			bTries.Add(1)
			<-ctx.Done()
			return ctx.Err()
		})
	})
	if err != nil {
		t.Errorf("A err %v", err)
	}
	if bTries.Load() != 1 {
		t.Errorf("B tries %d", bTries.Load())
	}
	expectAllAbort(t, obs, "n.B", "canceled", 1)
	expectBreakerClosed(t, e, "n.B")
}

// TestNestedCallerCancel: A's caller cancels; B aborts "canceled".
func TestNestedCallerCancel(t *testing.T) {
	obs := newRecObs()
	e := recourse.NewExecutor(
		recourse.WithPolicy("n.A", basePol(3, policy.TimeoutPerAttempt(time.Second))...),
		recourse.WithPolicy("n.B", basePol(3, breakerOpt(1), policy.TimeoutPerAttempt(time.Second))...),
		recourse.WithObserver(obs),
	)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = e.Do(parent, "n.A", func(ctx context.Context) error {
		return e.Do(ctx, "n.B", func(ctx context.Context) error {
			cancel()
			return ctx.Err()
		})
	})
	expectAllAbort(t, obs, "n.B", "canceled", 1)
	expectAllAbort(t, obs, "n.A", "canceled", 1)
	expectBreakerClosed(t, e, "n.B")
}

// TestNestedNearTie: B's own per-attempt deadline just before or just after
// A's. A B try whose context carries A's deadline must abort; a B try whose
// own deadline is clearly earlier must be a retryable timeout.
func TestNestedNearTie(t *testing.T) {
	for i := 0; i < 30; i++ {
		bd := time.Duration(6+i%9) * time.Millisecond // 6..14ms vs A's 10ms
		obs := newRecObs()
		e := recourse.NewExecutor(
			recourse.WithPolicy("n.A", basePol(1, policy.TimeoutPerAttempt(10*time.Millisecond))...),
			recourse.WithPolicy("n.B", basePol(3, policy.TimeoutPerAttempt(bd), breakerOpt(100))...),
			recourse.WithObserver(obs),
		)
		var aDL time.Time
		var bDLs []time.Time
		_ = e.Do(context.Background(), "n.A", func(ctx context.Context) error {
			aDL, _ = ctx.Deadline()
			return e.Do(ctx, "n.B", func(ctx context.Context) error {
				dl, _ := ctx.Deadline()
				bDLs = append(bDLs, dl)
				<-ctx.Done()
				return ctx.Err()
			})
		})
		rs := obs.get("n.B")
		if len(rs) != len(bDLs) {
			t.Fatalf("bd=%v: %d records for %d tries: %s", bd, len(rs), len(bDLs), fmtRecs(rs))
		}
		for j, r := range rs {
			gap := aDL.Sub(bDLs[j])
			switch {
			case bDLs[j].Equal(aDL) || gap < 0:
				if r.Outcome != timeline.OutcomeAbort {
					t.Errorf("bd=%v try %d: deadline is A's (gap %v) but record %s", bd, j+1, gap, fmtRecs(rs))
				}
			case gap > 2*time.Millisecond:
				if r.Outcome != timeline.OutcomeRetryable || r.Reason != "timeout" {
					t.Errorf("bd=%v try %d: own deadline %v before A's but record %s", bd, j+1, gap, fmtRecs(rs))
				}
			}
		}
		// (B may stop after a retryable try: a backoff that would outlive
		// A's deadline is not started, as documented.)
	}
}
