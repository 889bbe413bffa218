package rhttpattack

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// "That read [of a body without GetBody into the replay buffer], like the whole call,
// ends when the request's context or the policy's deadlines do, even if the body
// blocks." With only a per-attempt deadline set, a body that blocks forever.
func TestBlockingBodyPerAttemptDeadline(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	for _, name := range []string{"perAttempt", "perAttemptHedged"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3, perAttempt(150*time.Millisecond))
			if name == "perAttemptHedged" {
				e = newExec(3, perAttempt(150*time.Millisecond), hedge(10*time.Millisecond))
			}
			_, rt, _ := newClient(t, e)
			pr, pw := io.Pipe()
			go func() { _, _ = pw.Write([]byte("partial")) }()
			defer pw.Close()
			req, _ := http.NewRequest("PUT", srv.URL, pr)
			done := make(chan error, 1)
			go func() {
				resp, err := rt.RoundTrip(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("success with a body that never ends")
				}
				t.Logf("ended: %v", err)
			case <-time.After(3 * time.Second):
				_ = pw.CloseWithError(io.ErrClosedPipe)
				<-done
				t.Fatal("a blocking body held the call 3s under a 150ms per-attempt deadline (3 attempts)")
			}
		})
	}
}
