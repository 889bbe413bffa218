package rhttpattack

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Short failed bodies are read ahead while the retry loop decides. The last
// one must still come back whole: sizes around buffer boundaries, written in
// two parts with a pause, chunked or with a Content-Length, Retry-After 0 or none.
func TestReadAheadFinalBodyWhole(t *testing.T) {
	for _, size := range []int{0, 1, 511, 512, 513, 4095, 4096, 4097, 16 << 10, 64<<10 + 1} {
		for _, pause := range []time.Duration{0, 3 * time.Millisecond, 40 * time.Millisecond} {
			for _, cl := range []bool{false, true} {
				name := strconv.Itoa(size) + "/" + pause.String() + "/cl=" + strconv.FormatBool(cl)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					var hits atomic.Int32
					srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
						n := hits.Add(1)
						b := pattern(size, byte(n))
						w.Header().Set("X-Try", strconv.Itoa(int(n)))
						w.Header().Set("X-Sum", sum(b))
						w.Header().Set("Retry-After", "0")
						if cl {
							w.Header().Set("Content-Length", strconv.Itoa(len(b)))
						}
						w.WriteHeader(503)
						half := len(b) / 2
						_, _ = w.Write(b[:half])
						w.(http.Flusher).Flush()
						time.Sleep(pause)
						_, _ = w.Write(b[half:])
					})
					c, _, _ := newClient(t, newExec(3))
					resp, err := c.Get(srv.URL)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					got, err := io.ReadAll(resp.Body)
					if err != nil || sum(got) != resp.Header.Get("X-Sum") || resp.Header.Get("X-Try") != "3" {
						t.Fatalf("try %s: %d bytes (want %d) err %v", resp.Header.Get("X-Try"), len(got), size, err)
					}
					if cl && resp.ContentLength != int64(size) {
						t.Fatalf("ContentLength %d want %d", resp.ContentLength, size)
					}
				})
			}
		}
	}
}

// A final failed short body, read ahead, then the caller cancels before reading it:
// what is promised is the whole body "which the caller must close"; reading after
// cancel may fail but must not hang or return someone else's bytes.
func TestReadAheadThenCancel(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		_, _ = io.WriteString(w, "short-failed-body")
	})
	for i := 0; i < 20; i++ {
		c, _, _ := newClient(t, newExec(2))
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		var got []byte
		within(t, 5*time.Second, "read after cancel", func() { got, _ = io.ReadAll(resp.Body) })
		resp.Body.Close()
		if len(got) != 0 && string(got) != "short-failed-body"[:len(got)] {
			t.Fatalf("got %q", got)
		}
	}
}

// Dropped bodies that trickle (longer than a brief drain) on many concurrent calls:
// each dropped body is cut, retries go on, the final answer is right. Pooled drain
// timers must never cut a body other than the one they bound.
func TestConcurrentDrainsPooledTimers(t *testing.T) {
	// Second server: odd hits fail with a trickling body, even ones win with a trickling body.
	var hits atomic.Int64
	srv2, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(503)
			for i := 0; i < 10; i++ {
				if _, err := w.Write([]byte("e")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				time.Sleep(3 * time.Millisecond)
			}
			return
		}
		w.WriteHeader(200)
		id := r.URL.Query().Get("id")
		for i := 0; i < 10; i++ {
			if _, err := io.WriteString(w, id+";"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(3 * time.Millisecond)
		}
	})
	c, _, _ := newClient(t, newExec(6))
	const n = 64
	errs := make(chan string, n)
	for g := 0; g < n; g++ {
		go func() {
			id := strconv.Itoa(g)
			want := ""
			for i := 0; i < 10; i++ {
				want += id + ";"
			}
			for k := 0; k < 5; k++ {
				resp, err := c.Get(srv2.URL + "?id=" + id)
				if err != nil {
					errs <- err.Error()
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 503 {
					continue // out of attempts: odd/even interleaving across goroutines
				}
				if err != nil || string(b) != want {
					errs <- "id " + id + ": " + string(b) + " err " + errString(err)
					return
				}
			}
			errs <- ""
		}()
	}
	for g := 0; g < n; g++ {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
