package rhttpattack

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

func goroutines() int {
	runtime.GC()
	return runtime.NumGoroutine()
}

// A long-lived custom caller context (never cancelled) reused for many calls:
// a child of it made by the context package starts a goroutine per child
// unless the child is cancelled. Once each body is closed, nothing may remain.
func TestLongLivedCustomContextNoGoroutineGrowth(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/all" {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "failed")
			return
		}
		if r.URL.Query().Get("fail") == "1" && r.Header.Get("X-N") == "" {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, name := range []string{"plain", "plainRetry", "allFail", "hedged", "hedgedAllFail", "perAttempt", "overall"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2)
			switch name {
			case "hedged":
				e = newExec(2, hedge(time.Second))
			case "hedgedAllFail":
				e = newExec(2, hedge(time.Millisecond))
			case "perAttempt":
				e = newExec(2, perAttempt(5*time.Second))
			case "overall":
				e = newExec(2, overall(5*time.Second))
			}
			_, rt, _ := newClient(t, e)
			ctx := &customCtx{done: make(chan struct{})}
			defer ctx.cancel()
			url := srv.URL
			switch name {
			case "plainRetry":
				url += "?fail=1"
			case "allFail", "hedgedAllFail":
				url += "/all"
			}
			call := func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for i := 0; i < 20; i++ {
				call()
			}
			time.Sleep(50 * time.Millisecond)
			before := goroutines()
			for i := 0; i < 300; i++ {
				call()
			}
			var after int
			for k := 0; k < 40; k++ {
				time.Sleep(25 * time.Millisecond)
				if after = goroutines(); after-before < 30 {
					return
				}
			}
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			stacks := string(buf[:n])
			i := strings.Index(stacks, "context.")
			if i > 0 {
				stacks = stacks[max(0, i-300):min(len(stacks), i+700)]
			}
			t.Fatalf("goroutines %d -> %d after 300 calls with bodies closed under a live custom context:\n%s", before, after, stacks)
		})
	}
}

// The same with a standard cancellable context: the parent's children must not
// grow with each call (heap bounded).
func TestLongLivedCancellableContextHeapBounded(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, name := range []string{"plain", "hedged"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2)
			if name == "hedged" {
				e = newExec(2, hedge(time.Second))
			}
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			rt := rhttp.NewTransport(e, key, base)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			call := func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			heap := func() uint64 {
				var ms runtime.MemStats
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc
			}
			for i := 0; i < 200; i++ {
				call()
			}
			h0 := heap()
			for i := 0; i < 15000; i++ {
				call()
			}
			h1 := heap()
			if h1 > h0 && h1-h0 > 1<<20 {
				t.Fatalf("heap grew %d KiB over 15000 calls under one live context", (h1-h0)>>10)
			}
		})
	}
}
