package surfaceattack

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// A caller waiting on a slow shared lookup stops when its own context ends.
func TestWaiterStopsOnOwnContext(t *testing.T) {
	release := make(chan struct{})
	prov := provFunc(func(ctx context.Context, key policy.Key) (policy.Policy, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return onePolicy(key), nil
	})
	exec := recourse.NewExecutor(recourse.WithProvider(prov))
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := exec.Do(ctx, "svc.Slow", func(context.Context) error { return nil })
	if el := time.Since(start); el > time.Second {
		t.Fatalf("caller waited %v for a lookup past its 30ms deadline", el)
	}
	if err == nil {
		t.Logf("OBSERVATION: call ran (fallback) though its deadline passed while waiting: %v", err)
	}
}

// A streamed POST answered early (413, body unread): the request body is
// closed, as net/http does, and the caller gets the 413 with its body.
func TestStreamedPostEarlyAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(413)
		_, _ = io.WriteString(w, "too big")
	}))
	defer srv.Close()
	for _, via := range []string{"net/http", "rhttp"} {
		base := &http.Transport{}
		var rt http.RoundTripper = base
		if via == "rhttp" {
			rt = rhttp.NewTransport(fastExec("k.early"), "k.early", base)
		}
		pr, pw := io.Pipe()
		body := &closeCounter{Reader: pr}
		go func() {
			chunk := make([]byte, 32<<10)
			for i := 0; i < 200; i++ {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", srv.URL, nil)
		req.Body = body
		req.ContentLength = -1
		resp, err := rt.RoundTrip(req)
		if err != nil {
			pw.CloseWithError(err)
			t.Logf("%s: %v", via, err)
			base.CloseIdleConnections()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		deadline := time.Now().Add(2 * time.Second)
		for body.n.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		pw.CloseWithError(errors.New("done"))
		base.CloseIdleConnections()
		if resp.StatusCode != 413 || string(b) != "too big" {
			t.Errorf("%s: %d %q", via, resp.StatusCode, b)
		}
		if body.n.Load() == 0 {
			t.Errorf("%s: request body never closed", via)
		}
	}
}

// GetBody failing on a later try: an error, no panic, body closed.
func TestGetBodyFailsOnRetry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	for _, hedge := range []bool{false, true} {
		key := "k.gb"
		opts := []policy.Option{}
		if hedge {
			opts = append(opts, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 3}))
		}
		c, _ := newClient(t, fastExec(key, opts...), key)
		var calls atomic.Int32
		body := &closeCounter{Reader: strings.NewReader("abc")}
		req, _ := http.NewRequest("PUT", srv.URL, nil)
		req.Body = body
		req.ContentLength = 3
		req.GetBody = func() (io.ReadCloser, error) {
			if calls.Add(1) > 1 {
				return nil, errors.New("cannot rewind")
			}
			return io.NopCloser(strings.NewReader("abc")), nil
		}
		resp, err := c.Do(req)
		if resp != nil {
			resp.Body.Close()
		}
		if body.n.Load() == 0 {
			t.Errorf("hedge=%v: body not closed", hedge)
		}
		t.Logf("hedge=%v: GetBody failing on retry: resp %v err %v", hedge, resp != nil, err)
	}
}
