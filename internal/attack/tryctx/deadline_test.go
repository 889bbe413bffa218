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

// TestDeadlineIsEarliest: the try's Deadline is the earliest of the caller's,
// the per-attempt and the overall deadlines; it is the same when asked during
// the try, after RoundTrip returned, after arming, and after the end.
func TestDeadlineIsEarliest(t *testing.T) {
	const s = time.Second
	cases := []struct {
		name                       string
		callerDL, perAttempt, over time.Duration
		want                       time.Duration // 0: no deadline
	}{
		{"none", 0, 0, 0, 0},
		{"callerOnly", 30 * s, 0, 0, 30 * s},
		{"perAttemptOnly", 0, 20 * s, 0, 20 * s},
		{"overallOnly", 0, 0, 40 * s, 40 * s},
		{"callerFirst", 10 * s, 20 * s, 30 * s, 10 * s},
		{"perAttemptFirst", 30 * s, 10 * s, 20 * s, 10 * s},
		{"overallFirst", 30 * s, 20 * s, 10 * s, 10 * s},
	}
	for _, c := range cases {
		for _, hedged := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/hedged=%v", c.name, hedged), func(t *testing.T) {
				p := pol{attempts: 2, perAttempt: c.perAttempt, overall: c.over}
				if hedged {
					p.hedge = time.Hour
				}
				var during time.Time
				var duringOK bool
				base := newCapture()
				base.during = func(ctx context.Context) { during, duringOK = ctx.Deadline() }
				rt := rhttp.NewTransport(p.exec(t), key, base)
				caller := context.Background()
				start := time.Now()
				if c.callerDL > 0 {
					var cancel context.CancelFunc
					caller, cancel = context.WithTimeout(caller, c.callerDL)
					defer cancel()
				}
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				ctx := <-base.ctxs
				check := func(when string) {
					dl, ok := ctx.Deadline()
					if ok != (c.want > 0) {
						t.Fatalf("%s: Deadline ok=%v want %v", when, ok, c.want > 0)
					}
					if !ok {
						return
					}
					exp := start.Add(c.want)
					if d := dl.Sub(exp); d < -time.Second || d > time.Second {
						t.Fatalf("%s: Deadline %v, want ~%v (off by %v)", when, dl, exp, d)
					}
					if !dl.Equal(during) {
						t.Fatalf("%s: Deadline %v changed from the one during the try %v", when, dl, during)
					}
				}
				if duringOK != (c.want > 0) {
					t.Fatalf("during: ok=%v", duringOK)
				}
				check("after return")
				ctx.Done()
				check("after arming")
				res.Body.Close()
				check("after close")
				c2, cc := context.WithCancel(ctx)
				defer cc()
				if dl, ok := c2.Deadline(); ok != duringOK || !dl.Equal(during) {
					t.Fatalf("derived Deadline %v %v", dl, ok)
				}
			})
		}
	}
}

// TestDeadlineEndsUnwatchedContext: the try answered at once; its body stays
// open and nobody ever waits on the context. Once its earliest deadline has
// passed, Err alone (never Done) says DeadlineExceeded, with the cause of the
// deadline that passed: ErrAttemptTimeout for the per-attempt timeout, the
// caller's cause for the caller's WithDeadlineCause, something else non-nil
// for the overall timeout.
func TestDeadlineEndsUnwatchedContext(t *testing.T) {
	callerCause := errors.New("caller deadline cause")
	const short, long = 30 * time.Millisecond, time.Hour
	cases := []struct {
		name                       string
		callerDL, perAttempt, over time.Duration
		wantCause                  error // nil: any non-nil, not errAT
	}{
		{"caller", short, long, 2 * long, callerCause},
		{"perAttempt", long, short, 2 * long, errAT},
		{"overall", long, long, short, nil},
		{"callerNoPolicy", short, 0, 0, callerCause},
	}
	for _, c := range cases {
		for _, hedged := range []bool{false, true} {
			for _, obs := range []string{"Err", "Cause", "Done", "Derive"} {
				t.Run(fmt.Sprintf("%s/hedged=%v/%s", c.name, hedged, obs), func(t *testing.T) {
					p := pol{attempts: 2, perAttempt: c.perAttempt, overall: c.over}
					if hedged {
						p.hedge = time.Hour
					}
					base := newCapture()
					rt := rhttp.NewTransport(p.exec(t), key, base)
					caller, cancel := context.WithDeadlineCause(context.Background(), time.Now().Add(c.callerDL), callerCause)
					defer cancel()
					res, err := get(t, rt, caller)
					if err != nil {
						t.Fatal(err)
					}
					defer res.Body.Close()
					ctx := <-base.ctxs
					dl, _ := ctx.Deadline()
					time.Sleep(time.Until(dl) + 30*time.Millisecond)
					var got snap
					switch obs {
					case "Err": // polled, never waited on (the deadline's timer may run late under load)
						for st := time.Now(); ctx.Err() == nil && time.Since(st) < 2*time.Second; {
							time.Sleep(time.Millisecond)
						}
						got.err = ctx.Err()
						got.cause = context.Cause(ctx)
					case "Cause":
						for st := time.Now(); context.Cause(ctx) == nil && time.Since(st) < 2*time.Second; {
							time.Sleep(time.Millisecond)
						}
						got.cause = context.Cause(ctx)
						got.err = ctx.Err()
					case "Done":
						got.done = waitDone(ctx, time.Second)
						got.err, got.cause = ctx.Err(), context.Cause(ctx)
					case "Derive":
						d, dc := context.WithCancel(ctx)
						defer dc()
						got.done = waitDone(d, 2*time.Second)
						got.err, got.cause = d.Err(), context.Cause(d)
					}
					if got.err != context.DeadlineExceeded {
						t.Fatalf("Err %v, want DeadlineExceeded (%+v)", got.err, got)
					}
					if c.wantCause != nil && got.cause != c.wantCause {
						t.Fatalf("Cause %v, want %v", got.cause, c.wantCause)
					}
					if c.wantCause == nil && (got.cause == nil || errors.Is(got.cause, errAT)) {
						t.Fatalf("Cause %v", got.cause)
					}
					if !isDone(ctx) {
						t.Fatal("Err non-nil, Done open")
					}
					// The end stays: closing the body now changes nothing.
					before := look(ctx)
					res.Body.Close()
					if after := look(ctx); after != before {
						t.Fatalf("close after the deadline changed %+v -> %+v", before, after)
					}
				})
			}
		}
	}
}

// TestErrPollingBaseSeesDeadline: a base that never waits on Done but polls
// Err (as a CPU-bound or cache base might) during RoundTrip sees the
// per-attempt / overall / caller deadline within a little of it.
func TestErrPollingBaseSeesDeadline(t *testing.T) {
	const short = 40 * time.Millisecond
	for _, c := range []struct {
		name string
		p    pol
		dl   time.Duration
	}{
		{"perAttempt", pol{attempts: 1, perAttempt: short}, 0},
		{"overall", pol{attempts: 1, overall: short}, 0},
		{"caller", pol{attempts: 1}, short},
		{"hedgedPerAttempt", pol{attempts: 1, perAttempt: short, hedge: time.Hour}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var saw error
			var took time.Duration
			base := rtFunc(func(r *http.Request) (*http.Response, error) {
				ctx := r.Context()
				st := time.Now()
				for ctx.Err() == nil && time.Since(st) < 2*time.Second {
					time.Sleep(time.Millisecond)
				}
				saw, took = ctx.Err(), time.Since(st)
				return nil, saw
			})
			rt := rhttp.NewTransport(c.p.exec(t), key, base)
			caller := context.Background()
			if c.dl > 0 {
				var cancel context.CancelFunc
				caller, cancel = context.WithTimeout(caller, c.dl)
				defer cancel()
			}
			res, err := get(t, rt, caller)
			if res != nil {
				res.Body.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			if saw != context.DeadlineExceeded || took > short+500*time.Millisecond {
				t.Fatalf("base saw %v after %v", saw, took)
			}
		})
	}
}
