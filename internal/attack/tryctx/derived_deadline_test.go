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

// TestDerivedBeforeDeadline: a child derived from the try's context (during
// the try, or after RoundTrip returned with the body open) before a deadline
// passes ends with the parent's Err and Cause — DeadlineExceeded, not
// Canceled — as every standard child does (cancel(false, parent.Err(),
// Cause(parent))). So does an AfterFunc watcher reading them, and the try's
// context itself once armed.
func TestDerivedBeforeDeadline(t *testing.T) {
	callerCause := errors.New("caller deadline")
	const short, long = 30 * time.Millisecond, time.Hour
	for _, c := range []struct {
		name     string
		p        pol
		callerDL time.Duration
		cause    error // nil: any
	}{
		{"perAttempt", pol{attempts: 2, perAttempt: short}, 0, errAT},
		{"overall", pol{attempts: 2, overall: short}, 0, nil},
		{"caller", pol{attempts: 2}, short, callerCause},
		{"callerUnderPerAttempt", pol{attempts: 2, perAttempt: long}, short, callerCause},
		{"callerUnderOverall", pol{attempts: 2, overall: long}, short, callerCause},
		{"hedgedPerAttempt", pol{attempts: 1, perAttempt: short, hedge: long}, 0, errAT},
		{"hedgedCaller", pol{attempts: 1, hedge: long}, short, callerCause},
	} {
		for _, when := range []string{"during", "afterReturn"} {
			t.Run(fmt.Sprintf("%s/%s", c.name, when), func(t *testing.T) {
				var child context.Context
				cc := context.CancelFunc(func() {})
				defer func() { cc() }()
				base := newCapture()
				if when == "during" {
					base.during = func(ctx context.Context) { child, cc = context.WithCancel(ctx) }
				}
				rt := rhttp.NewTransport(c.p.exec(t), key, base)
				caller := context.Background()
				if c.callerDL > 0 {
					var cancel context.CancelFunc
					caller, cancel = context.WithDeadlineCause(caller, time.Now().Add(c.callerDL), callerCause)
					defer cancel()
				}
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				ctx := <-base.ctxs
				if when == "afterReturn" {
					var c2 context.CancelFunc
					child, c2 = context.WithCancel(ctx)
					defer c2()
				}
				type pair struct{ err, cause error }
				afc := make(chan pair, 1)
				context.AfterFunc(ctx, func() { afc <- pair{ctx.Err(), context.Cause(ctx)} })
				if !waitDone(child, 2*time.Second) {
					t.Fatal("child never ended")
				}
				got := pair{child.Err(), context.Cause(child)}
				parent := pair{ctx.Err(), context.Cause(ctx)}
				if parent.err != context.DeadlineExceeded {
					t.Errorf("try context Err %v", parent.err)
				}
				if c.cause != nil && parent.cause != c.cause {
					t.Errorf("try context Cause %v want %v", parent.cause, c.cause)
				}
				if got != parent {
					t.Errorf("child ended with %v / %v; its parent (the try's context) says %v / %v", got.err, got.cause, parent.err, parent.cause)
				}
				if a := <-afc; a != parent {
					t.Errorf("AfterFunc saw %v / %v", a.err, a.cause)
				}
			})
		}
	}
}

// TestBaseDerivedChildErrorOnPerAttemptTimeout: the user-visible side of
// TestDerivedBeforeDeadline. A base that bounds its own work with a child of
// the request's context (context.WithTimeout(r.Context(), time.Minute), as a
// dialer or a client library does) and returns that child's Err when it
// ends: under a per-attempt timeout of 30ms the call's error must be (wrap)
// context.DeadlineExceeded, as it is with net/http and a plain
// context.WithTimeout on the request.
func TestBaseDerivedChildErrorOnPerAttemptTimeout(t *testing.T) {
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	// Reference: the same base with the deadline on the request itself.
	ref, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ref, http.MethodGet, "http://memory.invalid/", nil)
	if _, err := base.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reference: %v", err)
	}
	for _, p := range []pol{
		{name: "perAttempt", attempts: 1, perAttempt: 30 * time.Millisecond},
		{name: "overall", attempts: 1, overall: 30 * time.Millisecond},
	} {
		t.Run(p.name, func(t *testing.T) {
			rt := rhttp.NewTransport(p.exec(t), key, base)
			res, err := get(t, rt, context.Background())
			if res != nil {
				res.Body.Close()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call error %v: does not wrap context.DeadlineExceeded", err)
			}
		})
	}
}
