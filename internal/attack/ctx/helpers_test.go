package ctxattack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// recObs collects attempt records per key.
type recObs struct {
	timeline.BaseObserver
	mu   sync.Mutex
	recs map[string][]timeline.AttemptRecord
}

func newRecObs() *recObs { return &recObs{recs: map[string][]timeline.AttemptRecord{}} }

func (o *recObs) OnAttempt(_ context.Context, key string, r timeline.AttemptRecord) {
	o.mu.Lock()
	o.recs[key] = append(o.recs[key], r)
	o.mu.Unlock()
}

func (o *recObs) get(key string) []timeline.AttemptRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]timeline.AttemptRecord(nil), o.recs[key]...)
}

func fmtRecs(rs []timeline.AttemptRecord) string {
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf("[#%d h%d outcome=%d reason=%q err=%v] ", r.Attempt, r.HedgeIndex, r.Outcome, r.Reason, r.Err)
	}
	return s
}

func hedgeOpt() policy.Option {
	return policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})
}

func breakerOpt(n int) policy.Option {
	return policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: n, Cooldown: time.Minute})
}

// pol is one policy shape under test. perAttempt/overall are the timeouts
// (0 = none); hedged means the checks run inside the hedge try.
type pol struct {
	name       string
	perAttempt time.Duration
	overall    time.Duration
	hedged     bool
	breaker    bool
}

func (p pol) opts(maxAttempts int) []policy.Option {
	o := []policy.Option{policy.MaxAttempts(maxAttempts), policy.Backoff(time.Millisecond, 2*time.Millisecond, 2), policy.Jitter(policy.JitterNone)}
	if p.perAttempt > 0 {
		o = append(o, policy.TimeoutPerAttempt(p.perAttempt))
	}
	if p.overall > 0 {
		o = append(o, policy.OverallTimeout(p.overall))
	}
	if p.hedged {
		o = append(o, hedgeOpt())
	}
	if p.breaker {
		o = append(o, breakerOpt(50))
	}
	return o
}

// shapes returns the policy shapes whose op context is a recourse deadline
// context, with the timeouts scaled by d (per-attempt) and 2d (overall).
func shapes(d time.Duration) []pol {
	return []pol{
		{name: "perAttempt", perAttempt: d},
		{name: "overall", overall: d},
		{name: "both", perAttempt: d, overall: 2 * d},
		{name: "bothOverallFirst", perAttempt: 2 * d, overall: d},
		{name: "hedgedPerAttempt", perAttempt: d, hedged: true},
		{name: "hedgedBoth", perAttempt: d, overall: 2 * d, hedged: true},
		{name: "hedgedOnly", hedged: true},
		{name: "breakerBoth", perAttempt: d, overall: 2 * d, breaker: true},
		{name: "breakerHedgedBoth", perAttempt: d, overall: 2 * d, breaker: true, hedged: true},
	}
}

const testKey = "attack.Ctx"

func newExec(p pol, maxAttempts int, extra ...recourse.Option) (*recourse.Executor, *recObs) {
	obs := newRecObs()
	opts := append([]recourse.Option{
		recourse.WithPolicy(testKey, p.opts(maxAttempts)...),
		recourse.WithObserver(obs),
	}, extra...)
	return recourse.NewExecutor(opts...), obs
}

// runIn runs fn in the try under test: for hedged shapes, in the first hedge
// try (the primary waits on its context); otherwise in the first try. It
// fails the test if fn never ran. fn's return value is the op's.
func runIn(t *testing.T, e *recourse.Executor, ctx context.Context, p pol, fn func(ctx context.Context) error) error {
	t.Helper()
	err, ran := tryRunIn(e, ctx, p, fn)
	if !ran {
		t.Fatalf("%s: the op under test never ran (err %v)", p.name, err)
	}
	return err
}

// tryRunIn is runIn that reports whether fn ran instead of failing.
func tryRunIn(e *recourse.Executor, ctx context.Context, p pol, fn func(ctx context.Context) error) (error, bool) {
	caller := ctx
	var once sync.Once
	ran := false
	started := make(chan struct{})
	err := e.Do(ctx, testKey, func(ctx context.Context) error {
		if p.hedged {
			info, _ := endpoint.AttemptFromContext(ctx)
			if info.HedgeIndex == 0 {
				// Outlive the hedge trigger even if this try's own
				// deadline is shorter, so that the hedge is spawned.
				t := time.NewTimer(time.Second)
				defer t.Stop()
				select {
				case <-started:
				case <-caller.Done(): // no hedge is spawned for a finished caller
				case <-ctx.Done():
					// This try's own deadline passed: give the hedge a
					// little longer to start, then stop waiting for it.
					g := time.NewTimer(30 * time.Millisecond)
					defer g.Stop()
					select {
					case <-started:
					case <-caller.Done():
					case <-g.C:
					}
				case <-t.C:
				}
				<-ctx.Done()
				return ctx.Err()
			}
		}
		var r error
		first := false
		once.Do(func() { first = true })
		if !first {
			return errors.New("later try")
		}
		ran = true
		close(started)
		r = fn(ctx)
		return r
	})
	return err, ran
}

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// waitDone waits at most d for ctx.
func waitDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-t.C:
		return false
	}
}

// otherContext hides a Context's concrete type, as in Go's context tests.
type otherContext struct{ context.Context }

var errAT = middleware.ErrAttemptTimeout
