package middleware

// Regression tests: a try's own per-attempt deadline is a retryable
// timeout; an enclosing deadline (the caller's, or an outer call's try
// when calls nest) is the caller's end and aborts.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

func hangs(ctx context.Context, _ any) (any, error) {
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

func verdictOf(t *testing.T, err error) Verdict {
	t.Helper()
	var ce *ClassifiedError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not classified", err)
	}
	return ce.Verdict
}

func TestRegressEnclosingAttemptDeadlineIsNotOwnTimeout(t *testing.T) {
	inner := Timeout(time.Hour)(Classify(nil)(hangs))
	outer := Timeout(10 * time.Millisecond)(func(ctx context.Context, req any) (any, error) {
		_, err := inner(ctx, req)
		if v := verdictOf(t, err); v.Outcome != timeline.OutcomeAbort {
			t.Errorf("inner verdict %v/%s, want abort", v.Outcome, v.Reason)
		}
		return nil, err
	})
	_, err := outer(context.Background(), nil)
	if !errors.Is(err, ErrAttemptTimeout) {
		t.Fatalf("outer error %v does not wrap ErrAttemptTimeout", err)
	}
}

func TestRegressOwnTimeoutSeenThroughOtherDecorators(t *testing.T) {
	// A decorator between Timeout and Classify hides the deadline context
	// from Classify, which takes the end for the caller's; Timeout knows
	// better and corrects the verdict.
	between := func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			return next(context.WithValue(ctx, betweenKey{}, 1), req)
		}
	}
	ep := Timeout(5 * time.Millisecond)(between(Classify(nil)(hangs)))
	_, err := ep(context.Background(), nil)
	if v := verdictOf(t, err); v.Outcome != timeline.OutcomeRetryable || v.Reason != timeline.ReasonTimeout {
		t.Fatalf("verdict %v/%s, want retryable/timeout", v.Outcome, v.Reason)
	}
	if !errors.Is(err, ErrAttemptTimeout) {
		t.Fatalf("error %v does not wrap ErrAttemptTimeout", err)
	}
}

func TestRegressOwnTimeoutErrorWrapsErrAttemptTimeout(t *testing.T) {
	ep := Timeout(5 * time.Millisecond)(Classify(nil)(func(ctx context.Context, _ any) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err() // the bare context error, as most clients return
	}))
	_, err := ep(context.Background(), nil)
	if v := verdictOf(t, err); v.Outcome != timeline.OutcomeRetryable || v.Reason != timeline.ReasonTimeout {
		t.Fatalf("verdict %v/%s", v.Outcome, v.Reason)
	}
	if !errors.Is(err, ErrAttemptTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want both ErrAttemptTimeout and DeadlineExceeded", err)
	}
}

func TestRegressCallerDeadlineAborts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	_, err := Timeout(time.Hour)(Classify(nil)(hangs))(ctx, nil)
	if v := verdictOf(t, err); v.Outcome != timeline.OutcomeAbort || v.Reason != timeline.ReasonTimeout {
		t.Fatalf("verdict %v/%s, want abort/timeout", v.Outcome, v.Reason)
	}
}

type betweenKey struct{}

func TestRegressRetryDefaultJitterMatchesPolicyDefaults(t *testing.T) {
	// A hand-built Retry() and policy.Defaults() agree: full jitter.
	if got := defaultRetrier().backoff.Jitter; got != JitterFull {
		t.Fatalf("Retry's default jitter %v, want full (policy.Defaults' jitter)", got)
	}
}
