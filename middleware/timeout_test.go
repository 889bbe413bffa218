package middleware

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

// blockUntilDone is an op that waits for its context (the "slow" try).
func blockUntilDone(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestTimeoutCutsOneSlowAttemptAndTheNextRuns(t *testing.T) {
	var calls atomic.Int32
	op := func(ctx context.Context, _ any) (any, error) {
		if calls.Add(1) == 1 {
			return nil, blockUntilDone(ctx)
		}
		return "fast", nil
	}
	ep := endpoint.Chain(Observe("k"), Retry(MaxAttempts(3), WithBackoff(BackoffConfig{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1})),
		Timeout(20*time.Millisecond), Classify(nil))(op)
	ctx, c := recordCall(context.Background())
	resp, err := ep(ctx, nil)
	if err != nil || resp != "fast" {
		t.Fatalf("got %v, %v", resp, err)
	}
	a := c.Timeline().Attempts
	if len(a) != 2 || a[0].Outcome != timeline.OutcomeRetryable || a[0].Reason != timeline.ReasonTimeout {
		t.Fatalf("attempts = %+v, want a retryable timeout then success", a)
	}
	if !errors.Is(a[0].Err, context.DeadlineExceeded) {
		t.Fatalf("first attempt err = %v", a[0].Err)
	}
}

func TestCallerCancellationIsAbortNotTimeout(t *testing.T) {
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	op := func(actx context.Context, _ any) (any, error) {
		calls.Add(1)
		cancel() // the caller gives up while the try runs
		return nil, blockUntilDone(actx)
	}
	ep := endpoint.Chain(Observe("k"), Retry(MaxAttempts(3)), Timeout(time.Hour), Classify(nil))(op)
	ctx, c := recordCall(ctx)
	_, err := ep(ctx, nil)
	if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
		t.Fatalf("err = %v after %d calls", err, calls.Load())
	}
	a := c.Timeline().Attempts
	if len(a) != 1 || a[0].Outcome != timeline.OutcomeAbort || a[0].Reason != timeline.ReasonCanceled {
		t.Fatalf("attempts = %+v", a)
	}
}

func TestOverallTimeoutBoundsAttemptsAndSleeps(t *testing.T) {
	// Real time, tolerant: every try fails at once and each backoff is long.
	// Without the overall deadline this call would take ≥ 2 × 300ms.
	var calls atomic.Int32
	ep := endpoint.Chain(Observe("k"), OverallTimeout(100*time.Millisecond),
		Retry(MaxAttempts(3), WithBackoff(BackoffConfig{Initial: 300 * time.Millisecond, Max: 300 * time.Millisecond, Multiplier: 1})),
		Classify(nil))(scripted(&calls, errFlaky, errFlaky, errFlaky))
	start := time.Now()
	_, err := ep(context.Background(), nil)
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Fatalf("call took %v, overall timeout is 100ms", took)
	}
	if !errors.Is(err, errFlaky) {
		t.Fatalf("err = %v, want the last real error", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d: a sleep past the deadline must not be started", calls.Load())
	}
}

func TestOverallTimeoutCutsAHangingAttempt(t *testing.T) {
	ep := endpoint.Chain(Observe("k"), OverallTimeout(30*time.Millisecond), Retry(MaxAttempts(3)), Classify(nil))(
		func(ctx context.Context, _ any) (any, error) { return nil, blockUntilDone(ctx) })
	ctx, c := recordCall(context.Background())
	start := time.Now()
	_, err := ep(ctx, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	a := c.Timeline().Attempts
	if len(a) != 1 || a[0].Outcome != timeline.OutcomeAbort || a[0].Reason != timeline.ReasonTimeout {
		t.Fatalf("attempts = %+v: the call's own deadline is an abort, not a retry", a)
	}
}

func TestTimeoutAloneOnPlainEndpoint(t *testing.T) {
	ep := Timeout(10 * time.Millisecond)(func(ctx context.Context, _ any) (any, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("no deadline in the attempt context")
		}
		return nil, blockUntilDone(ctx)
	})
	_, err := ep(context.Background(), nil)
	if !errors.Is(err, ErrAttemptTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if v := VerdictOf(context.Background(), nil, err); v.Outcome != timeline.OutcomeRetryable || v.Reason != timeline.ReasonTimeout {
		t.Fatalf("verdict = %+v", v)
	}
	if Timeout(0)(endpoint.Nop) == nil || OverallTimeout(-1)(endpoint.Nop) == nil {
		t.Fatal("non-positive timeouts must pass the endpoint through")
	}
}

func TestOverallTimeoutAloneOnPlainEndpoint(t *testing.T) {
	_, err := OverallTimeout(10*time.Millisecond)(func(ctx context.Context, _ any) (any, error) {
		return nil, blockUntilDone(ctx)
	})(context.Background(), nil)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrAttemptTimeout) {
		t.Fatalf("err = %v", err)
	}
}

// failedAdopter is a failed try's response that may go back to the caller
// (as an rhttp final failed status): it adopts the timeouts' cancel
// functions, as a successful CancelAdopter does.
type failedAdopter struct{ cancels []context.CancelFunc }

func (a *failedAdopter) AdoptFailedCancel(c context.CancelFunc) bool {
	a.cancels = append(a.cancels, c)
	return true
}

// successAdopter adopts the cancel functions of successful calls only.
type successAdopter struct{}

func (successAdopter) AdoptCancel(context.CancelFunc) bool { return true }

func (a *failedAdopter) close() {
	for _, c := range a.cancels {
		c()
	}
}

// A failed response that adopts cancel functions keeps the per-attempt
// and overall deadlines' contexts alive (and bounding it) until it is
// closed; any other failed response has them cancelled at once.
func TestTimeoutsHandFailedResponses(t *testing.T) {
	errFailed := errors.New("503")
	for _, adopts := range []bool{true, false} {
		var tryCtx context.Context
		var resp any = successAdopter{}
		fa := &failedAdopter{}
		if adopts {
			resp = fa
		}
		op := func(ctx context.Context, _ any) (any, error) {
			tryCtx = ctx
			return resp, errFailed
		}
		ep := OverallTimeout(time.Hour)(Timeout(time.Hour)(op))
		if _, err := ep(context.Background(), nil); !errors.Is(err, errFailed) {
			t.Fatalf("err %v", err)
		}
		if !adopts {
			if tryCtx.Err() == nil {
				t.Fatal("a failed response that adopts nothing left its contexts alive")
			}
			continue
		}
		if tryCtx.Err() != nil || len(fa.cancels) != 2 {
			t.Fatalf("adopted %d, Err %v", len(fa.cancels), tryCtx.Err())
		}
		if _, ok := tryCtx.Deadline(); !ok {
			t.Fatal("no deadline")
		}
		fa.close()
		if tryCtx.Err() != context.Canceled {
			t.Fatalf("after close: %v", tryCtx.Err())
		}
	}
}
