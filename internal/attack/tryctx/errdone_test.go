package tryctx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// TestErrImpliesDone adapts the stdlib's TestContextErrDoneRace (#75533):
// "If Done is not yet closed, Err returns nil". The try's context, armed
// (Done called) during the try, is watched by a goroutine reading Err then
// Done while the caller cancels: whenever Err has said non-nil, Done must
// already be closed. Likewise for Cause.
func TestErrImpliesDone(t *testing.T) {
	cause := errors.New("caller cause")
	for _, p := range shapes() {
		for _, ender := range []string{"caller", "close"} {
			t.Run(fmt.Sprintf("%s/%s", p.name, ender), func(t *testing.T) {
				violations := 0
				for i := 0; i < 200 && violations == 0; i++ {
					base := newCapture()
					base.during = func(ctx context.Context) { ctx.Done() }
					rt := rhttp.NewTransport(p.exec(t), key, base)
					caller, cancel := context.WithCancelCause(context.Background())
					res, err := get(t, rt, caller)
					if err != nil {
						t.Fatal(err)
					}
					ctx := <-base.ctxs
					stop := make(chan struct{})
					seen := make(chan string, 1)
					go func() {
						for {
							if e := ctx.Err(); e != nil {
								if !isDone(ctx) {
									seen <- fmt.Sprintf("Err %v with Done open", e)
									return
								}
								seen <- ""
								return
							}
							if c := context.Cause(ctx); c != nil && !isDone(ctx) {
								seen <- fmt.Sprintf("Cause %v with Done open", c)
								return
							}
							select {
							case <-stop:
								seen <- ""
								return
							default:
							}
						}
					}()
					if ender == "caller" {
						cancel(cause)
					} else {
						res.Body.Close()
					}
					// On the cancelling goroutine itself: Err read first, then Done.
					if e := ctx.Err(); e != nil && !isDone(ctx) {
						violations++
						t.Errorf("iteration %d: after the end returned, Err %v while Done still open", i, e)
					}
					if msg := <-seen; msg != "" {
						violations++
						t.Errorf("iteration %d: %s", i, msg)
					}
					close(stop)
					cancel(nil)
					res.Body.Close()
				}
			})
		}
	}
}
