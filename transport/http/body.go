package rhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// ErrBodyTooLarge is returned when a request body without GetBody is too
// large to buffer for replay.
var ErrBodyTooLarge = errors.New("rhttp: request body too large to replay across tries")

// DefaultMaxReplayBody bounds the request body buffered for replay.
const DefaultMaxReplayBody = 1 << 20

// maxErrorBody bounds the body kept from a failed status.
const maxErrorBody = 64 << 10

func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// replayable returns a request whose body can be read once per try: the
// caller's own if it has GetBody, else a copy over a buffer of its body
// (read in full and closed here).
func replayable(req *http.Request, limit int64) (*http.Request, error) {
	if !hasBody(req) || req.GetBody != nil {
		return req, nil
	}
	data, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("rhttp: reading request body: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w (more than %d bytes; set Request.GetBody or raise MaxReplayBody)", ErrBodyTooLarge, limit)
	}
	out := *req
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	out.Body, _ = out.GetBody()
	out.ContentLength = int64(len(data))
	return &out, nil
}

// response is one try's *http.Response as it travels through the chain.
// It releases the body of a dropped try (endpoint.Discarder), keeps the
// contexts of the winning try alive until its body is closed
// (endpoint.CancelAdopter), and reports its status for timelines.
type response struct {
	*http.Response
	body *body
}

func newResponse(r *http.Response) *response {
	b := &body{rc: r.Body}
	r.Body = b
	return &response{Response: r, body: b}
}

// Discard drains a little of the body, so the connection can be reused,
// and closes it.
func (r *response) Discard() {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.body, maxErrorBody))
	_ = r.body.Close()
}

// AdoptCancel defers cancel until the body is closed.
func (r *response) AdoptCancel(cancel context.CancelFunc) bool { return r.body.adopt(cancel) }

// AttemptStatus returns the status code.
func (r *response) AttemptStatus() string { return strconv.Itoa(r.StatusCode) }

// bufferBody replaces the body with an in-memory copy of up to
// maxErrorBody bytes and releases the connection.
func (r *response) bufferBody() {
	r.body.mu.Lock()
	defer r.body.mu.Unlock()
	data, _ := io.ReadAll(io.LimitReader(r.body.rc, maxErrorBody))
	_ = r.body.rc.Close()
	r.body.rc = io.NopCloser(bytes.NewReader(data))
}

// body wraps a response body: closing it also releases the contexts the
// response adopted.
type body struct {
	mu      sync.Mutex
	rc      io.ReadCloser
	cancels []context.CancelFunc
	closed  bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	rc := b.rc
	b.mu.Unlock()
	return rc.Read(p)
}

func (b *body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cancels := b.cancels
	b.cancels = nil
	rc := b.rc
	b.mu.Unlock()
	err := rc.Close()
	for _, c := range cancels {
		c()
	}
	return err
}

func (b *body) adopt(cancel context.CancelFunc) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cancel()
		return true
	}
	b.cancels = append(b.cancels, cancel)
	return true
}
