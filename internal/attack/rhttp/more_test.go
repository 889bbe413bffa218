package rhttpattack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// Trailers of the winning response and of a final failed (read-ahead) one are seen after EOF.
func TestTrailers(t *testing.T) {
	for _, code := range []int{200, 503, 404} {
		for _, size := range []int{3, 100 << 10} {
			t.Run(strconv.Itoa(code)+"/"+strconv.Itoa(size), func(t *testing.T) {
				srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Trailer", "X-Check")
					w.WriteHeader(code)
					_, _ = w.Write(pattern(size, 1))
					w.Header().Set("X-Check", "sum-"+strconv.Itoa(size))
				})
				c, _, _ := newClient(t, newExec(2))
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil || len(b) != size {
					t.Fatalf("%d bytes err %v", len(b), err)
				}
				if got := resp.Trailer.Get("X-Check"); got != "sum-"+strconv.Itoa(size) {
					t.Fatalf("trailer %q (Trailer map %v)", got, resp.Trailer)
				}
			})
		}
	}
}

// http.Client redirects (307 keeps method and body) through the transport: body intact at the target.
func TestRedirect307ReplaysBody(t *testing.T) {
	body := pattern(50<<10, 4)
	var target string
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/from" {
			http.Redirect(w, r, target, http.StatusTemporaryRedirect)
			return
		}
		_, _ = io.WriteString(w, sum(b))
	})
	target = srv.URL + "/to"
	c := rhttp.NewClient(newExec(3), key)
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("PUT", srv.URL+"/from", bytes.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != sum(body) {
		t.Fatalf("target got %q", b)
	}
}

// POST with an Idempotency-Key and no GetBody: retried, body replayed each time.
func TestPostIdempotencyKeyReplay(t *testing.T) {
	body := pattern(20<<10, 6)
	var hits atomic.Int32
	var bad atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if sum(b) != sum(body) {
			bad.Add(1)
		}
		if hits.Add(1) < 3 {
			w.WriteHeader(502)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	c, _, _ := newClient(t, newExec(3))
	req, _ := http.NewRequest("POST", srv.URL, stringsReader(string(body)))
	req.Header.Set("Idempotency-Key", "abc")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || hits.Load() != 3 || bad.Load() != 0 {
		t.Fatalf("status %d hits %d bad bodies %d", resp.StatusCode, hits.Load(), bad.Load())
	}
}

// GetBody that fails on the replay: the call ends with an error (or the last response), never sends a wrong body.
func TestGetBodyFailsOnReplay(t *testing.T) {
	var bad atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != "payload" {
			bad.Add(1)
		}
		w.WriteHeader(503)
	})
	c, _, _ := newClient(t, newExec(3))
	req, _ := http.NewRequest("PUT", srv.URL, bytes.NewReader([]byte("payload")))
	calls := 0
	boom := errors.New("getbody boom")
	req.GetBody = func() (io.ReadCloser, error) {
		calls++
		if calls > 1 {
			return nil, boom
		}
		return io.NopCloser(bytes.NewReader([]byte("payload"))), nil
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if bad.Load() != 0 {
		t.Fatalf("%d tries sent a wrong body", bad.Load())
	}
}

// Cancel during a real backoff sleep (Retry-After: 1 within MaxRetryAfter): returns promptly
// with the caller's cause or Canceled, one try only.
func TestCancelDuringBackoffSleep(t *testing.T) {
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
		_, _ = io.WriteString(w, "busy")
	})
	for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
		t.Run(name, func(t *testing.T) {
			hits.Store(0)
			e := newExec(3, maxRetryAfter(5*time.Second))
			switch name {
			case "hedged":
				e = newExec(3, maxRetryAfter(5*time.Second), hedge(time.Second))
			case "perAttempt":
				e = newExec(3, maxRetryAfter(5*time.Second), perAttempt(5*time.Second))
			case "overall":
				e = newExec(3, maxRetryAfter(5*time.Second), overall(10*time.Second))
			}
			c, _, _ := newClient(t, e)
			cause := errors.New("stop waiting")
			ctx, cancel := context.WithCancelCause(context.Background())
			time.AfterFunc(150*time.Millisecond, func() { cancel(cause) })
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			start := time.Now()
			resp, err := c.Do(req)
			el := time.Since(start)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("status %d body %q after %v: want the caller's error", resp.StatusCode, b, el)
			}
			if el > 800*time.Millisecond {
				t.Fatalf("returned %v after a cancel at 150ms", el)
			}
			if !errors.Is(err, cause) && !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v", err)
			}
			if !errors.Is(err, cause) {
				t.Logf("err %v does not carry the cause", err)
			}
			if hits.Load() != 1 {
				t.Fatalf("%d tries", hits.Load())
			}
		})
	}
}

// Per-try timeouts within an overall timeout: a hung server; the call ends near the overall
// deadline, all tries ended on the server.
func TestPerTryVsOverall(t *testing.T) {
	var inflight atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		<-r.Context().Done()
	})
	for _, name := range []string{"plain", "hedged"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(10, perAttempt(100*time.Millisecond), overall(350*time.Millisecond))
			if name == "hedged" {
				e = newExec(10, perAttempt(100*time.Millisecond), overall(350*time.Millisecond), hedge(20*time.Millisecond))
			}
			c, _, _ := newClient(t, e)
			start := time.Now()
			resp, err := c.Get(srv.URL)
			el := time.Since(start)
			if err == nil {
				resp.Body.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("err %v", err)
			}
			if el > 1500*time.Millisecond || el < 300*time.Millisecond {
				t.Fatalf("call took %v with 350ms overall", el)
			}
			deadline := time.Now().Add(3 * time.Second)
			for inflight.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := inflight.Load(); n != 0 {
				t.Fatalf("%d server handlers still running after the call", n)
			}
		})
	}
}

// Failed bodies that arrive in two parts with Retry-After: 0: the retry still goes out
// on the same connection (docs: "even an immediate retry (Retry-After: 0) goes out on
// the same connection").
func TestImmediateRetryReusesConnection(t *testing.T) {
	var hits atomic.Int32
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%3 != 0 {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Length", "400")
			w.WriteHeader(503)
			_, _ = w.Write(make([]byte, 200))
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
			_, _ = w.Write(make([]byte, 200))
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	c, _, _ := newClient(t, newExec(3))
	for i := 0; i < 20; i++ {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("call %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n > 3 {
		t.Fatalf("%d connections for 60 sequential tries", n)
	}
}

// The final failed body trickles slowly (pauses of 60ms): returned whole.
func TestFinalFailedBodySlowTrickle(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		for i := 0; i < 6; i++ {
			_, _ = io.WriteString(w, strconv.Itoa(i))
			w.(http.Flusher).Flush()
			time.Sleep(60 * time.Millisecond)
		}
	})
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2)
			switch name {
			case "hedged":
				e = newExec(2, hedge(5*time.Second))
			case "perAttempt":
				e = newExec(2, perAttempt(5*time.Second))
			}
			c, _, _ := newClient(t, e)
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "012345" {
				t.Fatalf("%q %v", b, err)
			}
		})
	}
}

// Differential: reading the body after the caller cancels with a cause gives the
// same kind of error as plain net/http does, for a winner and for a final failed body.
func TestBodyReadErrorAfterCauseMatchesStdlib(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(503)
		} else {
			w.WriteHeader(200)
		}
		_, _ = w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	cause := errors.New("my cause")
	readErr := func(rt http.RoundTripper, path string) error {
		ctx, cancel := context.WithCancelCause(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			cancel(nil)
			return err
		}
		defer resp.Body.Close()
		_, _ = resp.Body.Read(make([]byte, 1))
		cancel(cause)
		_, err = io.ReadAll(resp.Body)
		return err
	}
	std := &http.Transport{}
	defer std.CloseIdleConnections()
	for _, path := range []string{"/ok", "/fail"} {
		stdErr := readErr(std, path)
		for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
			t.Run(path[1:]+"/"+name, func(t *testing.T) {
				e := newExec(2)
				switch name {
				case "hedged":
					e = newExec(2, hedge(5*time.Millisecond))
				case "perAttempt":
					e = newExec(2, perAttempt(5*time.Second))
				case "overall":
					e = newExec(2, overall(5*time.Second))
				}
				_, rt, _ := newClient(t, e)
				var got error
				within(t, 5*time.Second, "read after cancel", func() { got = readErr(rt, path) })
				if got == nil || errors.Is(stdErr, cause) != errors.Is(got, cause) || errors.Is(stdErr, context.Canceled) != errors.Is(got, context.Canceled) {
					t.Fatalf("net/http body error %v; rhttp %v", stdErr, got)
				}
			})
		}
	}
}
