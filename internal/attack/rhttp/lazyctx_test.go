package rhttpattack

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
)

// capturing answers at once, never looking at the request's context (as
// an in-memory base or a cache does), and hands that context to the test.
type capturing struct{ ctx chan context.Context }

func (c capturing) RoundTrip(r *http.Request) (*http.Response, error) {
	c.ctx <- r.Context()
	return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: 2,
		Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
}

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The context a try's request is sent under, looked at only after the
// base returned (nobody waited on it during the call), still answers as a
// standard context would: it is live while the body is open, whatever
// policy ran it; the caller's cancellation reaches it (Err, Done, Cause,
// contexts derived from it, AfterFunc), and so does closing the body.
func TestUnwatchedTryContextAnswersAsTheStandardOne(t *testing.T) {
	cause := errors.New("caller gave up")
	execs := map[string]func() *recourse.Executor{
		"plain":      func() *recourse.Executor { return newExec(2) },
		"perAttempt": func() *recourse.Executor { return newExec(2, perAttempt(time.Hour)) },
		"overall":    func() *recourse.Executor { return newExec(2, overall(time.Hour)) },
		"hedged":     func() *recourse.Executor { return newExec(1, hedge(time.Hour)) },
	}
	for _, name := range []string{"plain", "perAttempt", "overall", "hedged"} {
		for _, end := range []string{"caller", "close"} {
			t.Run(name+"/"+end, func(t *testing.T) {
				base := capturing{ctx: make(chan context.Context, 4)}
				c := &http.Client{Transport: newRT(execs[name](), base, 1<<20)}
				caller, cancel := context.WithCancelCause(context.WithValue(context.Background(), valKey{}, "v"))
				defer cancel(nil)
				req, _ := http.NewRequestWithContext(caller, http.MethodGet, "http://memory/x", nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				ctx := <-base.ctx
				if ctx.Err() != nil || context.Cause(ctx) != nil || isDone(ctx) {
					t.Fatalf("ended with the body open: %v %v", ctx.Err(), context.Cause(ctx))
				}
				if ctx.Value(valKey{}) != "v" {
					t.Fatal("caller's value lost")
				}
				derived, dcancel := context.WithCancel(ctx)
				defer dcancel()
				ran := make(chan struct{})
				context.AfterFunc(ctx, func() { close(ran) })
				wc := context.WithoutCancel(ctx)
				want, wantCause := context.Canceled, error(context.Canceled)
				if end == "caller" {
					cancel(cause)
					wantCause = cause
				} else {
					resp.Body.Close()
				}
				// Err and the cause say so at once; Done, the derived context
				// and AfterFunc follow (through AfterFunc's goroutine when the
				// chain added a cancellation of its own).
				if ctx.Err() != want || context.Cause(ctx) != wantCause {
					t.Fatalf("Err %v Cause %v; want %v %v", ctx.Err(), context.Cause(ctx), want, wantCause)
				}
				eventually(t, "Done never closed", func() bool { return isDone(ctx) })
				eventually(t, "derived context never ended", func() bool { return isDone(derived) })
				if derived.Err() != want || context.Cause(derived) != wantCause {
					t.Fatalf("derived: Err %v Cause %v", derived.Err(), context.Cause(derived))
				}
				select {
				case <-ran:
				case <-time.After(5 * time.Second):
					t.Fatal("AfterFunc never ran")
				}
				if wc.Err() != nil || wc.Done() != nil || wc.Value(valKey{}) != "v" {
					t.Fatal("WithoutCancel follows the end")
				}
			})
		}
	}
}
