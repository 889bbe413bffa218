package adopt_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// runMany runs n calls on workers goroutines under ctx and hands each final response to end.
func runMany(t *testing.T, ctx context.Context, r http.RoundTripper, n, workers int, end func(*http.Response)) {
	t.Helper()
	var wg sync.WaitGroup
	ch := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ch {
				resp := get(t, ctx, r)
				if resp.StatusCode != 503 {
					t.Errorf("status %d", resp.StatusCode)
				}
				end(resp)
			}
		}()
	}
	for i := 0; i < n; i++ {
		ch <- struct{}{}
	}
	close(ch)
	wg.Wait()
}

var endModes = map[string]func(*http.Response){
	"closed":       func(r *http.Response) { _, _ = io.ReadAll(r.Body); _ = r.Body.Close() },
	"closedUnread": func(r *http.Response) { _ = r.Body.Close() },
	"halfReadClosed": func(r *http.Response) {
		_, _ = io.ReadFull(r.Body, make([]byte, 100))
		_ = r.Body.Close()
	},
}

// 5000 calls ending in final 503s, under a long-lived cancellable context,
// bodies closed (read, unread, half-read): goroutines and heap return to baseline
// and every try's context has ended.
func TestLeak5000ClosedBodies(t *testing.T) {
	for _, shape := range shapeNames {
		for _, mode := range []string{"closed", "closedUnread", "halfReadClosed"} {
			t.Run(shape+"/"+mode, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				b := &base{mk: func(n int32, req *http.Request) *http.Response {
					return resp503(req, newBody(req.Context(), payload(n, 4096)))
				}}
				r := rt(newExec(2, shapes[shape]...), b)
				// warm up
				runMany(t, ctx, r, 50, 10, endModes[mode])
				b.reset()
				g0 := runtime.NumGoroutine()
				h0 := heapInuse()
				runMany(t, ctx, r, 5000, 50, endModes[mode])
				if g := waitGoroutines(t, g0, 3, 2*time.Second); g > g0+3 {
					t.Errorf("goroutines %d, baseline %d", g, g0)
				}
				_, ctxs := b.snapshot()
				if alive := waitDone(ctxs, time.Second); alive > 0 {
					t.Errorf("%d of %d try contexts still alive after their bodies were closed", alive, len(ctxs))
				}
				b.reset()
				h1 := heapInuse()
				if h1 > h0+4<<20 {
					t.Errorf("heap in use grew %d -> %d (%d KiB) over 5000 closed calls", h0, h1, (int64(h1)-int64(h0))>>10)
				}
			})
		}
	}
}

// Bodies read to EOF but never closed (net/http releases such a body's
// connection at EOF): under a long-lived caller context, memory held must
// not grow with the number of calls.
//
// Was a defect: with a per-attempt or overall timeout, ~0.8 KiB per call
// stayed held until the policy's timeout fired. net/http releases a body
// read to EOF (and Client.Timeout's timer) at EOF; rhttp now does too.
func TestLeak5000ReadToEOFNeverClosed(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				return resp503(req, newBody(req.Context(), payload(n, 4096)))
			}}
			r := rt(newExec(2, shapes[shape]...), b)
			end := func(r *http.Response) { _, _ = io.ReadAll(r.Body) }
			runMany(t, ctx, r, 50, 10, end)
			b.reset()
			g0 := runtime.NumGoroutine()
			h0 := heapInuse()
			runMany(t, ctx, r, 5000, 50, end)
			b.reset()
			g := waitGoroutines(t, g0, 3, time.Second)
			h1 := heapInuse()
			cancel()
			h2 := heapInuse()
			t.Logf("goroutines %d->%d heap %dKiB -> %dKiB -> (after caller cancel) %dKiB", g0, g, h0>>10, h1>>10, h2>>10)
			if g > g0+3 {
				t.Errorf("goroutines %d, baseline %d, with bodies read to EOF", g, g0)
			}
			if h1 > h0+2<<20 || h2 > h0+2<<20 {
				t.Errorf("heap in use grew %d KiB over 5000 calls whose bodies were read to EOF, and is still %d KiB above baseline after the caller's cancel",
					(int64(h1)-int64(h0))>>10, (int64(h2)-int64(h0))>>10)
			}
		})
	}
}

// Bodies never touched at all: like net/http, a caller bug; still, once the
// caller's context is cancelled everything must be released (goroutines, heap).
func TestLeak5000NeverClosedReleasedByCallerCancel(t *testing.T) {
	for _, shape := range shapeNames {
		t.Run(shape, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				return resp503(req, newBody(req.Context(), payload(n, 4096)))
			}}
			r := rt(newExec(2, shapes[shape]...), b)
			runMany(t, ctx, r, 50, 10, func(*http.Response) {})
			cancel()
			ctx, cancel = context.WithCancel(context.Background())
			defer cancel()
			b.reset()
			g0 := runtime.NumGoroutine()
			h0 := heapInuse()
			runMany(t, ctx, r, 5000, 50, func(*http.Response) {})
			gMid := runtime.NumGoroutine()
			hMid := heapInuse()
			_, ctxs := b.snapshot()
			b.reset()
			cancel()
			if alive := waitDone(ctxs, time.Second); alive > 0 {
				t.Errorf("%d try contexts alive after the caller's cancel", alive)
			}
			ctxs = nil
			g := waitGoroutines(t, g0, 3, 2*time.Second)
			h1 := heapInuse()
			t.Logf("goroutines %d -> %d -> %d; heap %dKiB -> %dKiB -> %dKiB", g0, gMid, g, h0>>10, hMid>>10, h1>>10)
			if g > g0+3 {
				t.Errorf("goroutines %d, baseline %d", g, g0)
			}
			if gMid > g0+100 {
				t.Errorf("never-closed bodies hold goroutines: %d -> %d", g0, gMid)
			}
			if h1 > h0+4<<20 {
				t.Errorf("heap grew %d KiB even after the caller's cancel", (int64(h1)-int64(h0))>>10)
			}
		})
	}
}

// A 1h per-attempt (and overall) timeout: closing the body ends the call's
// work at once — the try's context is done by the time Close returns.
func TestHourTimeoutCloseEndsWorkSynchronously(t *testing.T) {
	for _, shape := range []string{"perAttempt", "overall", "all"} {
		t.Run(shape, func(t *testing.T) {
			b := &base{mk: func(n int32, req *http.Request) *http.Response {
				return resp503(req, newBody(req.Context(), payload(n, 64)))
			}}
			r := rt(newExec(2, shapes[shape]...), b)
			for i := 0; i < 200; i++ {
				b.reset()
				resp := get(t, context.Background(), r)
				_ = resp.Body.Close()
				_, ctxs := b.snapshot()
				for j, c := range ctxs {
					if c.Err() == nil {
						t.Fatalf("call %d: try %d context alive right after Close returned", i, j)
					}
				}
			}
		})
	}
}
