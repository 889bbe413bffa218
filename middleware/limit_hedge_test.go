package middleware_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// A hedge that finds no room is simply not sent: the primary try goes on
// and its success is the call's.
func TestLimitRefusedHedgeLeavesThePrimaryRunning(t *testing.T) {
	b := middleware.NewBulkhead(1, 0)
	var calls atomic.Int32
	op := func(ctx context.Context, _ any) (any, error) {
		calls.Add(1)
		select {
		case <-time.After(30 * time.Millisecond):
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ep := endpoint.Chain(middleware.Observe("k"), middleware.Retry(middleware.MaxAttempts(1)),
		hedge.New(hedge.FixedDelay(2*time.Millisecond)), middleware.Limit(b), middleware.Classify(nil))(op)
	ctx, capture := timeline.Record(context.Background())
	resp, err := ep(ctx, nil)
	if err != nil || resp != "ok" || calls.Load() != 1 {
		t.Fatalf("resp %v, err %v, calls %d; want the primary's success", resp, err, calls.Load())
	}
	var refused, won int
	for _, a := range capture.Timeline().Attempts {
		switch {
		case a.HedgeIndex == 1 && a.Reason == timeline.ReasonBulkheadFull:
			refused++
		case a.HedgeIndex == 0 && a.Outcome == timeline.OutcomeSuccess:
			won++
		}
	}
	if refused != 1 || won != 1 {
		t.Fatalf("attempts %+v; want the primary's success and the hedge's refusal", capture.Timeline().Attempts)
	}
}

// onceLimiter admits its first try and refuses every later one.
type onceLimiter struct{ n atomic.Int32 }

func (l *onceLimiter) Acquire(context.Context) (func(bool), error) {
	if l.n.Add(1) > 1 {
		return nil, middleware.ErrBulkheadFull
	}
	return func(bool) {}, nil
}

// A retry refused by a full bulkhead stops the call with the last real
// error, as a retry refused by the budget does.
func TestLimitRefusedRetryReturnsLastRealError(t *testing.T) {
	errDown := errors.New("dependency down")
	ep := endpoint.Chain(middleware.Retry(middleware.MaxAttempts(3), middleware.WithBackoff(middleware.BackoffConfig{Multiplier: 1})),
		middleware.Limit(&onceLimiter{}), middleware.Classify(nil))(func(context.Context, any) (any, error) { return nil, errDown })
	_, err := ep(context.Background(), nil)
	if err != errDown {
		t.Fatalf("err %v, want the first try's own error", err)
	}
}
