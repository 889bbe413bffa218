package rhttpattack

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stallServer: odd requests answer 503 with a short Content-Length body of which
// only a part is sent, then stall until the client goes; even ones answer 200.
func stallServer(t *testing.T, allFail bool) (string, *atomic.Int32) {
	var hits atomic.Int64
	var stalled atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if allFail || hits.Add(1)%2 == 1 {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(503)
			_, _ = w.Write([]byte("part"))
			w.(http.Flusher).Flush()
			stalled.Add(1)
			defer stalled.Add(-1)
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	return srv.URL, &stalled
}

// Many concurrent calls whose dropped bodies stall: each is cut (pooled drain timers),
// the retry goes on, every call ends well within its bound.
func TestConcurrentStalledDroppedBodies(t *testing.T) {
	url, stalled := stallServer(t, false)
	c, _, base := newClient(t, newExec(3))
	base.MaxIdleConnsPerHost = 64
	var wg sync.WaitGroup
	var slow atomic.Int32
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 5; k++ {
				start := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				var b []byte
				if resp.StatusCode == 200 {
					b, _ = io.ReadAll(resp.Body)
				} // a final stalled 503 body is only closed
				resp.Body.Close()
				if time.Since(start) > 3*time.Second {
					slow.Add(1)
				}
				if resp.StatusCode == 200 && string(b) != "ok" {
					t.Errorf("body %q", b)
				}
			}
		}()
	}
	wg.Wait()
	if n := slow.Load(); n > 0 {
		t.Errorf("%d calls took over 3s with stalled dropped bodies", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for stalled.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := stalled.Load(); n != 0 {
		t.Fatalf("%d dropped tries still held open by the client", n)
	}
}

// The final failed body stalls: what came is readable, Close returns promptly and frees the
// server; a caller deadline ends a blocked read.
func TestFinalFailedBodyStalls(t *testing.T) {
	url, stalled := stallServer(t, true)
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		for _, how := range []string{"close", "deadline"} {
			t.Run(name+"/"+how, func(t *testing.T) {
				e := newExec(2)
				switch name {
				case "hedged":
					e = newExec(2, hedge(time.Millisecond))
				case "perAttempt":
					e = newExec(2, perAttempt(10*time.Second))
				}
				_, rt, _ := newClient(t, e)
				ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				var resp *http.Response
				var err error
				within(t, 1400*time.Millisecond, "call with stalled failed bodies", func() { resp, err = rt.RoundTrip(req) })
				if err != nil {
					t.Fatalf("err %v, want the final 503", err)
				}
				p := make([]byte, 4)
				if _, err := io.ReadFull(resp.Body, p); err != nil || string(p) != "part" {
					t.Fatalf("first bytes %q %v", p, err)
				}
				if how == "close" {
					within(t, 2*time.Second, "Close of stalled final body", func() { _ = resp.Body.Close() })
				} else {
					within(t, 8*time.Second, "read of stalled final body under a 1.5s caller deadline", func() { _, _ = io.ReadAll(resp.Body) })
					_ = resp.Body.Close()
				}
				deadline := time.Now().Add(5 * time.Second)
				for stalled.Load() != 0 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if n := stalled.Load(); n != 0 {
					t.Fatalf("%d stalled server handlers still held by the client after Close", n)
				}
			})
		}
	}
}

// The final failed body stalls and the caller has no deadline: the
// policy's per-attempt and overall deadlines still end a blocked read (the
// chain hands their cancellation to the response, which keeps it until
// its body is closed), and not before the read could start.
func TestFinalFailedBodyBoundedByPolicyDeadlines(t *testing.T) {
	url, stalled := stallServer(t, true)
	for _, name := range []string{"perAttempt", "overall", "hedgedPerAttempt"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2, perAttempt(400*time.Millisecond))
			switch name {
			case "overall":
				e = newExec(2, overall(800*time.Millisecond))
			case "hedgedPerAttempt":
				e = newExec(2, perAttempt(400*time.Millisecond), hedge(time.Millisecond))
			}
			_, rt, _ := newClient(t, e)
			req, _ := http.NewRequest("GET", url, nil)
			var resp *http.Response
			var err error
			within(t, 700*time.Millisecond, "call with stalled failed bodies", func() { resp, err = rt.RoundTrip(req) })
			if err != nil {
				t.Fatalf("err %v, want the final 503", err)
			}
			defer resp.Body.Close()
			p := make([]byte, 4)
			if _, err := io.ReadFull(resp.Body, p); err != nil || string(p) != "part" {
				t.Fatalf("first bytes %q %v", p, err)
			}
			var rerr error
			within(t, 5*time.Second, "read of a stalled final body under the policy's deadlines", func() { _, rerr = io.ReadAll(resp.Body) })
			if rerr == nil {
				t.Fatal("read of a stalled body ended without an error")
			}
			_ = resp.Body.Close()
			deadline := time.Now().Add(5 * time.Second)
			for stalled.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := stalled.Load(); n != 0 {
				t.Fatalf("%d stalled server handlers still held by the client", n)
			}
		})
	}
}
