package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The paths the HTTP server answers. A call is named by its raw query
// ("c=17"); every client sends the same query on each of a call's tries.
const (
	// PathOK always answers 200 with a two-byte body.
	PathOK = "/ok"
	// PathFlaky answers a call's first request 503 with Retry-After: 0,
	// and its next one 200.
	PathFlaky = "/flaky"
	// PathStall holds a call's first request for Stall (or until the
	// client gives it up) before answering 200, and answers its next one
	// at once.
	PathStall = "/stall"
)

// Stall is how long PathStall holds a call's first request.
const Stall = 50 * time.Millisecond

var (
	okBody          = []byte("ok")
	unavailableBody = []byte("try again")
)

// calls remembers the calls whose first request has been seen.
type calls struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// first reports whether this is call's first request; the second
// forgets the call.
func (c *calls) first(call string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]struct{}{}
	}
	if _, ok := c.seen[call]; ok {
		delete(c.seen, call)
		return false
	}
	c.seen[call] = struct{}{}
	return true
}

// counters are what a server counts for the report.
type counters struct {
	conns    atomic.Int64 // connections accepted
	active   atomic.Int64 // handlers running
	requests atomic.Int64 // requests seen
}

// Conns returns the connections the server has accepted.
func (c *counters) Conns() int64 { return c.conns.Load() }

// Active returns the handlers running now.
func (c *counters) Active() int64 { return c.active.Load() }

// Requests returns the requests (tries) the server has seen.
func (c *counters) Requests() int64 { return c.requests.Load() }

// HTTPServer answers the HTTP paths above, on a keep-alive loopback
// listener (URL) and in memory (RoundTrip, for a client's Transport).
type HTTPServer struct {
	counters
	calls calls
	srv   *httptest.Server
}

// NewHTTPServer starts a loopback server; Close stops it.
func NewHTTPServer() *HTTPServer {
	s := &HTTPServer{}
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	return s
}

// URL returns the loopback server's base URL.
func (s *HTTPServer) URL() string { return s.srv.URL }

// Close stops the loopback server.
func (s *HTTPServer) Close() { s.srv.Close() }

// ServeHTTP answers one request on the loopback server.
func (s *HTTPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.active.Add(1)
	defer s.active.Add(-1)
	s.requests.Add(1)
	switch r.URL.Path {
	case PathFlaky:
		if s.calls.first(r.URL.RawQuery) {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Length", strconv.Itoa(len(unavailableBody)))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(unavailableBody)
			return
		}
	case PathStall:
		if s.calls.first(r.URL.RawQuery) && !wait(r.Context(), Stall) {
			return
		}
	case PathOK:
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", "2")
	_, _ = w.Write(okBody)
}

// wait waits d or until ctx ends, and reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// InMemory returns an http.RoundTripper that answers like the loopback
// server without any socket: what it costs is the same for every client,
// so each client's own cost stands out.
func (s *HTTPServer) InMemory() http.RoundTripper { return memTransport{s} }

type memTransport struct{ s *HTTPServer }

// RoundTrip answers req as ServeHTTP would.
func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := m.s
	s.active.Add(1)
	defer s.active.Add(-1)
	s.requests.Add(1)
	if req.Body != nil {
		_ = req.Body.Close()
	}
	resp := &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Request: req,
	}
	body := okBody
	switch req.URL.Path {
	case PathFlaky:
		if s.calls.first(req.URL.RawQuery) {
			resp.Status, resp.StatusCode = "503 Service Unavailable", http.StatusServiceUnavailable
			resp.Header["Retry-After"] = []string{"0"}
			body = unavailableBody
		}
	case PathStall:
		if s.calls.first(req.URL.RawQuery) && !wait(req.Context(), Stall) {
			return nil, req.Context().Err()
		}
	case PathOK:
	default:
		return nil, errors.New("in-memory server: no such path " + req.URL.Path)
	}
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
