package tryctx_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// TestEndsRaceStable adapts TestSimultaneousCancels / TestCauseRace: the
// caller's cancellation (with a cause), the body's Close and (for some
// shapes) a per-attempt deadline all race, while readers poll Err and Cause
// and an armer calls Done / derives at a random moment. Every reader's
// answers never change once non-nil, all readers agree, the answers pair
// up (Err Canceled with the caller's cause or Canceled; DeadlineExceeded
// with ErrAttemptTimeout), and the derived contexts end with the same ones.
func TestEndsRaceStable(t *testing.T) {
	iters := 50
	if testing.Short() {
		iters = 30
	}
	for _, p := range append(shapes(), pol{name: "perAttemptTight", attempts: 1, perAttempt: 2 * time.Millisecond}) {
		t.Run(p.name, func(t *testing.T) {
			e := p.exec(t)
			for i := 0; i < iters && !t.Failed(); i++ {
				base := newCapture()
				rt := rhttp.NewTransport(e, key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				ctx := <-base.ctxs
				cause := errors.New("caller")
				var wg sync.WaitGroup
				type obs struct{ err, cause error }
				results := make([][]obs, 3)
				stop := make(chan struct{})
				for r := 0; r < 3; r++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							var o obs
							if r%2 == 0 {
								o.err = ctx.Err()
								o.cause = context.Cause(ctx)
							} else {
								o.cause = context.Cause(ctx)
								o.err = ctx.Err()
							}
							if o.err != nil || o.cause != nil {
								results[r] = append(results[r], o)
								if len(results[r]) > 50 {
									return
								}
							}
							runtime.Gosched()
						}
					}()
				}
				var derived context.Context
				var dcancel context.CancelFunc
				wg.Add(3)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					derived, dcancel = context.WithCancel(ctx)
				}()
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					cancel(cause)
				}()
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					res.Body.Close()
				}()
				time.Sleep(5 * time.Millisecond)
				for !isDone(ctx) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(time.Millisecond)
				close(stop)
				wg.Wait()
				final := obs{ctx.Err(), context.Cause(ctx)}
				ok := final == obs{context.Canceled, cause} || final == obs{context.Canceled, context.Canceled} ||
					final == obs{context.DeadlineExceeded, errAT}
				if !ok {
					t.Fatalf("iteration %d: final pair %v / %v", i, final.err, final.cause)
				}
				for r, rs := range results {
					for j, o := range rs {
						if o != final {
							// A reader reading Err then Cause may see Err nil
							// and Cause set in between, never a different end.
							if (o.err == nil || o.cause == nil) && j == 0 {
								continue
							}
							t.Fatalf("iteration %d reader %d obs %d: %v / %v, final %v / %v", i, r, j, o.err, o.cause, final.err, final.cause)
						}
					}
				}
				eventually(t, 2*time.Second, "derived never ended", func() bool { return isDone(derived) })
				if (obs{derived.Err(), context.Cause(derived)}) != final {
					t.Fatalf("iteration %d: derived %v / %v, final %v / %v", i, derived.Err(), context.Cause(derived), final.err, final.cause)
				}
				dcancel()
			}
		})
	}
}

// TestErrImpliesDoneConcurrentReaders: several goroutines spin on Err and,
// each time it is non-nil, check Done is closed, while the caller cancels
// (a reader must never see a gap between an Err that is set and a Done
// that is not).
func TestErrImpliesDoneConcurrentReaders(t *testing.T) {
	for _, p := range shapes() {
		t.Run(p.name, func(t *testing.T) {
			e := p.exec(t)
			for i := 0; i < 100; i++ {
				base := newCapture()
				base.during = func(ctx context.Context) { ctx.Done() }
				rt := rhttp.NewTransport(e, key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				ctx := <-base.ctxs
				var wg sync.WaitGroup
				bad := make(chan string, 8)
				start := make(chan struct{})
				for r := 0; r < 4; r++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						for k := 0; k < 100000; k++ {
							if e := ctx.Err(); e != nil {
								if !isDone(ctx) {
									bad <- fmt.Sprintf("Err %v, Done open", e)
								}
								return
							}
						}
					}()
				}
				close(start)
				cancel(errors.New("c"))
				wg.Wait()
				res.Body.Close()
				select {
				case m := <-bad:
					t.Fatalf("iteration %d: %s", i, m)
				default:
				}
			}
		})
	}
}
