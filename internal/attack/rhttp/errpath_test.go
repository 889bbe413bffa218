package rhttpattack

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

// Calls that end in an error after a try got a response (pushback too long, breaker
// opening, overall deadline while a failed body is read ahead): the RoundTripper
// contract holds (err != nil ⇒ resp == nil), the dropped bodies do not pin the
// connection, the next healthy call succeeds on a reused connection.
func TestErrorPathsReleaseResponses(t *testing.T) {
	var mode atomic.Int32 // 0 healthy, 1 pushback 1h, 2 plain 503, 3 slow failed body
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 1:
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "later")
		case 2:
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "no")
		case 3:
			w.Header().Set("Content-Length", "20")
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "0123456789")
			w.(http.Flusher).Flush()
			time.Sleep(150 * time.Millisecond)
			_, _ = io.WriteString(w, "0123456789")
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})
	e := newExec(3, maxRetryAfter(time.Second), overall(100*time.Millisecond),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 6, Cooldown: 50 * time.Millisecond, HalfOpenProbes: 1}))
	c, _, _ := newClient(t, e)
	get := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		return c.Transport.RoundTrip(req)
	}
	healthy := func() {
		t.Helper()
		mode.Store(0)
		for i := 0; i < 50; i++ {
			resp, err := get()
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) == "ok" {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no healthy call succeeded")
	}
	healthy()
	for _, m := range []int32{1, 2, 3} {
		mode.Store(m)
		var sawPushback bool
		for i := 0; i < 8; i++ {
			resp, err := get()
			if err != nil && resp != nil {
				t.Fatalf("mode %d: both a response and an error: %v", m, err)
			}
			if errors.Is(err, middleware.ErrPushbackTooLong) {
				sawPushback = true
			}
			if resp != nil {
				_, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
		}
		if m == 1 && !sawPushback {
			t.Error("Retry-After 3600 with MaxRetryAfter 1s: no ErrPushbackTooLong")
		}
		time.Sleep(200 * time.Millisecond)
		healthy()
	}
	if n := conns.Load(); n > 8 {
		t.Errorf("%d connections for the whole run", n)
	}
}
