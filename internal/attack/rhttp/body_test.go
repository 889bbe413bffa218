package rhttpattack

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The last try's failed body comes back whole, distinct per try, with hedging on or off.
func TestFinalFailedBodyIsLastTrysWhole(t *testing.T) {
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		t.Run(name, func(t *testing.T) {
			var extra = newExec(3)
			switch name {
			case "hedged":
				extra = newExec(3, hedge(200*time.Millisecond))
			case "perAttempt":
				extra = newExec(3, hedgeNone(), perAttempt(5*time.Second))
			}
			var hits atomic.Int32
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				n := hits.Add(1)
				b := pattern(300<<10+int(n), byte(n))
				w.Header().Set("X-Try", strconv.Itoa(int(n)))
				w.Header().Set("X-Sum", sum(b))
				w.WriteHeader(503)
				for i := 0; i < len(b); i += 8192 {
					_, _ = w.Write(b[i:min(i+8192, len(b))])
					w.(http.Flusher).Flush()
				}
			})
			c, _, _ := newClient(t, extra)
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatalf("err %v", err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read %v after %d bytes", err, len(got))
			}
			if resp.StatusCode != 503 || sum(got) != resp.Header.Get("X-Sum") {
				t.Fatalf("status %d try %s: body %d bytes sum %s want %s", resp.StatusCode, resp.Header.Get("X-Try"), len(got), sum(got), resp.Header.Get("X-Sum"))
			}
			if resp.Header.Get("X-Try") != "3" {
				t.Fatalf("got try %s's response, want the third", resp.Header.Get("X-Try"))
			}
		})
	}
}

// The winner's body trickles for longer than the call took; it stays readable after return.
func TestWinningBodyTricklesAfterReturn(t *testing.T) {
	for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2)
			switch name {
			case "hedged":
				e = newExec(2, hedge(time.Millisecond))
			case "perAttempt":
				e = newExec(2, perAttempt(5*time.Second))
			case "overall":
				e = newExec(2, overall(5*time.Second))
			}
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				for i := 0; i < 10; i++ {
					_, _ = w.Write([]byte(strconv.Itoa(i)))
					w.(http.Flusher).Flush()
					time.Sleep(20 * time.Millisecond)
				}
			})
			c, _, _ := newClient(t, e)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			time.Sleep(50 * time.Millisecond)
			got, err := io.ReadAll(resp.Body)
			if err != nil || string(got) != "0123456789" {
				t.Fatalf("body %q err %v", got, err)
			}
		})
	}
}

// After the caller cancels its context, reading the body ends promptly (as net/http),
// with an error, never hangs.
func TestBodyReadAfterCallerCancel(t *testing.T) {
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2)
			switch name {
			case "hedged":
				e = newExec(2, hedge(time.Millisecond))
			case "perAttempt":
				e = newExec(2, perAttempt(10*time.Second))
			}
			stop := make(chan struct{})
			defer close(stop)
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				_, _ = w.Write([]byte("x"))
				w.(http.Flusher).Flush()
				select {
				case <-stop:
				case <-r.Context().Done():
				}
			})
			c, _, _ := newClient(t, e)
			cause := errors.New("caller gave up")
			ctx, cancel := context.WithCancelCause(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := make([]byte, 1)
			if _, err := io.ReadFull(resp.Body, b); err != nil {
				t.Fatal(err)
			}
			cancel(cause)
			var rerr error
			within(t, 5*time.Second, "read after cancel", func() { _, rerr = io.ReadAll(resp.Body) })
			if rerr == nil {
				t.Fatal("read after cancel ended cleanly")
			}
			if !errors.Is(rerr, context.Canceled) && !errors.Is(rerr, cause) {
				t.Logf("read error after cancel: %v (neither Canceled nor cause)", rerr)
			}
		})
	}
}

// A per-attempt timeout bounds a body that never ends; so does an overall one.
func TestDeadlinesBoundEndlessWinningBody(t *testing.T) {
	for _, name := range []string{"perAttempt", "overall", "hedgedPerAttempt"} {
		t.Run(name, func(t *testing.T) {
			var e = newExec(2, perAttempt(300*time.Millisecond))
			switch name {
			case "overall":
				e = newExec(2, overall(300*time.Millisecond))
			case "hedgedPerAttempt":
				e = newExec(2, perAttempt(300*time.Millisecond), hedge(time.Millisecond))
			}
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				for {
					if _, err := w.Write([]byte("y")); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			})
			c, _, _ := newClient(t, e)
			start := time.Now()
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var rerr error
			within(t, 10*time.Second, "endless body read", func() { _, rerr = io.Copy(io.Discard, resp.Body) })
			if rerr == nil {
				t.Fatal("endless body ended without error")
			}
			t.Logf("endless body cut by %v", rerr)
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("read lasted %v under a 300ms deadline", el)
			}
		})
	}
}

// Caller closes an endless body without reading: Close returns promptly, nothing stays blocked (goleak at exit).
func TestCloseUnreadEndlessBody(t *testing.T) {
	for _, name := range []string{"plain", "hedged", "retried"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			if name == "hedged" {
				e = newExec(3, hedge(time.Millisecond))
			}
			var hits atomic.Int32
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				if name == "retried" && hits.Add(1) == 1 {
					w.WriteHeader(503) // endless failed body too
				} else {
					w.WriteHeader(200)
				}
				buf := make([]byte, 32<<10)
				for {
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			})
			c, _, _ := newClient(t, e)
			for i := 0; i < 5; i++ {
				var resp *http.Response
				var err error
				within(t, 10*time.Second, "call", func() { resp, err = c.Get(srv.URL) })
				if err != nil {
					t.Fatal(err)
				}
				within(t, 5*time.Second, "Close of unread endless body", func() { _ = resp.Body.Close() })
				hits.Store(0)
			}
		})
	}
}

// Huge body (64 MiB) read whole, checksum checked.
func TestHugeBody(t *testing.T) {
	b := pattern(64<<20, 3)
	want := sum(b)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
	c, _, _ := newClient(t, newExec(3, hedge(50*time.Millisecond)))
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || sum(got) != want {
		t.Fatalf("err %v len %d", err, len(got))
	}
}

// A server that resets mid-body: the caller sees an error, not a short body.
func TestResetMidBody(t *testing.T) {
	for _, code := range []int{200, 503} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				conn, bw, err := w.(http.Hijacker).Hijack()
				if err != nil {
					return
				}
				_, _ = bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " X\r\nContent-Length: 100000\r\n\r\n")
				_, _ = bw.Write(make([]byte, 5000))
				_ = bw.Flush()
				time.Sleep(10 * time.Millisecond)
				if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
					_ = tc.SetLinger(0)
				}
				_ = conn.Close()
			})
			c, _, _ := newClient(t, newExec(2))
			resp, err := c.Get(srv.URL)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("reset body read as complete: %d bytes", len(got))
			}
		})
	}
}

// Empty 200, 204, 304, HEAD: non-nil body reading EOF at once, same as net/http.
func TestEmptyBodies(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		case "/head":
			w.Header().Set("Content-Length", "12345")
			w.WriteHeader(200)
		default:
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(200)
		}
	})
	c, _, _ := newClient(t, newExec(3, hedge(20*time.Millisecond)))
	for i := 0; i < 20; i++ {
		for _, p := range []string{"/200", "/204", "/304", "/head"} {
			method := "GET"
			if p == "/head" {
				method = "HEAD"
			}
			req, _ := http.NewRequest(method, srv.URL+p, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if resp.Body == nil {
				t.Fatalf("%s: nil body", p)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || len(b) != 0 {
				t.Fatalf("%s: %q %v", p, b, err)
			}
			if p == "/head" && resp.ContentLength != 12345 {
				t.Fatalf("HEAD ContentLength %d", resp.ContentLength)
			}
			_ = resp.Body.Close()
		}
	}
	if n := conns.Load(); n > 3 {
		t.Fatalf("%d connections for 80 sequential empty responses", n)
	}
}

// 101 upgrade: body is an io.ReadWriteCloser and echoes through.
func TestUpgrade101(t *testing.T) {
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2)
			switch name {
			case "hedged":
				e = newExec(2, hedge(time.Second))
			case "perAttempt":
				e = newExec(2, perAttempt(5*time.Second))
			}
			srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				conn, bw, err := w.(http.Hijacker).Hijack()
				if err != nil {
					return
				}
				defer conn.Close()
				_, _ = bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
				_ = bw.Flush()
				br := bufio.NewReader(io.MultiReader(bw.Reader, conn))
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := conn.Write([]byte("echo:" + line)); err != nil {
						return
					}
				}
			})
			c, _, _ := newClient(t, e)
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 101 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			rw, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				t.Fatalf("101 body %T is not an io.ReadWriteCloser", resp.Body)
			}
			time.Sleep(30 * time.Millisecond) // outlive any short-lived try state
			br := bufio.NewReader(rw)
			for i := 0; i < 3; i++ {
				msg := "m" + strconv.Itoa(i) + "\n"
				if _, err := rw.Write([]byte(msg)); err != nil {
					t.Fatalf("write: %v", err)
				}
				line, err := br.ReadString('\n')
				if err != nil || line != "echo:"+msg {
					t.Fatalf("read %q %v", line, err)
				}
			}
		})
	}
}
