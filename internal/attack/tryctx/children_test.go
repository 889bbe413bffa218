package tryctx_test

import (
	"context"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// TestManyChildrenNoGoroutines adapts TestCancelRemoves /
// TestCustomContextGoroutines: 300 children derived from a live try's
// context (WithCancel, WithTimeout, AfterFunc), under a standard caller and
// a foreign one, start no goroutine each (a standard child of a standard
// context starts none), each cancelled child goes away, and all end with
// the body's Close.
func TestManyChildrenNoGoroutines(t *testing.T) {
	for _, p := range shapes() {
		for _, kind := range []string{"std", "foreign"} {
			t.Run(p.name+"/"+kind, func(t *testing.T) {
				base := newCapture()
				rt := rhttp.NewTransport(p.exec(t), key, base)
				var caller context.Context = context.Background()
				if kind == "foreign" {
					f := newForeign()
					defer f.cancel()
					caller = f
				}
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				ctx := <-base.ctxs
				ctx.Done()
				runtime.GC()
				g0 := runtime.NumGoroutine()
				var cancels []func()
				var kids []context.Context
				for i := 0; i < 100; i++ {
					c1, cc1 := context.WithCancel(ctx)
					c2, cc2 := context.WithTimeout(ctx, time.Hour)
					stop := context.AfterFunc(ctx, func() {})
					kids = append(kids, c1, c2)
					cancels = append(cancels, cc1, cc2, func() { stop() })
				}
				if n := runtime.NumGoroutine(); n > g0+3 {
					t.Errorf("%d goroutines for 300 children of a live try context (was %d)", n, g0)
				}
				for _, c := range cancels[:150] {
					c()
				}
				res.Body.Close()
				for _, k := range kids {
					if !waitDone(k, time.Second) {
						t.Fatal("child not ended after Close")
					}
				}
				for _, c := range cancels {
					c()
				}
			})
		}
	}
}

// TestEndCausesByKind records the cause each kind of end gives the try's
// context: body closed, abandoned after a retryable status, hedge loser,
// caller cancel without cause. Err is Canceled for all; the cause must be
// non-nil and, for the caller's plain cancel, context.Canceled.
func TestEndCausesByKind(t *testing.T) {
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		ctx := r.Context()
		info, _ := endpoint.AttemptFromContext(ctx)
		if info.Attempt == 1 {
			return resp(r, 503, nil), nil
		}
		if info.HedgeIndex == 0 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return resp(r, 200, nil), nil
	})
	p := pol{attempts: 2, hedge: 10 * time.Millisecond}
	ch := make(chan context.Context, 4)
	rt := rhttp.NewTransport(p.exec(t), key, rtFunc(func(r *http.Request) (*http.Response, error) {
		ch <- r.Context()
		return base(r)
	}))
	res, err := get(t, rt, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	close(ch)
	for c := range ch {
		info, _ := endpoint.AttemptFromContext(c)
		if !waitDone(c, time.Second) {
			t.Fatalf("try %+v never ended", info)
		}
		t.Logf("attempt %d hedge %d: Err %v Cause %v", info.Attempt, info.HedgeIndex, c.Err(), context.Cause(c))
		if c.Err() != context.Canceled || context.Cause(c) == nil {
			t.Errorf("attempt %d hedge %d: Err %v Cause %v", info.Attempt, info.HedgeIndex, c.Err(), context.Cause(c))
		}
	}
}
