package tryctx_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// hedgeBase: the primary (HedgeIndex 0) hangs until its context ends, in the
// way chosen (Done, or polling Err only); the hedge answers at once with a
// body bound to its context.
type hedgeBase struct {
	errOnly bool
	mu      sync.Mutex
	loser   context.Context
	winner  context.Context
	loserAt chan time.Time
}

func (h *hedgeBase) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	info, _ := endpoint.AttemptFromContext(ctx)
	if info.HedgeIndex == 0 {
		h.mu.Lock()
		h.loser = ctx
		h.mu.Unlock()
		st := time.Now()
		if h.errOnly {
			for ctx.Err() == nil && time.Since(st) < 3*time.Second {
				time.Sleep(500 * time.Microsecond)
			}
		} else {
			select {
			case <-ctx.Done():
			case <-time.After(3 * time.Second):
			}
		}
		h.loserAt <- time.Now()
		return nil, ctx.Err()
	}
	h.mu.Lock()
	h.winner = ctx
	h.mu.Unlock()
	return resp(r, 200, &errCheckBody{ctx: ctx, chunks: 3, gap: 5 * time.Millisecond}), nil
}

// TestHedgeLoserEndsPromptly: the losing primary's context ends (Done, or Err
// for a base that only polls it) promptly once the hedge won, with Err
// Canceled and a non-nil Cause; the winner's context stays live while its
// body is read after the call returned, and ends with the body's Close.
func TestHedgeLoserEndsPromptly(t *testing.T) {
	for _, errOnly := range []bool{false, true} {
		for _, p := range []pol{
			{name: "hedged", attempts: 1, hedge: 10 * time.Millisecond},
			{name: "hedgedAll", attempts: 2, perAttempt: time.Hour, overall: 2 * time.Hour, hedge: 10 * time.Millisecond},
		} {
			name := p.name + "/done"
			if errOnly {
				name = p.name + "/errOnly"
			}
			t.Run(name, func(t *testing.T) {
				h := &hedgeBase{errOnly: errOnly, loserAt: make(chan time.Time, 1)}
				rt := rhttp.NewTransport(p.exec(t), key, h)
				caller, cancel := context.WithCancel(context.Background())
				defer cancel()
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				returned := time.Now()
				defer res.Body.Close()
				var at time.Time
				select {
				case at = <-h.loserAt:
				case <-time.After(2 * time.Second):
					t.Fatal("loser never saw its context end")
				}
				if d := at.Sub(returned); d > 200*time.Millisecond {
					t.Errorf("loser saw its end %v after the call returned", d)
				}
				h.mu.Lock()
				loser, winner := h.loser, h.winner
				h.mu.Unlock()
				if loser.Err() != context.Canceled || context.Cause(loser) == nil || !isDone(loser) {
					t.Errorf("loser: %+v", look(loser))
				}
				time.Sleep(20 * time.Millisecond)
				if s := look(winner); s != (snap{}) {
					t.Fatalf("winner ended before its body was closed: %+v", s)
				}
				b, err := io.ReadAll(res.Body)
				if err != nil || len(b) != 15 {
					t.Fatalf("winner body %q %v", b, err)
				}
				res.Body.Close()
				if s := look(winner); s != (snap{context.Canceled, context.Canceled, true}) {
					t.Fatalf("winner after close: %+v", s)
				}
			})
		}
	}
}

// TestHedgeLoserFromLateWatcher: the loser's context is handed, unwatched, to
// a goroutine that starts waiting on it only after the winner returned. It
// must find it ended (the loser's end is not lost because nobody waited).
func TestHedgeLoserFromLateWatcher(t *testing.T) {
	p := pol{name: "hedged", attempts: 1, hedge: 5 * time.Millisecond}
	var loser atomic.Pointer[context.Context]
	release := make(chan struct{})
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		ctx := r.Context()
		info, _ := endpoint.AttemptFromContext(ctx)
		if info.HedgeIndex == 0 {
			loser.Store(&ctx)
			<-release // a base that ignores its context entirely
			return nil, context.Canceled
		}
		return resp(r, 200, nil), nil
	})
	rt := rhttp.NewTransport(p.exec(t), key, base)
	errc := make(chan error, 1)
	go func() {
		res, err := get(t, rt, context.Background())
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		errc <- err
	}()
	// The call awaits every try: the loser's base must be released for it to
	// return; meanwhile its context must already be over.
	eventually(t, 2*time.Second, "no loser", func() bool { return loser.Load() != nil })
	ctx := *loser.Load()
	if !waitDone(ctx, 2*time.Second) {
		t.Fatal("loser's context not ended while the winner is in (base ignores ctx)")
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("loser Err %v", ctx.Err())
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestHedgeRaceKeepsCallerCause: the caller cancels with a cause while the
// primary and its hedge both wait on their contexts. With the standard
// library every descendant of the caller's context reports that cause: both
// tries must, whichever the race cancels first (the race's own cancel of
// the other tries must not overwrite the caller's cause).
func TestHedgeRaceKeepsCallerCause(t *testing.T) {
	for _, p := range []pol{
		{name: "hedged", attempts: 1, hedge: 2 * time.Millisecond},
		{name: "hedgedPerAttempt", attempts: 1, perAttempt: time.Hour, hedge: 2 * time.Millisecond},
		{name: "hedgedAll", attempts: 2, perAttempt: time.Hour, overall: 2 * time.Hour, hedge: 2 * time.Millisecond},
	} {
		for _, errOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/errOnly=%v", p.name, errOnly), func(t *testing.T) {
				e := p.exec(t)
				bad := 0
				for i := 0; i < 100; i++ {
					ch := make(chan context.Context, 2)
					both := make(chan struct{}, 2)
					base := rtFunc(func(r *http.Request) (*http.Response, error) {
						ctx := r.Context()
						ch <- ctx
						both <- struct{}{}
						if errOnly {
							for ctx.Err() == nil {
								time.Sleep(100 * time.Microsecond)
							}
						} else {
							<-ctx.Done()
						}
						return nil, ctx.Err()
					})
					rt := rhttp.NewTransport(e, key, base)
					caller, cancel := context.WithCancelCause(context.Background())
					cause := fmt.Errorf("caller cause %d", i)
					errc := make(chan error, 1)
					go func() {
						res, err := get(t, rt, caller)
						if res != nil {
							res.Body.Close()
						}
						errc <- err
					}()
					<-both
					<-both
					cancel(cause)
					<-errc
					close(ch)
					for c := range ch {
						if !waitDone(c, time.Second) {
							t.Fatal("try never ended")
						}
						if got := context.Cause(c); got != cause {
							bad++
							if bad == 1 {
								info, _ := endpoint.AttemptFromContext(c)
								t.Errorf("iteration %d hedge %d: Cause %v, Err %v; want the caller's cause", i, info.HedgeIndex, got, c.Err())
							}
						}
					}
				}
				if bad > 0 {
					t.Errorf("%d tries of 200 lost the caller's cause", bad)
				}
			})
		}
	}
}
