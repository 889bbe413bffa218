package endpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestFromFuncAndBack(t *testing.T) {
	ep := FromFunc(func(context.Context) (int, error) { return 42, nil })
	got, err := ToFunc[int](ep, nil)(context.Background())
	if err != nil || got != 42 {
		t.Fatalf("got %d, %v", got, err)
	}
}

func TestToFuncReportsWrongType(t *testing.T) {
	ep := FromFunc(func(context.Context) (string, error) { return "x", nil })
	_, err := ToFunc[int](ep, nil)(context.Background())
	if err == nil || !strings.Contains(err.Error(), "string") {
		t.Fatalf("err = %v, want a type mismatch naming string", err)
	}
}

func TestFromErrFunc(t *testing.T) {
	boom := errors.New("boom")
	resp, err := FromErrFunc(func(context.Context) error { return boom })(context.Background(), nil)
	if resp != nil || !errors.Is(err, boom) {
		t.Fatalf("got %v, %v", resp, err)
	}
}

func TestAttemptInfoRoundTrip(t *testing.T) {
	ctx := context.Background()
	if _, ok := AttemptFromContext(ctx); ok {
		t.Fatal("empty context reported an attempt")
	}
	ctx = WithAttempt(ctx, AttemptInfo{Key: "a.b", Attempt: 2, HedgeIndex: 1, Breaker: BreakerHalfOpen})
	ctx = context.WithValue(ctx, otherKey{}, 1) // something outside must not hide it
	info, ok := AttemptFromContext(ctx)
	if !ok || info.Key != "a.b" || info.Attempt != 2 || !info.IsHedge() || info.RetryIndex() != 1 || info.Breaker != BreakerHalfOpen {
		t.Fatalf("info = %+v, ok %v", info, ok)
	}
	if info.IsFirst() {
		t.Fatal("hedge of attempt 2 reported as first")
	}
	if !(AttemptInfo{Attempt: 1}).IsFirst() {
		t.Fatal("attempt 1 not first")
	}
}

func TestWithAttemptAllocatesOnce(t *testing.T) {
	ctx := context.Background()
	n := testing.AllocsPerRun(100, func() {
		c := WithAttempt(ctx, AttemptInfo{Key: "k", Attempt: 1})
		if _, ok := AttemptFromContext(c); !ok {
			t.Fatal("lost")
		}
	})
	if n > 1 {
		t.Fatalf("WithAttempt+AttemptFromContext allocs = %v, want ≤ 1", n)
	}
}

func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) Middleware {
		return func(next Endpoint) Endpoint {
			return func(ctx context.Context, req any) (any, error) {
				order = append(order, name)
				return next(ctx, req)
			}
		}
	}
	_, _ = Chain(mw("outer"), mw("inner"))(Nop)(context.Background(), nil)
	if strings.Join(order, ",") != "outer,inner" {
		t.Fatalf("order = %v", order)
	}
}

type otherKey struct{}
