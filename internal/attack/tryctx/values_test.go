package tryctx_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

type sliceKey []int // incomparable key type
type otherKey int

// TestValuesLikeStdlib: the caller's values show through; AttemptFromContext
// gives the try's attempt; Value with odd keys (nil, an incomparable key of a
// type nobody stored, a key of a type only the context package knows) answers
// as a standard child would, without panicking — before and after arming and
// after the end.
func TestValuesLikeStdlib(t *testing.T) {
	for _, p := range shapes() {
		t.Run(p.name, func(t *testing.T) {
			base := newCapture()
			rt := rhttp.NewTransport(p.exec(t), key, base)
			caller, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
			defer cancel()
			ref, rc := context.WithCancelCause(caller)
			defer rc(nil)
			res, err := get(t, rt, caller)
			if err != nil {
				t.Fatal(err)
			}
			ctx := <-base.ctxs
			check := func(when string) {
				t.Helper()
				if ctx.Value(ctxKey{}) != "v" {
					t.Errorf("%s: caller value lost", when)
				}
				for _, k := range []any{nil, otherKey(1), "string key", 0, struct{}{}} {
					var got, want any
					func() {
						defer func() {
							if r := recover(); r != nil {
								t.Errorf("%s: Value(%#v) panicked: %v", when, k, r)
							}
						}()
						got = ctx.Value(k)
					}()
					want = ref.Value(k)
					if got != want {
						t.Errorf("%s: Value(%#v) = %v, stdlib %v", when, k, got, want)
					}
				}
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Errorf("%s: Value(incomparable key) panicked: %v (stdlib child returns nil)", when, r)
						}
					}()
					if v := ctx.Value(sliceKey{1}); v != nil {
						t.Errorf("%s: Value(sliceKey) = %v", when, v)
					}
				}()
				info, ok := endpoint.AttemptFromContext(ctx)
				if !ok || info.Attempt != 1 || info.Key != key || info.HedgeIndex != 0 {
					t.Errorf("%s: attempt info %+v %v", when, info, ok)
				}
				w := context.WithValue(ctx, ctxKey{}, "shadow")
				if w.Value(ctxKey{}) != "shadow" {
					t.Errorf("%s: shadowing", when)
				}
				wc := context.WithoutCancel(ctx)
				if wc.Value(ctxKey{}) != "v" || wc.Done() != nil || wc.Err() != nil {
					t.Errorf("%s: WithoutCancel", when)
				}
				if _, ok := wc.Deadline(); ok {
					t.Errorf("%s: WithoutCancel has a deadline", when)
				}
			}
			check("unarmed")
			ctx.Done()
			check("armed")
			res.Body.Close()
			check("ended")
			_ = fmt.Sprint(ctx) // String must not panic
		})
	}
}

// TestAttemptInfoPerTry: retried and hedged tries each carry their own
// attempt number / hedge index in the context the base gets.
func TestAttemptInfoPerTry(t *testing.T) {
	var mu sync.Mutex
	var infos []endpoint.AttemptInfo
	calls := 0
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		info, _ := endpoint.AttemptFromContext(r.Context())
		mu.Lock()
		infos = append(infos, info)
		calls++
		n := calls
		mu.Unlock()
		switch n {
		case 1:
			return resp(r, 503, nil), nil
		case 2: // slow primary of attempt 2: the hedge wins
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return nil, r.Context().Err()
		}
		return resp(r, 200, nil), nil
	})
	p := pol{attempts: 3, hedge: 20 * time.Millisecond}
	rt := rhttp.NewTransport(p.exec(t), key, base)
	res, err := get(t, rt, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(infos) < 3 {
		t.Fatalf("infos %+v", infos)
	}
	if infos[0].Attempt != 1 || infos[1].Attempt != 2 || infos[2].Attempt != 2 || infos[2].HedgeIndex != 1 || infos[1].HedgeIndex != 0 {
		t.Fatalf("infos %+v", infos)
	}
}
