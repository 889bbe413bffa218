package rhttpattack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

const key = "atk.Get"

// newExec: n attempts, 1ms backoff, unlimited budget, plus extra options.
func newExec(n int, extra ...policy.Option) *recourse.Executor {
	opts := []policy.Option{
		policy.MaxAttempts(n),
		policy.Backoff(time.Millisecond, 2*time.Millisecond, 2),
		policy.WithBudget(policy.BudgetUnlimited),
	}
	return recourse.NewExecutor(recourse.WithPolicy(key, append(opts, extra...)...))
}

func hedge(d time.Duration) policy.Option {
	return policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: d, MaxHedges: 1})
}

// newClient returns a client over a fresh base transport, closed at cleanup.
func newClient(t *testing.T, e *recourse.Executor, opts ...rhttp.Option) (*http.Client, http.RoundTripper, *http.Transport) {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rt := rhttp.NewTransport(e, key, base, opts...)
	return &http.Client{Transport: rt}, rt, base
}

// server starts an httptest server counting new connections.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:8]) }

func pattern(n int, seed byte) []byte {
	b := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), n/36+1)[:n]
	for i := range b {
		b[i] += seed
	}
	return b
}

// within fails the test if f does not return within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

func perAttempt(d time.Duration) policy.Option { return policy.TimeoutPerAttempt(d) }
func overall(d time.Duration) policy.Option    { return policy.OverallTimeout(d) }
func hedgeNone() policy.Option                 { return policy.WithHedge(policy.HedgePolicy{}) }

func maxRetryAfter(d time.Duration) policy.Option { return policy.MaxRetryAfter(d) }

func newRT(e *recourse.Executor, base http.RoundTripper, maxReplay int64) http.RoundTripper {
	return rhttp.NewTransport(e, key, base, rhttp.MaxReplayBody(maxReplay))
}
