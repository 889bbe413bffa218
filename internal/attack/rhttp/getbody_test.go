package rhttpattack

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stuckReader blocks in Read until released or closed (a well-behaved body: Close
// unblocks Read, as net/http needs to abort a request).
type stuckReader struct {
	release chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func (s *stuckReader) Read([]byte) (int, error) {
	select {
	case <-s.release:
		return 0, io.EOF
	case <-s.closed:
		return 0, io.ErrClosedPipe
	}
}

func (s *stuckReader) Close() error { s.once.Do(func() { close(s.closed) }); return nil }

// blockingGetBody: the first GetBody call is immediate, later ones block (how:
// "getBodyBlocks") or return a body whose Read blocks ("bodyReadBlocks") until release.
func blockingGetBody(how string, release chan struct{}) func() (io.ReadCloser, error) {
	var calls atomic.Int32
	return func() (io.ReadCloser, error) {
		if calls.Add(1) == 1 {
			return io.NopCloser(bytes.NewReader([]byte("payload"))), nil
		}
		if how == "getBodyBlocks" {
			<-release
			return io.NopCloser(bytes.NewReader([]byte("payload"))), nil
		}
		return &stuckReader{release: release, closed: make(chan struct{})}, nil
	}
}

// A hedge whose body blocks in Read until Close, while the primary wins:
// RoundTrip returns with the primary's answer, not when the hedge's body
// gives in. (A GetBody that itself blocks holds its try, and so the call,
// as net/http's own calls of GetBody do: the rhttp package doc says so.)
func TestHedgeBodyReadBlocksPrimaryWins(t *testing.T) { hedgeBlocked(t, "bodyReadBlocks") }

func hedgeBlocked(t *testing.T, how string) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		time.Sleep(60 * time.Millisecond)
		_, _ = w.Write(b)
	})
	for _, how := range []string{how} {
		t.Run(how, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			defer free()
			c, _, _ := newClient(t, newExec(2, hedge(5*time.Millisecond)))
			req, _ := http.NewRequest("PUT", srv.URL, bytes.NewReader([]byte("payload")))
			req.GetBody = blockingGetBody(how, release)
			start := time.Now()
			done := make(chan struct{})
			var resp *http.Response
			var err error
			go func() { defer close(done); resp, err = c.Do(req) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Errorf("RoundTrip held %v by a hedge's blocked body after the primary answered", time.Since(start))
				free()
				<-done
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "payload" {
				t.Fatalf("%q", b)
			}
		})
	}
}

// A retry or hedge whose replayed body blocks in Read until Close: the call
// still ends when the caller's context does ("That read, like the whole
// call, ends when the request's context or the policy's deadlines do, even
// if the body blocks").
func TestReplayBodyReadBlocksCallerDeadline(t *testing.T) {
	callerDeadlineBlocked(t, "bodyReadBlocks")
}

func callerDeadlineBlocked(t *testing.T, how string) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.WriteHeader(503)
	})
	for _, how := range []string{how} {
		for _, pol := range []string{"retry", "hedged", "overall"} {
			t.Run(how+"/"+pol, func(t *testing.T) {
				release := make(chan struct{})
				var once sync.Once
				free := func() { once.Do(func() { close(release) }) }
				defer free()
				e := newExec(3)
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				switch pol {
				case "hedged":
					e = newExec(3, hedge(5*time.Millisecond))
				case "overall":
					e = newExec(3, overall(200*time.Millisecond))
					ctx = context.Background()
				}
				_, rt, _ := newClient(t, e)
				req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL, bytes.NewReader([]byte("payload")))
				req.GetBody = blockingGetBody(how, release)
				start := time.Now()
				done := make(chan struct{})
				var resp *http.Response
				go func() { defer close(done); resp, _ = rt.RoundTrip(req) }()
				select {
				case <-done:
				case <-time.After(3 * time.Second):
					t.Errorf("RoundTrip held %v by a blocked GetBody under a 200ms deadline", time.Since(start))
					free()
					<-done
				}
				if resp != nil {
					resp.Body.Close()
				}
			})
		}
	}
}
