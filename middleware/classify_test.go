package middleware

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

func TestClassifyAloneWrapsVerdicts(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name    string
		resp    any
		err     error
		outcome timeline.Outcome
		reason  string
	}{
		{"success", "ok", nil, timeline.OutcomeSuccess, timeline.ReasonSuccess},
		{"plain error", nil, boom, timeline.OutcomeRetryable, timeline.ReasonRetryable},
		{"permanent", nil, Permanent(boom), timeline.OutcomeNonRetryable, timeline.ReasonNonRetryable},
		{"failer", failed{boom}, nil, timeline.OutcomeNonRetryable, timeline.ReasonNonRetryable},
		{"panic", nil, NewPanicError("op", "k", "x"), timeline.OutcomeNonRetryable, timeline.ReasonPanic},
		{"own ctx error while ours is live", nil, context.DeadlineExceeded, timeline.OutcomeRetryable, timeline.ReasonRetryable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := Classify(nil)(func(context.Context, any) (any, error) { return tc.resp, tc.err })
			resp, err := ep(context.Background(), nil)
			if resp != tc.resp {
				t.Fatalf("resp = %v", resp)
			}
			if tc.outcome == timeline.OutcomeSuccess {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var ce *ClassifiedError
			if !errors.As(err, &ce) || ce.Verdict.Outcome != tc.outcome || ce.Verdict.Reason != tc.reason {
				t.Fatalf("err = %#v, want outcome %v reason %s", err, tc.outcome, tc.reason)
			}
			if !errors.Is(err, boom) && tc.name != "panic" && tc.name != "own ctx error while ours is live" {
				t.Fatalf("errors.Is(err, boom) = false for %v", err)
			}
		})
	}
}

func TestClassifyCustomClassifierAndRecoveredPanic(t *testing.T) {
	notFound := errors.New("not found")
	c := ClassifierFunc(func(ctx context.Context, resp any, err error) Verdict {
		if errors.Is(err, notFound) {
			return Verdict{Outcome: timeline.OutcomeNonRetryable}
		}
		return Verdict{} // unknown: default rules apply
	})
	_, err := Classify(c)(func(context.Context, any) (any, error) { return nil, notFound })(context.Background(), nil)
	if v := VerdictOf(context.Background(), nil, err); v.Outcome != timeline.OutcomeNonRetryable || v.Reason != timeline.ReasonNonRetryable {
		t.Fatalf("verdict = %+v", v)
	}
	_, err = Classify(c)(func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	if v := VerdictOf(context.Background(), nil, err); v.Outcome != timeline.OutcomeRetryable {
		t.Fatalf("verdict = %+v", v)
	}

	panicky := ClassifierFunc(func(context.Context, any, error) Verdict { panic("classifier bug") })
	_, err = Classify(panicky, recoverClassifierPanics("a.b"))(endpoint.Nop)(context.Background(), nil)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Component != "classifier" || pe.Key != "a.b" || len(pe.Stack) == 0 {
		t.Fatalf("err = %#v", err)
	}
}

func TestClassifySuccessPathAllocatesNothing(t *testing.T) {
	ep := Classify(nil)(func(context.Context, any) (any, error) { return nil, nil })
	ctx := context.Background()
	if n := testing.AllocsPerRun(200, func() { _, _ = ep(ctx, nil) }); n != 0 {
		t.Fatalf("allocs = %v, want 0", n)
	}
}

type pushbackErr struct{ d time.Duration }

func (p pushbackErr) Error() string             { return "busy" }
func (p pushbackErr) RetryAfter() time.Duration { return p.d }

func TestPushbackErrorsSetRetryAfter(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", pushbackErr{3 * time.Second})
	v := VerdictOf(context.Background(), nil, err)
	if v.Outcome != timeline.OutcomeRetryable || v.RetryAfter != 3*time.Second || v.Reason != timeline.ReasonRetryAfter {
		t.Fatalf("verdict = %+v", v)
	}
	if v := VerdictOf(context.Background(), nil, Permanent(err)); v.RetryAfter != 0 {
		t.Fatalf("a permanent error got pushback: %+v", v)
	}
}
