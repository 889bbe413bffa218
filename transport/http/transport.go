package rhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
)

// Option configures a Transport.
type Option func(*Transport)

// WithKeyFunc derives each request's key, e.g. from a route template
// ("users.Get" for GET /users/{id}). Keys must stay of low cardinality:
// never build them from raw URLs or IDs. The fixed key is used when f
// returns "".
func WithKeyFunc(f func(*http.Request) string) Option { return func(t *Transport) { t.keyFunc = f } }

// AllowNonIdempotent lets POST and PATCH requests be retried and hedged
// like idempotent ones. Use it only when the server deduplicates.
func AllowNonIdempotent() Option { return func(t *Transport) { t.allowNonIdempotent = true } }

// MaxReplayBody bounds the body buffered for a request without GetBody
// (default 1 MiB).
func MaxReplayBody(n int64) Option { return func(t *Transport) { t.maxBody = n } }

// WithClock sets the clock HTTP-date Retry-After values are read against.
func WithClock(c clock.Clock) Option { return func(t *Transport) { t.clock = clock.Or(c) } }

// Transport is an http.RoundTripper that runs every request through a
// recourse executor under its key's policy.
type Transport struct {
	exec               *recourse.Executor
	key                string
	keyFunc            func(*http.Request) string
	base               http.RoundTripper
	allowNonIdempotent bool
	maxBody            int64
	clock              clock.Clock

	ep  endpoint.Endpoint // for the fixed key
	eps sync.Map          // derived key -> endpoint.Endpoint
	n   int               // entries in eps, guarded by mu
	mu  sync.Mutex
}

// maxDerivedKeys bounds the endpoints cached for derived keys.
const maxDerivedKeys = 1024

// NewTransport returns a RoundTripper that sends requests through base
// (http.DefaultTransport if nil) under key's policy on exec. The concrete
// type is *Transport.
func NewTransport(exec *recourse.Executor, key string, base http.RoundTripper, opts ...Option) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{exec: exec, key: key, base: base, maxBody: DefaultMaxReplayBody, clock: clock.Real{}}
	for _, o := range opts {
		o(t)
	}
	t.ep = exec.Endpoint(key, t.attempt)
	return t
}

// NewClient returns an *http.Client whose requests run under key's policy.
func NewClient(exec *recourse.Executor, key string, opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(exec, key, nil, opts...)}
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Idempotent reports whether req may be sent more than once: its method
// is GET, HEAD, OPTIONS, TRACE, PUT or DELETE, or it carries an
// Idempotency-Key header.
func Idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// RoundTrip sends req under its key's policy.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ep := t.endpointFor(req)
	ctx := req.Context()
	if !t.allowNonIdempotent && !Idempotent(req) {
		ctx = endpoint.AtMostOnce(ctx)
	}
	send, err := replayable(req, t.maxBody)
	if err != nil {
		return nil, err
	}
	if send == req && hasBody(req) {
		defer req.Body.Close() // every try reads a body from GetBody
	}
	resp, err := ep(ctx, send)
	r, _ := resp.(*response)
	if err == nil {
		if r == nil {
			return nil, fmt.Errorf("rhttp: no response (%T)", resp)
		}
		return r.Response, nil
	}
	var se *StatusError
	if r != nil && errors.As(err, &se) {
		return r.Response, nil // a final failed status is a response, not an error
	}
	if r != nil {
		r.Discard()
	}
	return nil, err
}

func (t *Transport) endpointFor(req *http.Request) endpoint.Endpoint {
	if t.keyFunc == nil {
		return t.ep
	}
	key := t.keyFunc(req)
	if key == "" || key == t.key {
		return t.ep
	}
	if ep, ok := t.eps.Load(key); ok {
		return ep.(endpoint.Endpoint)
	}
	ep := t.exec.Endpoint(key, t.attempt)
	t.mu.Lock()
	if t.n < maxDerivedKeys {
		if prev, loaded := t.eps.LoadOrStore(key, ep); loaded {
			ep = prev.(endpoint.Endpoint)
		} else {
			t.n++
		}
	}
	t.mu.Unlock()
	return ep
}

// attempt sends one try: a clone of the request with its own body.
func (t *Transport) attempt(ctx context.Context, request any) (any, error) {
	req := request.(*http.Request)
	out := req.Clone(ctx)
	if hasBody(req) {
		b, err := req.GetBody()
		if err != nil {
			return nil, middleware.Permanent(fmt.Errorf("rhttp: replaying request body: %w", err))
		}
		out.Body = b
	}
	hr, err := t.base.RoundTrip(out)
	if err != nil {
		if isCertificateError(err) {
			return nil, middleware.Permanent(err)
		}
		return nil, err
	}
	r := newResponse(hr)
	if IsSuccessStatus(hr.StatusCode) {
		return r, nil
	}
	r.bufferBody()
	se := &StatusError{Code: hr.StatusCode, Status: hr.Status}
	if d, ok := ParseRetryAfter(hr.Header.Get("Retry-After"), t.clock.Now()); ok {
		se.After = d
		if d == 0 {
			se.After = time.Nanosecond // "retry now" still overrides the backoff
		}
	}
	if IsRetryableStatus(hr.StatusCode) {
		return r, se
	}
	return r, middleware.Permanent(se)
}
