package rhttpattack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// onlyReader hides every method but Read (no GetBody is set by NewRequest).
type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// closeCount records Close calls.
type closeCount struct {
	io.Reader
	n atomic.Int32
}

func (c *closeCount) Close() error { c.n.Add(1); return nil }

// Every try gets the same body: with GetBody, without it, hedged, under
// several sizes; the server checks every try's checksum.
func TestRequestBodyReplayedIntact(t *testing.T) {
	for _, size := range []int{0, 1, 4 << 10, 900 << 10} {
		for _, mode := range []string{"getBody", "noGetBody", "noGetBodyHedged", "getBodyHedged"} {
			t.Run(mode+"/"+strconv.Itoa(size), func(t *testing.T) {
				body := pattern(size, 7)
				want := sum(body)
				var mu sync.Mutex
				var seen []string
				var hits atomic.Int32
				srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
					b, err := io.ReadAll(r.Body)
					mu.Lock()
					seen = append(seen, sum(b)+"/"+strconv.Itoa(len(b))+"/"+strconv.FormatInt(r.ContentLength, 10))
					mu.Unlock()
					if err != nil {
						w.WriteHeader(400)
						return
					}
					if n := hits.Add(1); n < 3 {
						if mode == "noGetBodyHedged" || mode == "getBodyHedged" {
							time.Sleep(30 * time.Millisecond)
						}
						w.WriteHeader(503)
						return
					}
					_, _ = io.WriteString(w, sum(b))
				})
				e := newExec(4)
				if mode == "noGetBodyHedged" || mode == "getBodyHedged" {
					e = newExec(4, hedge(5*time.Millisecond))
				}
				c, _, _ := newClient(t, e)
				var rdr io.Reader = bytes.NewReader(body)
				if mode == "noGetBody" || mode == "noGetBodyHedged" {
					rdr = &onlyReader{bytes.NewReader(body)}
				}
				req, _ := http.NewRequest("PUT", srv.URL, rdr)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(got) != want {
					t.Fatalf("final status %d body %q", resp.StatusCode, got)
				}
				mu.Lock()
				defer mu.Unlock()
				for i, s := range seen {
					if s[:16] != want {
						t.Errorf("try %d got %s, want sum %s len %d", i, s, want, size)
					}
				}
			})
		}
	}
}

// A body larger than MaxReplayBody without GetBody: ErrBodyTooLarge, the body closed, nothing sent.
func TestBodyTooLargeRefusedAndClosed(t *testing.T) {
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	for _, lim := range []int64{-1, 0, 100, 1 << 10} {
		t.Run(strconv.FormatInt(lim, 10), func(t *testing.T) {
			c, _, _ := newClient(t, newExec(3), rhttp.MaxReplayBody(lim))
			body := &closeCount{Reader: bytes.NewReader(pattern(4<<10, 1))}
			req, _ := http.NewRequest("PUT", srv.URL, body)
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("status %d, want ErrBodyTooLarge", resp.StatusCode)
			}
			if !errors.Is(err, rhttp.ErrBodyTooLarge) {
				t.Fatalf("err %v, want ErrBodyTooLarge", err)
			}
			if body.n.Load() == 0 {
				t.Fatal("request body not closed")
			}
		})
	}
	// Exactly at the limit is fine.
	c, _, _ := newClient(t, newExec(3), rhttp.MaxReplayBody(1<<10))
	req, _ := http.NewRequest("PUT", srv.URL, &onlyReader{bytes.NewReader(pattern(1<<10, 1))})
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("body at the limit: %v", err)
	}
	resp.Body.Close()
}

// A body that blocks forever: the call ends with the caller's context, the body is closed.
func TestBlockingRequestBody(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	for _, mode := range []string{"callerTimeout", "overall", "postStreamed"} {
		t.Run(mode, func(t *testing.T) {
			e := newExec(3)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if mode == "overall" {
				e = newExec(3, overall(200*time.Millisecond))
				ctx = context.Background()
			}
			c, _, _ := newClient(t, e)
			pr, pw := io.Pipe()
			go func() { _, _ = pw.Write([]byte("partial")) }()
			method := "PUT"
			if mode == "postStreamed" {
				method = "POST"
			}
			req, _ := http.NewRequestWithContext(ctx, method, srv.URL, pr)
			var err error
			var resp *http.Response
			within(t, 5*time.Second, "call with blocking body", func() { resp, err = c.Do(req) })
			if err == nil {
				resp.Body.Close()
				t.Fatalf("status %d with a body that never ends", resp.StatusCode)
			}
			// The pipe must have been closed by the transport: a write now fails.
			werr := make(chan error, 1)
			go func() { _, e := pw.Write([]byte("more")); werr <- e }()
			select {
			case e := <-werr:
				if e == nil {
					t.Fatal("write after call succeeded: body still being read")
				}
			case <-time.After(5 * time.Second):
				_ = pw.Close()
				t.Fatal("request body not closed after the call")
			}
		})
	}
}

// POST single attempt: a 6 MiB body from a pipe (no GetBody, above MaxReplayBody) is streamed whole,
// and a 503 is not retried.
func TestPostStreamedSingleAttempt(t *testing.T) {
	body := pattern(6<<20, 9)
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Sum", sum(b))
		w.WriteHeader(503)
	})
	c, _, _ := newClient(t, newExec(3, hedge(time.Millisecond)), rhttp.MaxReplayBody(1024))
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(body); i += 64 << 10 {
			if _, err := pw.Write(body[i:min(i+64<<10, len(body))]); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL, pr)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Sum") != sum(body) {
		t.Fatalf("status %d sum %s want %s", resp.StatusCode, resp.Header.Get("X-Sum"), sum(body))
	}
	time.Sleep(20 * time.Millisecond)
	if n := hits.Load(); n != 1 {
		t.Fatalf("POST sent %d times", n)
	}
}

// The same *http.Request sent twice in a row (GetBody set by NewRequest): the
// transport does not modify it, and each call sends the whole body.
func TestSameRequestReusedSequentially(t *testing.T) {
	body := pattern(10<<10, 2)
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, sum(b))
	})
	c, rt, _ := newClient(t, newExec(3))
	_ = c
	req, _ := http.NewRequest("PUT", srv.URL, bytes.NewReader(body))
	req.Header.Set("X-A", "1")
	origBody, origCL := req.Body, req.ContentLength
	for i := 0; i < 3; i++ {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i == 0 && string(got) != sum(body) {
			t.Fatalf("call %d: %q", i, got)
		}
		if i > 0 && string(got) != sum(body) {
			// The request's Body was consumed by call 0; a GetBody-replaying
			// transport may or may not send it again. Only mixing matters.
			t.Logf("call %d: server got sum %q (want %s or an error)", i, got, sum(body))
		}
		if req.Body != origBody || req.ContentLength != origCL || len(req.Header) != 1 || req.Header.Get("X-A") != "1" {
			t.Fatalf("request modified: body %v CL %d header %v", req.Body != origBody, req.ContentLength, req.Header)
		}
	}
}
