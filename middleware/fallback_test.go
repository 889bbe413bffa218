package middleware

import (
	"context"
	"errors"
	"testing"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

func fallbackChain(fn FallbackFunc, op endpoint.Endpoint, opts ...Option) endpoint.Endpoint {
	return endpoint.Chain(Observe("k"), Fallback(fn, opts...), Retry(MaxAttempts(2), WithBackoff(BackoffConfig{Multiplier: 1})), Classify(nil))(op)
}

func TestFallbackSuppliesResultAndKeepsTheError(t *testing.T) {
	var got error
	fn := func(_ context.Context, req any, err error) (any, error) {
		got = err
		return "cached:" + req.(string), nil
	}
	ctx, c := recordCall(context.Background())
	resp, err := fallbackChain(fn, func(context.Context, any) (any, error) { return nil, errFlaky })(ctx, "q")
	if err != nil || resp != "cached:q" {
		t.Fatalf("got %v, %v; want the fallback's value and no error", resp, err)
	}
	if !errors.Is(got, errFlaky) {
		t.Fatalf("fallback got %v, want the call's final error", got)
	}
	tl := c.Timeline()
	if len(tl.Attempts) != 3 {
		t.Fatalf("timeline %v: want 2 tries and the fallback", tl)
	}
	fb := tl.Attempts[2]
	if fb.Reason != timeline.ReasonFallback || fb.Outcome != timeline.OutcomeSuccess || !errors.Is(fb.Err, errFlaky) || fb.Attempt != 2 {
		t.Fatalf("fallback record %+v: want reason fallback, success, the replaced error, attempt 2", fb)
	}
	if tl.Err != nil {
		t.Fatalf("timeline Err %v, want the call's (nil)", tl.Err)
	}
}

func TestFallbackNotCalledOnSuccess(t *testing.T) {
	called := false
	fn := func(context.Context, any, error) (any, error) { called = true; return nil, nil }
	if resp, err := fallbackChain(fn, endpoint.Nop)(context.Background(), nil); err != nil || resp == nil || called {
		t.Fatalf("resp %v err %v called %v", resp, err, called)
	}
}

func TestFallbackMayLetTheCallFail(t *testing.T) {
	errStale := errors.New("no cached value")
	fn := func(_ context.Context, _ any, err error) (any, error) { return nil, errors.Join(errStale, err) }
	ctx, c := recordCall(context.Background())
	_, err := fallbackChain(fn, func(context.Context, any) (any, error) { return nil, errFlaky })(ctx, nil)
	if !errors.Is(err, errStale) || !errors.Is(err, errFlaky) {
		t.Fatalf("err %v: want the fallback's error, wrapping the original", err)
	}
	tl := c.Timeline()
	fb := tl.Attempts[len(tl.Attempts)-1]
	if fb.Reason != timeline.ReasonFallback || fb.Outcome == timeline.OutcomeSuccess || !errors.Is(fb.Err, errStale) {
		t.Fatalf("fallback record %+v", fb)
	}
}

func TestFallbackPanicRecovered(t *testing.T) {
	fn := func(context.Context, any, error) (any, error) { panic("fallback bug") }
	_, err := fallbackChain(fn, func(context.Context, any) (any, error) { return nil, errFlaky }, recoverFallbackPanics("k"))(context.Background(), nil)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Component != "fallback" || pe.Key != "k" || !errors.Is(err, errFlaky) {
		t.Fatalf("err %v: want a fallback *PanicError joined to the call's error", err)
	}
	// Without recovery the panic reaches the caller.
	defer func() {
		if recover() == nil {
			t.Fatal("panic swallowed without recovery")
		}
	}()
	_, _ = fallbackChain(fn, func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
}

func TestFallbackNilIsNext(t *testing.T) {
	_, err := Fallback(nil)(func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	if !errors.Is(err, errFlaky) {
		t.Fatal(err)
	}
	// Alone, without Observe: no recorder, still works.
	resp, err := Fallback(func(context.Context, any, error) (any, error) { return 1, nil })(func(context.Context, any) (any, error) { return nil, errFlaky })(context.Background(), nil)
	if resp != 1 || err != nil {
		t.Fatal(resp, err)
	}
}

// A circuit that is open is a failed call too: the fallback answers it.
func TestFallbackAnswersOpenCircuit(t *testing.T) {
	b := NewCircuitBreaker(BreakerConfig{ConsecutiveFailures: 1})
	ep := endpoint.Chain(Fallback(func(_ context.Context, _ any, err error) (any, error) {
		if errors.Is(err, ErrCircuitOpen) {
			return "degraded", nil
		}
		return nil, err
	}), Retry(MaxAttempts(1)), Breaker(b), Classify(nil))(func(context.Context, any) (any, error) { return nil, errFlaky })
	if _, err := ep(context.Background(), nil); !errors.Is(err, errFlaky) {
		t.Fatal(err)
	}
	if resp, err := ep(context.Background(), nil); resp != "degraded" || err != nil {
		t.Fatalf("open circuit: %v, %v", resp, err)
	}
}

// A fallback that declines (returns an error) leaves the call's own
// response in place: its own response is dropped.
func TestFallbackDecliningKeepsTheCallsResponse(t *testing.T) {
	ep := Fallback(func(_ context.Context, _ any, err error) (any, error) { return "fallback's", err })(
		func(context.Context, any) (any, error) { return "partial", errFlaky })
	resp, err := ep(context.Background(), nil)
	if resp != "partial" || !errors.Is(err, errFlaky) {
		t.Fatalf("%v, %v: want the call's own response and error", resp, err)
	}
}

// discarded counts its Discard calls.
type discarded struct{ n int }

func (d *discarded) Discard() { d.n++ }

// The failed call's response that the fallback's result replaces is
// released; one the call still returns (fn let it fail) is not.
func TestFallbackDiscardsTheReplacedResponse(t *testing.T) {
	for _, replace := range []bool{true, false} {
		d := &discarded{}
		fn := func(_ context.Context, _ any, err error) (any, error) {
			if replace {
				return "fallback", nil
			}
			return nil, err
		}
		op := func(context.Context, any) (any, error) { return d, Permanent(errFlaky) }
		resp, _ := fallbackChain(fn, op)(context.Background(), "q")
		switch {
		case replace && (resp != "fallback" || d.n != 1):
			t.Fatalf("replaced: resp %v, %d discards; want 1", resp, d.n)
		case !replace && (resp != d || d.n != 0):
			t.Fatalf("returned: resp %v, %d discards; want 0", resp, d.n)
		}
	}
}
