package admissionattack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

type fbKey string

// fallbackRecord returns the timeline's "fallback" record, checking there
// is exactly one and that it is last.
func fallbackRecord(t *testing.T, rs []timeline.AttemptRecord) timeline.AttemptRecord {
	t.Helper()
	if countReason(rs, timeline.ReasonFallback) != 1 || rs[len(rs)-1].Reason != timeline.ReasonFallback {
		t.Fatalf("want exactly one fallback record, last: %s", fmtRecs(rs))
	}
	return rs[len(rs)-1]
}

// The fallback runs on refused calls — circuit open, bulkhead full, no
// policy — and observers keep the refusal.
func TestFallbackOnRefusals(t *testing.T) {
	o := newObs()
	var seen sync.Map
	fb := func(key string) recourse.Option {
		return recourse.WithFallback(key, func(ctx context.Context, err error) (any, error) {
			seen.Store(key, err)
			return "stand-in:" + key, nil
		})
	}
	e, err := recourse.New(recourse.WithObserver(o), recourse.WithMissingPolicyMode(recourse.FailureDeny),
		recourse.WithPolicy("adm.fb.open", opts(fastRetry(3), breakerOpt(5, time.Minute))...),
		recourse.WithPolicy("adm.fb.full", opts(fastRetry(3), bulkheadOpt(1, 0))...),
		fb("adm.fb.open"), fb("adm.fb.full"), fb("adm.fb.none"))
	if err != nil {
		t.Fatal(err)
	}
	_ = e.Do(context.Background(), "adm.fb.open", func(context.Context) error { return nil })
	e.Breaker("adm.fb.open").ForceOpen()
	h := hold(t, e, "adm.fb.full", 1)
	defer h.stop()
	for key, want := range map[string]error{"adm.fb.open": middleware.ErrCircuitOpen, "adm.fb.full": middleware.ErrBulkheadFull, "adm.fb.none": recourse.ErrNoPolicy} {
		t.Run(key, func(t *testing.T) {
			seen.Delete(key)
			var ran atomic.Bool
			v, tl, err := recourse.DoValueTimelineWith(context.Background(), e, key, func(context.Context) (string, error) { ran.Store(true); return "real", nil })
			if err != nil || v != "stand-in:"+key {
				t.Fatalf("got %q, %v", v, err)
			}
			if ran.Load() {
				t.Fatal("op ran on a refused call")
			}
			got, _ := seen.Load(key)
			if gotErr, _ := got.(error); !errors.Is(gotErr, want) {
				t.Fatalf("fallback got %v, want %v", got, want)
			}
			if tl == nil {
				t.Fatal("no timeline")
			}
			r := fallbackRecord(t, tl.Attempts)
			if !errors.Is(r.Err, want) {
				t.Fatalf("fallback record's Err %v, want %v", r.Err, want)
			}
			if !errors.Is(fallbackRecord(t, o.recs(key)).Err, want) {
				t.Fatalf("observer's fallback record: %s", fmtRecs(o.recs(key)))
			}
		})
	}
}

// Fallback runs once, after every try, and sees the last real error; the
// timeline keeps every failed try before the fallback record.
func TestFallbackAfterEveryTry(t *testing.T) {
	const key = "adm.fb.tries"
	var calls, inside atomic.Int32
	hedge := policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 2})
	e, err := recourse.New(recourse.WithPolicy(key, opts(fastRetry(3), hedge)...),
		recourse.WithFallback(key, func(ctx context.Context, err error) (any, error) {
			if n := inside.Load(); n != 0 {
				return nil, fmt.Errorf("fallback ran with %d tries still running", n)
			}
			calls.Add(1)
			if !errors.Is(err, errBoom) {
				return nil, fmt.Errorf("fallback got %v", err)
			}
			return 7, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	var ops atomic.Int32
	v, tl, err := recourse.DoValueTimelineWith(context.Background(), e, key, func(ctx context.Context) (int, error) {
		ops.Add(1)
		inside.Add(1)
		defer inside.Add(-1)
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			time.Sleep(2 * time.Millisecond)
		}
		return 0, errBoom
	})
	if err != nil || v != 7 || calls.Load() != 1 {
		t.Fatalf("v=%d err=%v fallback calls=%d", v, err, calls.Load())
	}
	fallbackRecord(t, tl.Attempts)
	if failed := len(tl.Attempts) - 1; failed < 3 {
		t.Fatalf("timeline lost failed tries: %s", fmtRecs(tl.Attempts))
	}
	if ops.Load() < 3 {
		t.Fatalf("ops %d", ops.Load())
	}
	if err := e.Do(context.Background(), key, func(context.Context) error { return nil }); err != nil || calls.Load() != 1 {
		t.Fatalf("successful call: %v, fallback calls %d", err, calls.Load())
	}
}

func TestFallbackTypes(t *testing.T) {
	type thing struct{ n int }
	mk := func(v any) *recourse.Executor {
		return recourse.NewExecutor(recourse.WithPolicy("adm.fb.type", fastRetry(1)...),
			recourse.WithFallback("adm.fb.type", func(context.Context, error) (any, error) { return v, nil }))
	}
	fail := func(context.Context) (int, error) { return 1, errBoom }
	t.Run("wrongType", func(t *testing.T) {
		for _, v := range []any{"x", int64(3), 3.0, &thing{}} {
			got, err := recourse.DoValueWith(context.Background(), mk(v), "adm.fb.type", fail)
			if !errors.Is(err, recourse.ErrFallbackType) || got != 0 {
				t.Fatalf("%T: got %d, %v", v, got, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "adm.fb.type") || !strings.Contains(msg, "int") || !strings.Contains(msg, fmt.Sprintf("%T", v)) {
				t.Fatalf("ErrFallbackType does not name key and both types: %q", msg)
			}
		}
	})
	t.Run("nilGivesZero", func(t *testing.T) {
		got, err := recourse.DoValueWith(context.Background(), mk(nil), "adm.fb.type", func(context.Context) (int, error) { return 5, errBoom })
		if err != nil || got != 0 {
			t.Fatalf("got %d, %v", got, err)
		}
	})
	t.Run("interfaceT", func(t *testing.T) {
		got, err := recourse.DoValueWith(context.Background(), mk(&thing{3}), "adm.fb.type", func(context.Context) (fmt.Stringer, error) { return nil, errBoom })
		if err == nil || got != nil { // *thing is no Stringer: must be an error
			t.Fatalf("non-Stringer accepted as fmt.Stringer: %v, %v", got, err)
		}
		e := mk(errBoom) // an error value implements error
		gotE, err := recourse.DoValueWith(context.Background(), e, "adm.fb.type", func(context.Context) (error, error) { return nil, errBoom })
		if err != nil || gotE != errBoom {
			t.Fatalf("value implementing interface T refused: %v, %v", gotE, err)
		}
		gotA, err := recourse.DoValueWith(context.Background(), mk(&thing{4}), "adm.fb.type", func(context.Context) (any, error) { return nil, errBoom })
		if err != nil || gotA.(*thing).n != 4 {
			t.Fatalf("any: %v, %v", gotA, err)
		}
	})
	t.Run("typedNilPointer", func(t *testing.T) {
		got, err := recourse.DoValueWith(context.Background(), mk((*thing)(nil)), "adm.fb.type", func(context.Context) (*thing, error) { return &thing{}, errBoom })
		if err != nil || got != nil {
			t.Fatalf("got %v, %v", got, err)
		}
	})
	t.Run("Do drops the value", func(t *testing.T) {
		if err := mk("whatever").Do(context.Background(), "adm.fb.type", func(context.Context) error { return errBoom }); err != nil {
			t.Fatal(err)
		}
	})
}

// A fallback that returns an error makes the call fail with it; the
// record has that verdict and the original error is not lost.
func TestFallbackReturningError(t *testing.T) {
	const key = "adm.fb.err"
	errOther := errors.New("other")
	for _, tc := range []struct {
		name string
		fn   func(error) error
		want error
	}{
		{"same", func(err error) error { return err }, errBoom},
		{"wrapped", func(err error) error { return fmt.Errorf("fb: %w", err) }, errBoom},
		{"other", func(error) error { return errOther }, errOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newObs()
			e := recourse.NewExecutor(recourse.WithObserver(o), recourse.WithPolicy(key, fastRetry(2)...),
				recourse.WithFallback(key, func(_ context.Context, err error) (any, error) { return "ignored", tc.fn(err) }))
			v, err := recourse.DoValueWith(context.Background(), e, key, func(context.Context) (string, error) { return "", errBoom })
			// (The value returned beside the error is the fallback's own when
			// it has T's type; the docs do not say which value a failed
			// call returns, so only the error is checked.)
			_ = v
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %q, %v", v, err)
			}
			rs := o.recs(key)
			if countReason(rs, "retryable")+countReason(rs, "") < 2 && len(rs) < 2 {
				t.Fatalf("observer lost the failed tries: %s", fmtRecs(rs))
			}
			fins := o.finished()
			if len(fins) != 1 || fins[0].Err == nil {
				t.Fatalf("OnFinish timeline has no error: %+v", fins)
			}
		})
	}
}

// The policy's overall timeout expired, but the fallback runs outside it:
// it gets the caller's context, alive and with its values.
func TestFallbackContextOutlivesPolicyTimeout(t *testing.T) {
	const key = "adm.fb.ctx"
	var fbErr atomic.Value
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(2), policy.OverallTimeout(20*time.Millisecond), policy.TimeoutPerAttempt(10*time.Millisecond))...),
		recourse.WithFallback(key, func(ctx context.Context, err error) (any, error) {
			if ctx.Err() != nil {
				fbErr.Store(fmt.Sprintf("fallback ctx done: %v", ctx.Err()))
			} else if ctx.Value(fbKey("k")) != "v" {
				fbErr.Store("fallback lost the caller's values")
			}
			return "cached", nil
		}))
	ctx := context.WithValue(context.Background(), fbKey("k"), "v")
	v, err := recourse.DoValueWith(ctx, e, key, func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	if err != nil || v != "cached" {
		t.Fatalf("got %q, %v", v, err)
	}
	if s := fbErr.Load(); s != nil {
		t.Fatal(s)
	}
}

// A panicking fallback must not crash the caller.
func TestFallbackPanicRecovered(t *testing.T) {
	const key = "adm.fb.panic"
	e := recourse.NewExecutor(recourse.WithPolicy(key, fastRetry(1)...),
		recourse.WithFallback(key, func(context.Context, error) (any, error) { panic("fallback exploded") }))
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("fallback panic escaped recourse (panic recovery on): %v", r)
			}
		}()
		err = e.Do(context.Background(), key, func(context.Context) error { return errBoom })
	}()
	var pe *recourse.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("fallback panic became %v", err)
	}
}

// go-kit paths: the fallback's value is the endpoint's response.
func TestFallbackEndpointAndMiddleware(t *testing.T) {
	const key = "adm.fb.kit"
	e := recourse.NewExecutor(recourse.WithPolicy(key, fastRetry(2)...),
		recourse.WithFallback(key, func(_ context.Context, err error) (any, error) { return "fb", nil }))
	failing := func(context.Context, any) (any, error) { return nil, errBoom }
	for name, ep := range map[string]func(context.Context, any) (any, error){
		"Endpoint":   e.Endpoint(key, failing),
		"Middleware": e.Middleware(key)(failing),
	} {
		resp, err := ep(context.Background(), "req")
		if err != nil || resp != "fb" {
			t.Fatalf("%s: %v, %v", name, resp, err)
		}
	}
}

// middleware.Fallback alone: the request reaches fn, nil fn is a no-op,
// success never calls fn.
func TestMiddlewareFallbackAlone(t *testing.T) {
	var got any
	fb := middleware.Fallback(func(ctx context.Context, req any, err error) (any, error) {
		got = req
		return "fb", nil
	})
	resp, err := fb(func(context.Context, any) (any, error) { return nil, errBoom })(context.Background(), "req-1")
	if err != nil || resp != "fb" || got != "req-1" {
		t.Fatalf("%v %v %v", resp, err, got)
	}
	got = nil
	resp, err = fb(func(context.Context, any) (any, error) { return "ok", nil })(context.Background(), "req-2")
	if err != nil || resp != "ok" || got != nil {
		t.Fatalf("success: %v %v fn saw %v", resp, err, got)
	}
	if _, err := middleware.Fallback(nil)(func(context.Context, any) (any, error) { return nil, errBoom })(context.Background(), nil); !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
}

// A nil fn removes the fallback; New reports it.
func TestFallbackNilRemoves(t *testing.T) {
	const key = "adm.fb.nil"
	set := recourse.WithFallback(key, func(context.Context, error) (any, error) { return 1, nil })
	if _, err := recourse.New(set, recourse.WithFallback(key, nil)); err == nil {
		t.Fatal("New accepted a nil fallback")
	}
	e := recourse.NewExecutor(recourse.WithPolicy(key, fastRetry(1)...), set, recourse.WithFallback(key, nil))
	if err := e.Do(context.Background(), key, func(context.Context) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("removed fallback still ran: %v", err)
	}
}

// Calls refused before they are made (nil ctx, nil op) return their errors;
// a fallback that reads its context must not be handed a nil one.
func TestFallbackOnNilArguments(t *testing.T) {
	const key = "adm.fb.nilargs"
	e := recourse.NewExecutor(recourse.WithFallback(key, func(ctx context.Context, err error) (any, error) {
		_ = ctx.Value(fbKey("k")) // panics on a nil ctx
		return nil, err
	}))
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic: %v", r)
		}
	}()
	var nilCtx context.Context // a nil context on purpose
	if err := e.Do(nilCtx, key, func(context.Context) error { return nil }); !errors.Is(err, recourse.ErrNilContext) {
		t.Fatalf("nil ctx: %v", err)
	}
	if err := e.Do(context.Background(), key, nil); !errors.Is(err, recourse.ErrNilOperation) {
		t.Fatalf("nil op: %v", err)
	}
}

// Many goroutines on a key whose breaker operators flip: every DoValue
// gets the real value or the fallback's, never a zero or an error.
func TestFallbackUnderForceOpenStorm(t *testing.T) {
	const key = "adm.fb.storm"
	e := recourse.NewExecutor(recourse.WithPolicy(key, opts(fastRetry(2), breakerOpt(2, 10*time.Millisecond), bulkheadOpt(8, time.Millisecond))...),
		recourse.WithFallback(key, func(context.Context, error) (any, error) { return -1, nil }))
	_ = e.Do(context.Background(), key, func(context.Context) error { return nil })
	b := e.Breaker(key)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	for g := 0; g < 200; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				v, err := recourse.DoValueWith(context.Background(), e, key, func(context.Context) (int, error) {
					if (g+k)%5 == 0 {
						return 0, errBoom
					}
					return 1, nil
				})
				if err != nil || (v != 1 && v != -1) {
					bad.Store(fmt.Sprintf("v=%d err=%v", v, err))
				}
			}
		}(g)
	}
	end := time.Now().Add(300 * time.Millisecond)
	for k := 0; time.Now().Before(end); k++ {
		if k%2 == 0 {
			b.ForceOpen()
		} else {
			b.Reset()
		}
		time.Sleep(4 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if s := bad.Load(); s != nil {
		t.Fatal(s)
	}
}
