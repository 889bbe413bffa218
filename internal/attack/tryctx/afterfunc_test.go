package tryctx_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// TestAfterFuncStopAndOnce adapts TestAfterFuncNotCalledAfterStop and
// TestAfterFuncCalledAfterCancel: an AfterFunc registered on the try's
// context during the try, then stopped before the end, never runs (stop
// says true); another registered and not stopped runs exactly once, however
// many ends follow (close, caller cancel); stop after it ran says false.
func TestAfterFuncStopAndOnce(t *testing.T) {
	for _, p := range shapes() {
		for _, reg := range []string{"during", "afterReturn"} {
			t.Run(p.name+"/"+reg, func(t *testing.T) {
				var stopped, kept atomic.Int32
				var stop1, stop2 func() bool
				base := newCapture()
				register := func(ctx context.Context) {
					stop1 = context.AfterFunc(ctx, func() { stopped.Add(1) })
					stop2 = context.AfterFunc(ctx, func() { kept.Add(1) })
				}
				if reg == "during" {
					base.during = register
				}
				rt := rhttp.NewTransport(p.exec(t), key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				ctx := <-base.ctxs
				if reg == "afterReturn" {
					register(ctx)
				}
				time.Sleep(5 * time.Millisecond)
				if stopped.Load() != 0 || kept.Load() != 0 {
					t.Fatal("AfterFunc ran while the context was live")
				}
				if !stop1() {
					t.Fatal("stop() false on a live context")
				}
				if stop1() {
					t.Fatal("second stop() true")
				}
				res.Body.Close()
				cancel(errors.New("later"))
				eventually(t, 2*time.Second, "AfterFunc never ran", func() bool { return kept.Load() == 1 })
				time.Sleep(10 * time.Millisecond)
				if kept.Load() != 1 || stopped.Load() != 0 {
					t.Fatalf("kept ran %d times, stopped ran %d times", kept.Load(), stopped.Load())
				}
				if stop2() {
					t.Fatal("stop() true after f ran")
				}
			})
		}
	}
}

// TestStoredContextUsedLater: a base stores the try's context and uses it
// long after the call returned and the body was closed (a background
// refresh, a cache fill): every derivation is done at once, with the end's
// Err and Cause, as on any cancelled standard context; WithoutCancel still
// works; AfterFunc runs promptly.
func TestStoredContextUsedLater(t *testing.T) {
	for _, p := range shapes() {
		t.Run(p.name, func(t *testing.T) {
			base := newCapture()
			rt := rhttp.NewTransport(p.exec(t), key, base)
			res, err := get(t, rt, context.WithValue(context.Background(), ctxKey{}, "v"))
			if err != nil {
				t.Fatal(err)
			}
			ctx := <-base.ctxs
			res.Body.Close()
			time.Sleep(20 * time.Millisecond)
			want := snap{context.Canceled, context.Canceled, true}
			if s := look(ctx); s != want {
				t.Fatalf("stored: %+v", s)
			}
			c1, cc1 := context.WithTimeout(ctx, time.Hour)
			defer cc1()
			c2, cc2 := context.WithCancelCause(ctx)
			defer cc2(errors.New("mine"))
			c3, cc3 := context.WithDeadline(ctx, time.Now().Add(-time.Second)) // already past: the parent's end comes first
			defer cc3()
			for i, c := range []context.Context{c1, c2, c3, context.WithValue(ctx, otherKey(1), 1)} {
				if s := look(c); s != want {
					t.Errorf("derived %d: %+v want %+v", i, s, want)
				}
			}
			wc := context.WithoutCancel(ctx)
			if wc.Err() != nil || wc.Value(ctxKey{}) != "v" {
				t.Error("WithoutCancel")
			}
			ran := make(chan struct{})
			context.AfterFunc(ctx, func() { close(ran) })
			if !waitDone(ctxOf(ran), time.Second) {
				t.Fatal("AfterFunc on the ended stored context did not run")
			}
		})
	}
}

// TestDoneFromOtherGoroutineAfterReturn: a base hands the context to a
// goroutine that waits on Done only after RoundTrip returned (a watcher
// started late). Closing the body, or the caller's cancellation, wakes it.
func TestDoneFromOtherGoroutineAfterReturn(t *testing.T) {
	for _, p := range shapes() {
		for _, end := range []string{"close", "caller"} {
			t.Run(p.name+"/"+end, func(t *testing.T) {
				woke := make(chan error, 1)
				base := newCapture()
				base.during = func(ctx context.Context) {
					go func() {
						time.Sleep(10 * time.Millisecond) // after RoundTrip returned
						<-ctx.Done()
						woke <- context.Cause(ctx)
					}()
				}
				rt := rhttp.NewTransport(p.exec(t), key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				<-base.ctxs
				time.Sleep(30 * time.Millisecond)
				select {
				case c := <-woke:
					t.Fatalf("watcher woke while live: %v", c)
				default:
				}
				cause := errors.New("caller")
				want := error(context.Canceled)
				if end == "close" {
					res.Body.Close()
				} else {
					cancel(cause)
					want = cause
				}
				select {
				case c := <-woke:
					if c != want {
						t.Fatalf("cause %v want %v", c, want)
					}
				case <-time.After(2 * time.Second):
					t.Fatal("watcher never woke")
				}
			})
		}
	}
}
