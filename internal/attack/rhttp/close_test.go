package rhttpattack

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Close from another goroutine while a Read blocks on a stalled body (net/http allows
// it: it is how a reader is aborted): the Read returns promptly; a second Close and a
// Read after Close do not panic.
func TestCloseWhileReadBlocked(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
		_, _ = w.Write([]byte("a"))
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	for _, code := range []int{200, 503} {
		for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
			t.Run(strconv.Itoa(code)+"/"+name, func(t *testing.T) {
				e := newExec(2)
				switch name {
				case "hedged":
					e = newExec(2, hedge(time.Millisecond))
				case "perAttempt":
					e = newExec(2, perAttempt(20*time.Second))
				case "overall":
					e = newExec(2, overall(20*time.Second))
				}
				_, rt, _ := newClient(t, e)
				req, _ := http.NewRequest("GET", srv.URL+"?code="+strconv.Itoa(code), nil)
				var resp *http.Response
				var err error
				within(t, 5*time.Second, "call", func() { resp, err = rt.RoundTrip(req) })
				if err != nil {
					t.Fatal(err)
				}
				readDone := make(chan error, 1)
				go func() { _, err := io.ReadAll(resp.Body); readDone <- err }()
				time.Sleep(30 * time.Millisecond)
				within(t, 3*time.Second, "Close while Read blocked", func() { _ = resp.Body.Close() })
				select {
				case err := <-readDone:
					if err == nil {
						t.Error("blocked Read ended cleanly after Close")
					}
				case <-time.After(3 * time.Second):
					t.Fatal("Read still blocked 3s after Close")
				}
				_ = resp.Body.Close()
				if n, err := resp.Body.Read(make([]byte, 8)); err == nil {
					t.Errorf("Read after Close: %d bytes, nil error", n)
				}
			})
		}
	}
}

// failingReader gives n bytes then an error.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'z'
	}
	f.n -= k
	return k, nil
}

// A replayable request body that fails mid-read: the call fails with that error and the
// server never receives a truncated body as a complete request.
func TestRequestBodyFailsMidRead(t *testing.T) {
	var complete atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			complete.Add(1)
		}
	})
	boom := errors.New("disk gone")
	for _, method := range []string{"PUT", "POST"} {
		t.Run(method, func(t *testing.T) {
			complete.Store(0)
			c, _, _ := newClient(t, newExec(3, hedge(time.Millisecond)))
			req, _ := http.NewRequest(method, srv.URL, &failingReader{n: 5000, err: boom})
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("status %d for a body that failed", resp.StatusCode)
			}
			if !errors.Is(err, boom) {
				t.Logf("err %v does not wrap the body's error", err)
			}
			time.Sleep(50 * time.Millisecond)
			if n := complete.Load(); n != 0 {
				t.Fatalf("server received %d complete requests from a body that failed", n)
			}
		})
	}
}

// 503 answered before the request body is read (Expect: 100-continue and not): the next
// try still sends the whole body.
func TestRetryAfterUnreadRequestBody(t *testing.T) {
	body := pattern(2<<20+3, 8)
	for _, expect := range []bool{false, true} {
		for _, getBody := range []bool{true, false} {
			t.Run("expect="+strconv.FormatBool(expect)+"/getBody="+strconv.FormatBool(getBody), func(t *testing.T) {
				var hits atomic.Int32
				srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
					if hits.Add(1) < 3 {
						w.Header().Set("Connection", "close")
						w.WriteHeader(503)
						return
					}
					b, _ := io.ReadAll(r.Body)
					_, _ = io.WriteString(w, sum(b))
				})
				e := newExec(3)
				base := &http.Transport{ExpectContinueTimeout: time.Second}
				t.Cleanup(base.CloseIdleConnections)
				c := &http.Client{Transport: newRT(e, base, 4<<20)}
				var rdr io.Reader = bytes.NewReader(body)
				if !getBody {
					rdr = &onlyReader{bytes.NewReader(body)}
				}
				req, _ := http.NewRequest("PUT", srv.URL, rdr)
				if expect {
					req.Header.Set("Expect", "100-continue")
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != sum(body) {
					t.Fatalf("status %d after %d tries: %q", resp.StatusCode, hits.Load(), b)
				}
			})
		}
	}
}
