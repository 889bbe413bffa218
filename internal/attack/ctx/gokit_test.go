package ctxattack

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	kitendpoint "github.com/go-kit/kit/endpoint"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

type ctxKey string

// kitValue is a plain go-kit middleware that derives the context.
func kitValue(k, v string) kitendpoint.Middleware {
	return func(next kitendpoint.Endpoint) kitendpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			return next(context.WithValue(ctx, ctxKey(k), v), req)
		}
	}
}

func kitCancel() kitendpoint.Middleware {
	return func(next kitendpoint.Endpoint) kitendpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			return next(ctx, req)
		}
	}
}

// gokitPaths builds the endpoint under test around ep in several ways.
func gokitPaths(e *recourse.Executor) map[string]func(ep kitendpoint.Endpoint) kitendpoint.Endpoint {
	return map[string]func(ep kitendpoint.Endpoint) kitendpoint.Endpoint{
		"Endpoint": func(ep kitendpoint.Endpoint) kitendpoint.Endpoint { return e.Endpoint(testKey, ep) },
		"Middleware": func(ep kitendpoint.Endpoint) kitendpoint.Endpoint {
			return e.Middleware(testKey)(ep)
		},
		"Chain": func(ep kitendpoint.Endpoint) kitendpoint.Endpoint {
			return kitendpoint.Chain(kitCancel(), kitValue("outer", "o"), e.Middleware(testKey), kitValue("inner", "i"), kitCancel())(ep)
		},
	}
}

func TestGoKitPathsSyncCancelAndCause(t *testing.T) {
	for _, p := range []pol{
		{name: "both", perAttempt: 5 * time.Millisecond, overall: time.Second},
		{name: "hedgedBoth", perAttempt: 5 * time.Millisecond, overall: time.Second, hedged: true},
		{name: "breakerPerAttempt", perAttempt: 5 * time.Millisecond, breaker: true},
	} {
		e, _ := newExec(p, 1)
		for name, wrap := range gokitPaths(e) {
			t.Run(p.name+"/"+name+"/expire", func(t *testing.T) {
				var ran atomic.Bool
				ep := wrap(func(ctx context.Context, req any) (any, error) {
					if info, _ := endpoint.AttemptFromContext(ctx); p.hedged && info.HedgeIndex == 0 {
						time.Sleep(3 * time.Millisecond) // let the hedge start
						<-ctx.Done()
						return nil, ctx.Err()
					}
					if !ran.CompareAndSwap(false, true) {
						return nil, errors.New("later")
					}
					child, cc := context.WithCancel(ctx)
					defer cc()
					<-ctx.Done()
					if context.Cause(ctx) != errAT || context.Cause(child) != errAT {
						t.Errorf("Cause %v / child %v, want ErrAttemptTimeout", context.Cause(ctx), context.Cause(child))
					}
					if name == "Chain" && (ctx.Value(ctxKey("outer")) != "o" || ctx.Value(ctxKey("inner")) != "i") {
						t.Errorf("values lost through the chain")
					}
					return nil, ctx.Err()
				})
				parent, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				_, err := ep(parent, "req")
				if !errors.Is(err, errAT) {
					t.Errorf("err %v, want ErrAttemptTimeout wrapped", err)
				}
				if !ran.Load() {
					t.Errorf("never ran")
				}
			})
			t.Run(p.name+"/"+name+"/callerCancel", func(t *testing.T) {
				parent, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				cause := errors.New("kit cause")
				var ran atomic.Bool
				ep := wrap(func(ctx context.Context, req any) (any, error) {
					if info, _ := endpoint.AttemptFromContext(ctx); p.hedged && info.HedgeIndex == 0 {
						time.Sleep(3 * time.Millisecond)
						<-ctx.Done()
						return nil, ctx.Err()
					}
					if !ran.CompareAndSwap(false, true) {
						return nil, errors.New("later")
					}
					child, cc := context.WithTimeout(ctx, time.Hour)
					defer cc()
					cancel(cause)
					if !isDone(ctx) || !isDone(child) || !hedgeCauseOK(p, context.Cause(ctx), cause) || !hedgeCauseOK(p, context.Cause(child), cause) {
						t.Errorf("after caller cancel: done %v/%v cause %v/%v", isDone(ctx), isDone(child), context.Cause(ctx), context.Cause(child))
					}
					return nil, ctx.Err()
				})
				_, _ = ep(parent, "req")
			})
		}
	}
}

// TestGoKitNested: nested calls through go-kit endpoints; B cut by A's
// per-attempt deadline aborts, is not retried and not counted.
func TestGoKitNested(t *testing.T) {
	obs := newRecObs()
	e := recourse.NewExecutor(
		recourse.WithPolicy("k.A", basePol(2, policy.TimeoutPerAttempt(10*time.Millisecond))...),
		recourse.WithPolicy("k.B", basePol(3, policy.TimeoutPerAttempt(time.Second), breakerOpt(1))...),
		recourse.WithObserver(obs),
	)
	var bTries atomic.Int32
	epB := e.Middleware("k.B")(func(ctx context.Context, req any) (any, error) {
		bTries.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	epA := kitendpoint.Chain(kitCancel(), e.Middleware("k.A"), kitValue("x", "y"))(func(ctx context.Context, req any) (any, error) {
		return epB(ctx, req)
	})
	_, err := epA(context.Background(), nil)
	if !errors.Is(err, errAT) {
		t.Errorf("A err %v", err)
	}
	if bTries.Load() != 2 {
		t.Errorf("B tries %d, want 2 (one per A try): %s", bTries.Load(), fmtRecs(obs.get("k.B")))
	}
	expectAllAbort(t, obs, "k.B", "timeout", 2)
	expectBreakerClosed(t, e, "k.B")
	for _, r := range obs.get("k.A") {
		if r.Outcome != timeline.OutcomeRetryable || r.Reason != "timeout" {
			t.Errorf("A record %s", fmtRecs([]timeline.AttemptRecord{r}))
		}
	}
}
