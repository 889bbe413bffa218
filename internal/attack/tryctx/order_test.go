package tryctx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// observe asks ctx one question, the way a user would first touch it.
func observe(t *testing.T, how string, ctx context.Context) (cleanup func()) {
	switch how {
	case "Err":
		ctx.Err()
	case "Cause":
		context.Cause(ctx)
	case "Done":
		ctx.Done()
	case "Derive":
		_, c := context.WithCancel(ctx)
		return c
	case "DeriveTimeout":
		_, c := context.WithTimeout(ctx, time.Hour)
		return c
	case "AfterFunc":
		stop := context.AfterFunc(ctx, func() {})
		return func() { stop() }
	case "Value":
		ctx.Value(ctxKey{})
	case "Deadline":
		ctx.Deadline()
	case "None":
	}
	return func() {}
}

var observations = []string{"None", "Err", "Cause", "Done", "Derive", "DeriveTimeout", "AfterFunc", "Value", "Deadline"}

// TestEndOrderMatrix: two ends race for the try's context — the caller's
// cancellation (with a cause) and the body's Close — in both orders, with the
// context touched (one of many ways) before the first, between the two, or
// only after both. A context.WithCancelCause(caller) child cancelled the same
// way (Close = cancel(nil)) is the reference: the first end wins, for Err and
// for Cause, and for children made before or after.
func TestEndOrderMatrix(t *testing.T) {
	cause := errors.New("caller cause")
	for _, p := range shapes() {
		for _, order := range []string{"caller-then-close", "close-then-caller"} {
			for _, obs := range observations {
				for _, when := range []string{"before", "between", "after"} {
					name := fmt.Sprintf("%s/%s/%s-%s", p.name, order, obs, when)
					t.Run(name, func(t *testing.T) {
						base := newCapture()
						rt := rhttp.NewTransport(p.exec(t), key, base)
						caller, cancel := context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "v"))
						defer cancel(nil)
						ref, refCancel := context.WithCancelCause(caller)
						defer refCancel(nil)
						res, err := get(t, rt, caller)
						if err != nil {
							t.Fatal(err)
						}
						defer res.Body.Close()
						ctx := <-base.ctxs
						var cleanups []func()
						defer func() {
							for _, c := range cleanups {
								c()
							}
						}()
						at := func(w string) {
							if w == when {
								cleanups = append(cleanups, observe(t, obs, ctx), observe(t, obs, ref))
							}
						}
						callerEnd := func() { cancel(cause) }
						closeEnd := func() { refCancel(nil); res.Body.Close() }
						at("before")
						if order == "caller-then-close" {
							callerEnd()
							at("between")
							closeEnd()
						} else {
							closeEnd()
							at("between")
							callerEnd()
						}
						at("after")
						want := look(ref)
						// Derived after both ends: done at once with the same answers.
						rc, rcc := context.WithCancel(ref)
						defer rcc()
						wantChild := look(rc)
						eventually(t, 2*time.Second, "try context never done", func() bool { return isDone(ctx) })
						if got := look(ctx); got != want {
							t.Errorf("try context %+v; stdlib %+v", got, want)
						}
						c, cc := context.WithCancel(ctx)
						defer cc()
						if got := look(c); got != wantChild {
							t.Errorf("child made after: %+v; stdlib %+v", got, wantChild)
						}
						if ctx.Value(ctxKey{}) != "v" {
							t.Error("value lost")
						}
					})
				}
			}
		}
	}
}
