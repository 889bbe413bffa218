package adopt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
)

// (2) The final 503 body, dripped one byte per millisecond, is read whole after
// the call returns, under each policy shape (timeouts generous).
func TestFinalBodyDripReadWholeAfterReturn(t *testing.T) {
	for _, shape := range shapeNames {
		for _, attempts := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/%d", shape, attempts), func(t *testing.T) {
				t.Parallel()
				want := map[int32][]byte{}
				var mu sync.Mutex
				b := &base{mk: func(n int32, req *http.Request) *http.Response {
					data := payload(n, 150)
					data = append(data, []byte(fmt.Sprintf("|try=%d|", n))...)
					mu.Lock()
					want[n] = data
					mu.Unlock()
					tb := newBody(req.Context(), data)
					tb.drip = 500 * time.Microsecond
					r := resp503(req, tb)
					r.Header.Set("X-Try", fmt.Sprint(n))
					return r
				}}
				r := rt(newExec(attempts, shapes[shape]...), b)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				resp := get(t, ctx, r)
				defer resp.Body.Close()
				time.Sleep(20 * time.Millisecond) // returning must not cut the body
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("read after return: %v (got %d bytes)", err, len(got))
				}
				var n int32
				fmt.Sscan(resp.Header.Get("X-Try"), &n)
				mu.Lock()
				w := want[n]
				mu.Unlock()
				if !bytes.Equal(got, w) {
					t.Fatalf("try %d body: got %d bytes %.40q..., want %d bytes", n, len(got), got, len(w))
				}
			})
		}
	}
}

// (2b) Slow reader: the caller reads the final body a byte at a time with pauses.
func TestFinalBodySlowReader(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			data := payload(7, 64<<10)
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				return resp503(req, newBody(req.Context(), data))
			}}
			r := rt(newExec(2, shapes[shape]...), b)
			resp := get(t, context.Background(), r)
			defer resp.Body.Close()
			var got []byte
			buf := make([]byte, 4096)
			for i := 0; ; i++ {
				if i%4 == 0 {
					time.Sleep(time.Millisecond)
				}
				n, err := resp.Body.Read(buf)
				got = append(got, buf[:n]...)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("read: %v after %d bytes", err, len(got))
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want %d", len(got), len(data))
			}
		})
	}
}

// (3) Deadlines still bound a stalled final body.
func TestStalledFinalBodyBoundedByDeadlines(t *testing.T) {
	cases := map[string]struct {
		opts  []policy.Option
		bound time.Duration
	}{
		"perAttempt":       {[]policy.Option{policy.TimeoutPerAttempt(80 * time.Millisecond)}, 80 * time.Millisecond},
		"overall":          {[]policy.Option{policy.OverallTimeout(120 * time.Millisecond)}, 120 * time.Millisecond},
		"perAttemptHedged": {[]policy.Option{policy.TimeoutPerAttempt(80 * time.Millisecond), shapes["hedged"][0]}, 80 * time.Millisecond},
		"overallHedged":    {[]policy.Option{policy.OverallTimeout(120 * time.Millisecond), shapes["hedged"][0]}, 120 * time.Millisecond},
	}
	for name, c := range cases {
		for _, attempts := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d", name, attempts), func(t *testing.T) {
				t.Parallel()
				b := &base{mk: func(n int32, req *http.Request) *http.Response {
					tb := newBody(req.Context(), payload(n, 1024))
					tb.stallAt = 10
					return resp503(req, tb)
				}}
				r := rt(newExec(attempts, c.opts...), b)
				start := time.Now()
				resp := get(t, context.Background(), r)
				defer resp.Body.Close()
				done := make(chan error, 1)
				go func() { _, err := io.ReadAll(resp.Body); done <- err }()
				select {
				case err := <-done:
					el := time.Since(start)
					if err == nil {
						t.Fatalf("stalled body read ended without error")
					}
					// overall: from call start; per-attempt: from the last try's start.
					limit := c.bound*time.Duration(attempts) + 300*time.Millisecond
					if el > limit {
						t.Fatalf("read ended after %v, limit %v", el, limit)
					}
				case <-time.After(3 * time.Second):
					t.Fatalf("stalled final body not cut by the deadline")
				}
			})
		}
	}
}

// (4) Dropped responses: each failed body's Read blocks until its request
// context ends (Close does not wake it). The call must not be held, the
// dropped tries' contexts must end promptly, nothing leaks.
func TestDroppedBlockingBodiesReleasePromptly(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			g0 := runtime.NumGoroutine()
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				tb := newBody(req.Context(), payload(n, 100))
				tb.stallAt = 5
				tb.closeWakes = false
				return resp503(req, tb)
			}}
			r := rt(newExec(3, shapes[shape]...), b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for i := 0; i < 20; i++ {
				b.reset()
				start := time.Now()
				resp := get(t, ctx, r)
				if el := time.Since(start); el > 300*time.Millisecond {
					t.Errorf("call %d held %v by dropped blocking bodies", i, el)
				}
				bodies, ctxs := b.snapshot()
				// every try but the returned one has been dropped
				if alive := waitAlive(ctxs, 1, 200*time.Millisecond); alive > 1 {
					t.Errorf("call %d: %d try contexts alive with the final body open (want only its own)", i, alive)
				}
				// the final body's read: 5 bytes, then blocks until Close ends it
				buf := make([]byte, 5)
				if _, err := io.ReadFull(resp.Body, buf); err != nil {
					t.Fatalf("final body first bytes: %v", err)
				}
				rd := make(chan error, 1)
				go func() { _, err := resp.Body.Read(make([]byte, 10)); rd <- err }()
				time.Sleep(2 * time.Millisecond)
				_ = resp.Body.Close()
				select {
				case <-rd:
				case <-time.After(time.Second):
					t.Fatalf("a Read blocked on the final body survives its Close")
				}
				if alive := waitDone(ctxs, 200*time.Millisecond); alive > 0 {
					t.Errorf("call %d: %d try contexts alive after Close", i, alive)
				}
				for j, tb := range bodies {
					if tb.closes.Load() == 0 {
						// allow a short grace for asynchronous closes
						time.Sleep(20 * time.Millisecond)
						if tb.closes.Load() == 0 {
							t.Errorf("call %d: base body %d never closed", i, j)
						}
					}
				}
			}
			if g := waitGoroutines(t, g0, 3, 2*time.Second); g > g0+3 {
				t.Errorf("goroutines %d, baseline %d", g, g0)
			}
		})
	}
}

// (5) Hedged GETs whose tries all fail: one whole failed body returned,
// others closed, all contexts end with Close.
func TestHedgedBothFail(t *testing.T) {
	for _, attempts := range []int{1, 2} {
		for _, stallLoser := range []bool{false, true} {
			t.Run(fmt.Sprintf("attempts=%d/stall=%v", attempts, stallLoser), func(t *testing.T) {
				g0 := runtime.NumGoroutine()
				b := &base{mk: func(n int32, req *http.Request) *http.Response {
					if n%2 == 1 { // primary: slow to answer
						select {
						case <-time.After(15 * time.Millisecond):
						case <-req.Context().Done():
						}
					}
					data := []byte(fmt.Sprintf("body-of-try-%d-", n))
					data = append(data, payload(n, 2000)...)
					tb := newBody(req.Context(), data)
					if stallLoser && n%2 == 1 {
						tb.stallAt = 3
						tb.closeWakes = false
					}
					r := resp503(req, tb)
					r.Header.Set("X-Try", fmt.Sprint(n))
					return r
				}}
				e := newExec(attempts, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 2 * time.Millisecond, MaxHedges: 1}))
				r := rt(e, b)
				for i := 0; i < 10; i++ {
					b.reset()
					start := time.Now()
					resp := get(t, context.Background(), r)
					if el := time.Since(start); el > 500*time.Millisecond {
						t.Errorf("hedged call took %v", el)
					}
					var try int
					fmt.Sscan(resp.Header.Get("X-Try"), &try)
					if stallLoser && try%2 == 1 {
						// the stalled primary came back: its blocked Read must end with Close
						rd := make(chan struct{})
						go func() { _, _ = io.ReadAll(resp.Body); close(rd) }()
						time.Sleep(2 * time.Millisecond)
						_ = resp.Body.Close()
						select {
						case <-rd:
						case <-time.After(time.Second):
							t.Fatalf("Close did not end a blocked read of the final hedged body")
						}
						bodies, ctxs := b.snapshot()
						if alive := waitDone(ctxs, 300*time.Millisecond); alive > 0 {
							t.Errorf("%d hedged try contexts alive after Close", alive)
						}
						_ = bodies
						continue
					}
					got, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Fatalf("final body: %v (status %d, try %s)", err, resp.StatusCode, resp.Header.Get("X-Try"))
					}
					wantPrefix := fmt.Sprintf("body-of-try-%s-", resp.Header.Get("X-Try"))
					if !bytes.HasPrefix(got, []byte(wantPrefix)) || len(got) != len(wantPrefix)+2000 {
						t.Fatalf("final body mixed or truncated: %d bytes, %.30q, want prefix %q", len(got), got, wantPrefix)
					}
					_ = resp.Body.Close()
					bodies, ctxs := b.snapshot()
					if alive := waitDone(ctxs, 300*time.Millisecond); alive > 0 {
						t.Errorf("%d hedged try contexts alive after Close", alive)
					}
					time.Sleep(5 * time.Millisecond)
					for j, tb := range bodies {
						if tb.closes.Load() == 0 {
							t.Errorf("base body %d of %d never closed", j, len(bodies))
						}
					}
				}
				if g := waitGoroutines(t, g0, 3, 2*time.Second); g > g0+3 {
					t.Errorf("goroutines %d, baseline %d", g, g0)
				}
			})
		}
	}
}

// (6) A fallback replacing a failed call's response: the replaced response's
// body (and every base body) is closed, and the try contexts end.
func TestFallbackClosesReplacedResponse(t *testing.T) { fallbackReplaced(t, false) }

// (6c) WithFallback on an rhttp key: the endpoint's response is an
// *http.Response, so a fallback returning one should stand in for the call.
func TestFallbackHTTPResponseAccepted(t *testing.T) {
	fallbackReplaced(t, true)
}

func fallbackReplaced(t *testing.T, requireAccepted bool) {
	for _, shape := range shapeNames {
		for _, attempts := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d", shape, attempts), func(t *testing.T) {
				g0 := runtime.NumGoroutine()
				b := &base{mk: func(n int32, req *http.Request) *http.Response {
					tb := newBody(req.Context(), payload(n, 3000))
					return resp503(req, tb)
				}}
				var fbCalls, fbCloses atomic.Int32
				opts := append([]policy.Option{
					policy.MaxAttempts(attempts),
					policy.Backoff(time.Millisecond, 2*time.Millisecond, 2),
					policy.WithBudget(policy.BudgetUnlimited),
				}, shapes[shape]...)
				e := recourse.NewExecutor(
					recourse.WithPolicy(key, opts...),
					recourse.WithFallback(key, func(ctx context.Context, err error) (any, error) {
						fbCalls.Add(1)
						return &http.Response{StatusCode: 200, Header: http.Header{},
							Body: countCloser{bytes.NewReader([]byte("fallback")), &fbCloses}, ProtoMajor: 1, ProtoMinor: 1}, nil
					}))
				r := rt(e, b)
				rtErrs := 0
				var lastErr error
				for i := 0; i < 20; i++ {
					b.reset()
					req, _ := http.NewRequest(http.MethodGet, "http://adopt.test/x", nil)
					resp, rtErr := r.RoundTrip(req)
					if rtErr != nil {
						rtErrs++
						lastErr = rtErr
					} else {
						got, err := io.ReadAll(resp.Body)
						_ = resp.Body.Close()
						if resp.StatusCode != 200 || string(got) != "fallback" || err != nil {
							t.Fatalf("got %d %q %v, want the fallback's 200", resp.StatusCode, got, err)
						}
					}
					bodies, ctxs := b.snapshot()
					time.Sleep(2 * time.Millisecond)
					for j, tb := range bodies {
						if c := tb.closes.Load(); c == 0 {
							t.Errorf("call %d: base body %d of %d (replaced by the fallback) never closed", i, j, len(bodies))
						}
					}
					if alive := waitDone(ctxs, 200*time.Millisecond); alive > 0 {
						t.Errorf("call %d: %d try contexts alive after the fallback replaced the response", i, alive)
					}
				}
				if rtErrs > 0 && requireAccepted {
					t.Errorf("%d of 20 calls: RoundTrip failed when the fallback returned an *http.Response: %v", rtErrs, lastErr)
				}
				if requireAccepted && rtErrs > 0 && fbCloses.Load() < int32(rtErrs) {
					t.Errorf("fallback's *http.Response rejected %d times but its body closed only %d times", rtErrs, fbCloses.Load())
				}
				if fbCalls.Load() != 20 {
					t.Errorf("fallback ran %d times, want 20", fbCalls.Load())
				}
				if g := waitGoroutines(t, g0, 3, 2*time.Second); g > g0+3 {
					t.Errorf("goroutines %d, baseline %d", g, g0)
				}
			})
		}
	}
}

// (6b) A fallback that declines (returns its error): the failed 503 comes back
// whole and readable, its body not closed behind the caller's back.
func TestFallbackDeclinesKeepsBodyReadable(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			data := payload(3, 5000)
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				return resp503(req, newBody(req.Context(), data))
			}}
			opts := append([]policy.Option{policy.MaxAttempts(2), policy.Backoff(time.Millisecond, 2*time.Millisecond, 2),
				policy.WithBudget(policy.BudgetUnlimited)}, shapes[shape]...)
			e := recourse.NewExecutor(recourse.WithPolicy(key, opts...),
				recourse.WithFallback(key, func(ctx context.Context, err error) (any, error) {
					return &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(nil))}, err
				}))
			r := rt(e, b)
			req, _ := http.NewRequest(http.MethodGet, "http://adopt.test/x", nil)
			resp, err := r.RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if resp.StatusCode != 503 || err != nil || !bytes.Equal(got, data) {
				t.Fatalf("got %d, %d bytes, %v; want the whole 503", resp.StatusCode, len(got), err)
			}
		})
	}
}

// (7) Concurrent Close of the final body with the caller's cancel and a Read.
func TestConcurrentCloseCancelRead(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			g0 := runtime.NumGoroutine()
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				tb := newBody(req.Context(), payload(n, 2000))
				if n%3 == 0 {
					tb.stallAt = 100
				}
				return resp503(req, tb)
			}}
			r := rt(newExec(2, shapes[shape]...), b)
			for i := 0; i < 100; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				resp := get(t, ctx, r)
				var wg sync.WaitGroup
				wg.Add(4)
				go func() { defer wg.Done(); _ = resp.Body.Close() }()
				go func() { defer wg.Done(); cancel() }()
				go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, resp.Body) }()
				go func() { defer wg.Done(); _ = resp.Body.Close() }()
				ch := make(chan struct{})
				go func() { wg.Wait(); close(ch) }()
				select {
				case <-ch:
				case <-time.After(2 * time.Second):
					t.Fatalf("iteration %d: Close/cancel/Read deadlocked", i)
				}
				if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
					t.Fatalf("Read after Close succeeded")
				}
			}
			b.reset()
			if g := waitGoroutines(t, g0, 3, 2*time.Second); g > g0+3 {
				t.Errorf("goroutines %d, baseline %d", g, g0)
			}
		})
	}
}

// (7b) The caller's cancel while the final body is open ends a blocked Read at once.
func TestCallerCancelEndsBlockedFinalRead(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				tb := newBody(req.Context(), payload(n, 200))
				tb.stallAt = 10
				tb.closeWakes = false
				return resp503(req, tb)
			}}
			r := rt(newExec(2, shapes[shape]...), b)
			ctx, cancel := context.WithCancel(context.Background())
			resp := get(t, ctx, r)
			defer resp.Body.Close()
			rd := make(chan error, 1)
			go func() { _, err := io.ReadAll(resp.Body); rd <- err }()
			time.Sleep(5 * time.Millisecond)
			cancel()
			select {
			case err := <-rd:
				if !errors.Is(err, context.Canceled) {
					t.Logf("read error after cancel: %v", err)
				}
			case <-time.After(time.Second):
				t.Fatalf("caller's cancel did not end a blocked read of the final body")
			}
		})
	}
}

type countCloser struct {
	io.Reader
	n *atomic.Int32
}

func (c countCloser) Close() error { c.n.Add(1); return nil }
