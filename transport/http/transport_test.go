package rhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// server answers with the scripted statuses in order (200 after the list)
// and records each request's method and body.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	headers  []http.Header
	bodies   []string
}

func newServer(t *testing.T, statuses ...int) *server {
	s := &server{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		i := len(s.bodies)
		s.bodies = append(s.bodies, string(b))
		code := http.StatusOK
		if i < len(s.statuses) {
			code = s.statuses[i]
		}
		h := http.Header{}
		if i < len(s.headers) {
			h = s.headers[i]
		}
		s.mu.Unlock()
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "reply %d", i+1)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.bodies) }

// client builds a client over its own http.Transport, closed at cleanup
// so no connection goroutine outlives the test.
func client(t *testing.T, exec *recourse.Executor, key string, opts ...Option) *http.Client {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: NewTransport(exec, key, base, opts...)}
}

func fastRetries(n int) policy.Option {
	return func(p *policy.Policy) {
		policy.MaxAttempts(n)(p)
		policy.Backoff(time.Millisecond, time.Millisecond, 1)(p)
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string, *timeline.Timeline) {
	t.Helper()
	ctx, capture := timeline.Record(req.Context())
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b), capture.Timeline()
}

func TestRetriesUntilSuccessWithStatusInEachRecord(t *testing.T) {
	srv := newServer(t, 503, 503, 200)
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", fastRetries(3)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, body, tl := do(t, client(t, exec, "inv.Get"), req)
	if resp.StatusCode != 200 || body != "reply 3" || srv.requests() != 3 {
		t.Fatalf("status %d body %q after %d requests", resp.StatusCode, body, srv.requests())
	}
	if len(tl.Attempts) != 3 {
		t.Fatalf("timeline %v", tl)
	}
	for i, want := range []string{"503", "503", "200"} {
		if tl.Attempts[i].Status != want {
			t.Fatalf("record %d status %q, want %q", i, tl.Attempts[i].Status, want)
		}
	}
}

func TestFinalFailedStatusIsAResponse(t *testing.T) {
	srv := newServer(t, 503, 503, 503)
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", fastRetries(2)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, body, _ := do(t, client(t, exec, "inv.Get"), req)
	if resp.StatusCode != 503 || body != "reply 2" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

func TestNonRetryableStatusIsTriedOnce(t *testing.T) {
	srv := newServer(t, 400, 200)
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", fastRetries(3)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, _, tl := do(t, client(t, exec, "inv.Get"), req)
	if resp.StatusCode != 400 || srv.requests() != 1 || tl.Attempts[0].Outcome != timeline.OutcomeNonRetryable {
		t.Fatalf("status %d after %d requests; %v", resp.StatusCode, srv.requests(), tl)
	}
}

func TestIdempotencyRules(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("orders.Create", fastRetries(3)))
	t.Run("POST without opt-in is sent once", func(t *testing.T) {
		srv := newServer(t, 503, 503, 200)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("order"))
		resp, _, _ := do(t, client(t, exec, "orders.Create"), req)
		if resp.StatusCode != 503 || srv.requests() != 1 {
			t.Fatalf("status %d after %d requests", resp.StatusCode, srv.requests())
		}
	})
	t.Run("PATCH without opt-in is sent once", func(t *testing.T) {
		srv := newServer(t, 503, 200)
		req, _ := http.NewRequest(http.MethodPatch, srv.URL, strings.NewReader("x"))
		do(t, client(t, exec, "orders.Create"), req)
		if srv.requests() != 1 {
			t.Fatalf("%d requests", srv.requests())
		}
	})
	t.Run("POST with Idempotency-Key is retried", func(t *testing.T) {
		srv := newServer(t, 503, 503, 200)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("order"))
		req.Header.Set("Idempotency-Key", "k-1")
		resp, _, _ := do(t, client(t, exec, "orders.Create"), req)
		if resp.StatusCode != 200 || srv.requests() != 3 {
			t.Fatalf("status %d after %d requests", resp.StatusCode, srv.requests())
		}
	})
	t.Run("POST with AllowNonIdempotent is retried", func(t *testing.T) {
		srv := newServer(t, 503, 200)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("order"))
		resp, _, _ := do(t, client(t, exec, "orders.Create", AllowNonIdempotent()), req)
		if resp.StatusCode != 200 || srv.requests() != 2 {
			t.Fatalf("status %d after %d requests", resp.StatusCode, srv.requests())
		}
	})
}

func TestPostBodyReachesTheServerIntactOnEveryTry(t *testing.T) {
	payload := strings.Repeat("line of the order\n", 1000)
	for name, body := range map[string]func() io.Reader{
		"with GetBody":    func() io.Reader { return strings.NewReader(payload) },
		"without GetBody": func() io.Reader { return io.MultiReader(strings.NewReader(payload)) },
	} {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, 503, 502, 200)
			exec := recourse.NewExecutor(recourse.WithPolicy("orders.Create", fastRetries(3)))
			req, _ := http.NewRequest(http.MethodPost, srv.URL, body())
			req.Header.Set("Idempotency-Key", "k-2")
			resp, _, _ := do(t, client(t, exec, "orders.Create"), req)
			if resp.StatusCode != 200 || srv.requests() != 3 {
				t.Fatalf("status %d after %d", resp.StatusCode, srv.requests())
			}
			for i, got := range srv.bodies {
				if got != payload {
					t.Fatalf("try %d body: %d bytes, want %d", i+1, len(got), len(payload))
				}
			}
		})
	}
}

func TestBodyTooLargeToReplay(t *testing.T) {
	srv := newServer(t)
	exec := recourse.NewExecutor()
	req, _ := http.NewRequest(http.MethodPut, srv.URL, io.MultiReader(bytes.NewReader(make([]byte, 100))))
	_, err := client(t, exec, "k", MaxReplayBody(10)).Do(req)
	if !errors.Is(err, ErrBodyTooLarge) || srv.requests() != 0 {
		t.Fatalf("err %v after %d requests", err, srv.requests())
	}
}

func TestRetryAfterDelaysTheNextTry(t *testing.T) {
	for name, header := range map[string]func(now time.Time) string{
		"seconds": func(time.Time) string { return "1" },
		"date":    func(now time.Time) string { return now.Add(time.Second).Format(http.TimeFormat) },
	} {
		t.Run(name, func(t *testing.T) {
			f := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			value := header(f.Now())
			srv := newServer(t, 503, 200)
			srv.headers = []http.Header{{"Retry-After": {value}}}
			exec := recourse.NewExecutor(recourse.WithClock(f), recourse.WithPolicy("inv.Get", policy.MaxAttempts(2),
				policy.Backoff(time.Hour, time.Hour, 1)))
			c := client(t, exec, "inv.Get", WithClock(f))
			ctx, capture := timeline.Record(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			done := make(chan int, 1)
			go func() {
				resp, err := c.Do(req)
				if err != nil {
					done <- -1
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			f.BlockUntil(1) // sleeping before try 2
			f.Advance(999 * time.Millisecond)
			select {
			case <-done:
				t.Fatal("retried before Retry-After elapsed")
			default:
			}
			f.Advance(time.Millisecond)
			if code := <-done; code != 200 {
				t.Fatalf("status %d", code)
			}
			a := capture.Timeline().Attempts
			if a[0].Backoff != time.Second || a[0].Reason != timeline.ReasonRetryAfter {
				t.Fatalf("first record %+v", a[0])
			}
		})
	}
}

func TestHugeRetryAfterEndsTheCallClearly(t *testing.T) {
	srv := newServer(t, 503, 200)
	srv.headers = []http.Header{{"Retry-After": {"3600"}}}
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", policy.MaxAttempts(3), policy.MaxRetryAfter(10*time.Second)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	start := time.Now()
	_, err := client(t, exec, "inv.Get").Do(req)
	if !errors.Is(err, middleware.ErrPushbackTooLong) || srv.requests() != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %d requests", err, srv.requests())
	}
	if !strings.Contains(err.Error(), "1h0m0s") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error does not say what was asked and what failed: %v", err)
	}
}

func TestHedgedGetClosesTheStalledConnection(t *testing.T) {
	var n atomic.Int32
	stalledClosed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // stall until the client gives up on this connection
			close(stalledClosed)
			return
		}
		fmt.Fprint(w, "fast")
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 20 * time.Millisecond})))
	c := client(t, exec, "inv.Get")
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	start := time.Now()
	resp, body, tl := do(t, c, req)
	if resp.StatusCode != 200 || body != "fast" || time.Since(start) > 2*time.Second {
		t.Fatalf("status %d body %q after %v", resp.StatusCode, body, time.Since(start))
	}
	select {
	case <-stalledClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled request's connection was not closed")
	}
	if len(tl.Attempts) != 2 {
		t.Fatalf("timeline %v", tl)
	}
}

func TestWinningBodyIsReadableAfterReturn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(30 * time.Millisecond) // the body arrives after RoundTrip returned
		fmt.Fprint(w, "late body")
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", policy.MaxAttempts(2),
		policy.TimeoutPerAttempt(5*time.Second), policy.OverallTimeout(10*time.Second),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Second})))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	_, body, _ := do(t, client(t, exec, "inv.Get"), req)
	if body != "late body" {
		t.Fatalf("body %q: returning cut off the winning response", body)
	}
}

func TestKeyFuncDerivesKeysPerRoute(t *testing.T) {
	srv := newServer(t, 503, 200, 503, 200)
	exec := recourse.NewExecutor(recourse.WithMissingPolicyMode(recourse.FailureDeny),
		recourse.WithPolicy("users.Get", fastRetries(2)), recourse.WithPolicy("users.List", policy.MaxAttempts(1)))
	c := client(t, exec, "users.Get", WithKeyFunc(func(r *http.Request) string {
		if r.URL.Path == "/users" {
			return "users.List"
		}
		return "users.Get"
	}))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/users/42", nil)
	resp, _, tl := do(t, c, req)
	if resp.StatusCode != 200 || tl.Key != "users.Get" || len(tl.Attempts) != 2 {
		t.Fatalf("status %d %v", resp.StatusCode, tl)
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/users", nil)
	resp, _, tl = do(t, c, req)
	if resp.StatusCode != 503 || tl.Key != "users.List" || len(tl.Attempts) != 1 {
		t.Fatalf("status %d %v", resp.StatusCode, tl)
	}
}

func TestNetworkErrorsAreRetried(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := srv.URL
	srv.Close() // nothing listens there any more
	exec := recourse.NewExecutor(recourse.WithPolicy("inv.Get", fastRetries(3)))
	ctx, capture := timeline.Record(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	_, err := client(t, exec, "inv.Get").Do(req)
	if err == nil || len(capture.Timeline().Attempts) != 3 {
		t.Fatalf("err %v timeline %v", err, capture.Timeline())
	}
}
