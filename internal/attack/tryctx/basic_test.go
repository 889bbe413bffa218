package tryctx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// TestDoneLifecycle: during the try and after RoundTrip returns (body open)
// the context is live: Done non-nil and open, the same channel every time,
// Err and Cause nil. Closing the body ends it: the same channel is closed by
// the time Close returns, Err Canceled, Cause Canceled (as cancel(nil) of a
// context.WithCancelCause child).
func TestDoneLifecycle(t *testing.T) {
	for _, p := range shapes() {
		for _, watchDuring := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/watch=%v", p.name, watchDuring), func(t *testing.T) {
				base := newCapture()
				var dDuring <-chan struct{}
				if watchDuring {
					base.during = func(ctx context.Context) {
						dDuring = ctx.Done()
						if dDuring == nil || isDone(ctx) || ctx.Err() != nil || context.Cause(ctx) != nil {
							t.Errorf("during: Done %v done %v Err %v Cause %v", dDuring, isDone(ctx), ctx.Err(), context.Cause(ctx))
						}
					}
				}
				rt := rhttp.NewTransport(p.exec(t), key, base)
				res, err := get(t, rt, context.Background())
				if err != nil {
					t.Fatal(err)
				}
				ctx := <-base.ctxs
				d := ctx.Done()
				if d == nil {
					t.Fatal("Done() is nil although the try can end (body close)")
				}
				if watchDuring && d != dDuring {
					t.Fatal("Done() returned a different channel after the try")
				}
				if ctx.Done() != d {
					t.Fatal("Done() not stable")
				}
				if s := look(ctx); s != (snap{}) {
					t.Fatalf("live context answers %+v", s)
				}
				res.Body.Close()
				select {
				case <-d:
				default:
					t.Fatal("Done not closed by the time Body.Close returned")
				}
				if ctx.Done() != d {
					t.Fatal("Done() changed after the end")
				}
				want := snap{err: context.Canceled, cause: context.Canceled, done: true}
				if s := look(ctx); s != want {
					t.Fatalf("after Close: %+v want %+v", s, want)
				}
			})
		}
	}
}

// TestErrOnlyThenDone: the context is never waited on; the caller cancels
// with a cause; Err says Canceled at once (cancel returned), Cause is the
// caller's, and the first Done() ever called is already closed (Err non-nil
// implies Done closed: TestContextErrDoneRace).
func TestErrOnlyThenDone(t *testing.T) {
	cause := errors.New("caller cause")
	for _, p := range shapes() {
		for _, first := range []string{"Err", "Cause", "Done", "Derive", "AfterFunc"} {
			t.Run(p.name+"/"+first, func(t *testing.T) {
				base := newCapture()
				rt := rhttp.NewTransport(p.exec(t), key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				ctx := <-base.ctxs
				cancel(cause)
				switch first {
				case "Err":
					if ctx.Err() != context.Canceled {
						t.Fatalf("Err %v", ctx.Err())
					}
				case "Cause":
					if c := context.Cause(ctx); c != cause {
						t.Fatalf("Cause %v", c)
					}
				case "Done":
					if !isDone(ctx) {
						t.Fatal("first Done() not closed after caller's cancel returned")
					}
				case "Derive":
					c, cc := context.WithCancel(ctx)
					defer cc()
					if !isDone(c) || c.Err() != context.Canceled || context.Cause(c) != cause {
						t.Fatalf("derived: %+v", look(c))
					}
				case "AfterFunc":
					ran := make(chan struct{})
					stop := context.AfterFunc(ctx, func() { close(ran) })
					if !waitDone(ctxOf(ran), time.Second) {
						t.Fatal("AfterFunc on an ended context never ran")
					}
					if stop() {
						t.Fatal("stop() true after f ran")
					}
				}
				want := snap{err: context.Canceled, cause: cause, done: true}
				if s := look(ctx); s != want {
					t.Fatalf("after: %+v want %+v", s, want)
				}
			})
		}
	}
}

// ctxOf turns a channel into a context done when it closes (for waitDone).
type chanCtx struct {
	context.Context
	c <-chan struct{}
}

func (c chanCtx) Done() <-chan struct{} { return c.c }
func ctxOf(c <-chan struct{}) context.Context {
	return chanCtx{context.Background(), c}
}

// TestCallerCancelIsSynchronous: a context.WithCancelCause child of a
// standard caller context is done, with the caller's cause, by the time the
// caller's cancel returns — and so is every standard context derived from
// it. The try's context, watched during the try (Done, a derived child, an
// AfterFunc) must be too.
func TestCallerCancelIsSynchronous(t *testing.T) {
	callerCancelSync(t, syncShapes())
}

// TestCallerCancelIsSynchronousUnderPolicy: the same when the policy has a
// per-attempt or overall timeout or a hedge.
func TestCallerCancelIsSynchronousUnderPolicy(t *testing.T) {
	callerCancelSync(t, asyncShapes())
}

// syncShapes are the shapes without a context of the chain's own between the
// caller and the try; asyncShapes the others.
func syncShapes() []pol  { return shapes()[:2] }
func asyncShapes() []pol { return shapes()[2:] }

func callerCancelSync(t *testing.T, shs []pol) {
	cause := errors.New("caller cause")
	for _, p := range shs {
		for _, watch := range []string{"Done", "Derive", "AfterFunc", "DeriveAfter", "None"} {
			t.Run(p.name+"/"+watch, func(t *testing.T) {
				base := newCapture()
				var child context.Context
				var childCancel context.CancelFunc = func() {}
				defer func() { childCancel() }()
				var stopAF func() bool
				var ranAF chan struct{}
				base.during = func(ctx context.Context) {
					switch watch {
					case "Done":
						ctx.Done()
					case "Derive":
						child, childCancel = context.WithCancel(ctx)
					case "AfterFunc":
						ranAF = make(chan struct{})
						stopAF = context.AfterFunc(ctx, func() { close(ranAF) })
					}
				}
				rt := rhttp.NewTransport(p.exec(t), key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				ctx := <-base.ctxs
				if watch == "DeriveAfter" {
					var cc context.CancelFunc
					child, cc = context.WithCancel(ctx)
					defer cc()
				}
				ref, refCancel := context.WithCancelCause(caller)
				defer refCancel(nil)
				ref.Done()
				cancel(cause)
				// The reference is synchronous.
				if !isDone(ref) {
					t.Fatal("stdlib reference not synchronous?")
				}
				// Nothing but Done is asked before these checks: Err is known
				// to close Done on its way (see TestErrClosesDone).
				if child != nil && !isDone(child) {
					t.Errorf("child of the try context: Done not closed when the caller's cancel returned")
				}
				if !isDone(ctx) {
					t.Errorf("try context: Done not closed when the caller's cancel returned")
				}
				if stopAF != nil {
					// AfterFunc runs in its own goroutine even in the stdlib,
					// but stop() must already say it is too late.
					if stopAF() {
						t.Errorf("AfterFunc stop() true after the caller's cancel returned (stdlib: false, f already scheduled)")
						ranAF = nil // stopped by this very check
					}
				}
				eventually(t, 5*time.Second, "try context never ended", func() bool { return isDone(ctx) })
				if s := look(ctx); s != (snap{context.Canceled, cause, true}) {
					t.Errorf("try: %+v", s)
				}
				if child != nil {
					eventually(t, 5*time.Second, "child never ended", func() bool { return isDone(child) })
					if s := look(child); s != (snap{context.Canceled, cause, true}) {
						t.Errorf("child: %+v", s)
					}
				}
				if ranAF != nil && !waitDone(ctxOf(ranAF), 5*time.Second) {
					t.Error("AfterFunc never ran")
				}
			})
		}
	}
}

// TestCallerCancelDuringTryIsSynchronous: the same while the base is still
// inside RoundTrip (the caller cancels while the try is in flight): by the
// time the caller's cancel returns, the try's context (armed by Done) is done.
func TestCallerCancelDuringTryIsSynchronous(t *testing.T) {
	callerCancelDuringTrySync(t, syncShapes())
}

// TestCallerCancelDuringTryIsSynchronousUnderPolicy: the same under a
// per-attempt or overall timeout or a hedge.
func TestCallerCancelDuringTryIsSynchronousUnderPolicy(t *testing.T) {
	callerCancelDuringTrySync(t, asyncShapes())
}

func callerCancelDuringTrySync(t *testing.T, shs []pol) {
	cause := errors.New("caller cause")
	for _, p := range shs {
		t.Run(p.name, func(t *testing.T) {
			inTry := make(chan context.Context, 1)
			release := make(chan struct{})
			base := rtFunc(func(r *http.Request) (*http.Response, error) {
				ctx := r.Context()
				ctx.Done()
				inTry <- ctx
				<-release
				return nil, ctx.Err()
			})
			rt := rhttp.NewTransport(p.exec(t), key, base)
			caller, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			errc := make(chan error, 1)
			go func() {
				res, err := get(t, rt, caller)
				if res != nil {
					res.Body.Close()
				}
				errc <- err
			}()
			ctx := <-inTry
			cancel(cause)
			sync := isDone(ctx)
			close(release)
			if !sync {
				t.Errorf("try context not done when the caller's cancel returned (in flight)")
			}
			if err := <-errc; err == nil {
				t.Error("call succeeded")
			}
			if s := look(ctx); s != (snap{context.Canceled, cause, true}) {
				t.Errorf("try: %+v", s)
			}
		})
	}
}
