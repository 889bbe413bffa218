package rhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/internal/tryctx"
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
// that may be sent more than once (default DefaultMaxReplayBody; a
// negative n refuses every such body). A request sent at most once is
// streamed whatever its size.
func MaxReplayBody(n int64) Option {
	return func(t *Transport) { t.maxBody, t.maxBodySet = n, true }
}

// WithClock sets the clock HTTP-date Retry-After values are read against.
func WithClock(c clock.Clock) Option { return func(t *Transport) { t.clock = clockx.Or(c) } }

// Transport is an http.RoundTripper that runs every request through a
// recourse executor under its key's policy.
//
// The zero Transport is ready to use, like the zero http.Transport: it
// runs every request under the key "" on the package's default executor
// (see NewTransport) and sends it through http.DefaultTransport. A
// Transport must not be copied after first use.
type Transport struct {
	exec               *recourse.Executor
	key                string
	keyFunc            func(*http.Request) string
	base               http.RoundTripper
	allowNonIdempotent bool
	maxBody            int64
	maxBodySet         bool
	clock              clock.Clock

	setupOnce sync.Once
	ep        endpoint.Endpoint // for the fixed key
	eps       sync.Map          // derived key -> endpoint.Endpoint
	n         int               // entries in eps, guarded by mu
	mu        sync.Mutex
}

// maxDerivedKeys bounds the endpoints cached for derived keys.
const maxDerivedKeys = 1024

// defaultExecutor is the executor of Transports given none.
var defaultExecutor = sync.OnceValue(func() *recourse.Executor { return recourse.NewDefaultExecutor() })

// NewTransport returns a RoundTripper that sends requests through base
// (http.DefaultTransport if nil) under key's policy on exec. A nil exec
// means a package-wide executor made by recourse.NewDefaultExecutor, under
// which keys without a policy run under policy.Defaults(). The concrete
// type is *Transport.
func NewTransport(exec *recourse.Executor, key string, base http.RoundTripper, opts ...Option) http.RoundTripper {
	t := &Transport{exec: exec, key: key, base: base}
	for _, o := range opts {
		if o != nil {
			o(t)
		}
	}
	t.setupOnce.Do(t.setup)
	return t
}

// setup fills in the defaults of the fields left zero.
func (t *Transport) setup() {
	if t.exec == nil {
		t.exec = defaultExecutor()
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if !t.maxBodySet {
		t.maxBody = DefaultMaxReplayBody
	}
	if t.clock == nil {
		t.clock = clock.Real{}
	}
	t.ep = t.exec.Endpoint(t.key, t.attempt)
}

// NewClient returns an *http.Client whose requests run under key's policy
// on exec (the default executor if nil; see NewTransport).
func NewClient(exec *recourse.Executor, key string, opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(exec, key, nil, opts...)}
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *Transport) CloseIdleConnections() {
	t.setupOnce.Do(t.setup)
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Idempotent reports whether req may be sent more than once: its method
// is GET, HEAD, OPTIONS, TRACE, PUT or DELETE, or, as net/http has it, its
// header carries an Idempotency-Key or X-Idempotency-Key entry (even an
// empty one, which net/http does not send).
func Idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// bodyMode says how the tries of a call get the request body.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // no body
	bodyStream                  // one try at most: the caller's body, streamed
	bodyGetBody                 // a body from Request.GetBody per try
	bodyBuffer                  // the caller's body read once into memory
)

// call is one RoundTrip as it travels through the chain: the caller's
// request, never modified, and how its tries get their bodies.
type call struct {
	req    *http.Request
	mode   bodyMode
	handed atomic.Bool // bodyStream: the body went to a try
	buf    *replayBuffer
	closed sync.Once
	prev   atomic.Pointer[response] // the last retryable failed response, until a try releases it

	first      try         // the first try's, allocated with the call
	firstTaken atomic.Bool // first went to a try
}

// newTry returns a try under parent: the call's own for the first try,
// a new one for the others.
func (c *call) newTry(parent context.Context) *try {
	if !c.firstTaken.Load() && c.firstTaken.CompareAndSwap(false, true) {
		tr := &c.first
		tr.start(parent)
		return tr
	}
	return newTry(parent)
}

// closeBody closes the caller's request body, once.
func (c *call) closeBody() { c.closed.Do(func() { c.req.Body.Close() }) }

// errBodyConsumed is a try's error when a streamed body was already sent.
var errBodyConsumed = errors.New("rhttp: request body already sent by an earlier try; it cannot be replayed")

// RoundTrip sends req under its key's policy.
//
// Like any http.RoundTripper it does not modify req, and it closes
// req.Body, even on errors. A request the policy can send only once
// (see Idempotent, AllowNonIdempotent) has its body streamed to the
// server as is. Other requests replay their body on every try, from
// GetBody or from a buffer of up to MaxReplayBody bytes; reading into the
// buffer stops when the request's context or the policy's deadlines end.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.setupOnce.Do(t.setup)
	if req.URL == nil || req.Header == nil {
		// Refused by net/http too, whatever the try: not worth retrying.
		if req.Body != nil {
			req.Body.Close()
		}
		if req.URL == nil {
			return nil, errors.New("rhttp: nil Request.URL")
		}
		return nil, errors.New("rhttp: nil Request.Header")
	}
	key, ep := t.endpointFor(req)
	ctx := req.Context()
	c := &call{req: req}
	once := !t.allowNonIdempotent && !Idempotent(req)
	if hasBody(req) {
		switch {
		case once:
			c.mode = bodyStream
		case req.GetBody != nil:
			c.mode = bodyGetBody
		case t.singleTry(ctx, key):
			c.mode, once = bodyStream, true
		default:
			c.mode = bodyBuffer
			c.buf = &replayBuffer{src: req.Body, length: req.ContentLength, limit: t.maxBody}
		}
	}
	if once {
		ctx = endpoint.AtMostOnce(ctx)
	}
	resp, err := ep(ctx, c)
	r, _ := resp.(*response)
	if c.mode != bodyNone && (c.mode != bodyStream || !c.handed.Load() || r == nil) {
		// The tries had bodies of their own, the streamed body never went
		// out, or no response came back: closing the body also ends a read
		// blocked in it. A streamed body that got a response is the base
		// transport's to close (the try closes it at the latest when its
		// response is closed or its context ends).
		c.closeBody()
	}
	if err == nil {
		if r != nil {
			return r.Response, nil
		}
		if hr, ok := resp.(*http.Response); ok && hr != nil {
			// A fallback's answer (recourse.WithFallback) stands in for
			// the failed call's response, as the caller's to close.
			if hr.Request == nil {
				hr.Request = req
			}
			if hr.Body == nil {
				hr.Body = http.NoBody
			}
			return hr, nil
		}
		tryctx.Discard(resp)
		return nil, fmt.Errorf("rhttp: no response (%T): a fallback for a key used by rhttp must return an *http.Response", resp)
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

// singleTry reports whether key's policy sends every request at most once.
func (t *Transport) singleTry(ctx context.Context, key string) bool {
	cp, err := t.exec.Explain(ctx, key)
	return err == nil && cp != nil && cp.Policy.Retry.MaxAttempts <= 1 && !cp.Policy.Hedge.Enabled
}

func (t *Transport) endpointFor(req *http.Request) (string, endpoint.Endpoint) {
	if t.keyFunc == nil {
		return t.key, t.ep
	}
	key := t.keyFunc(req)
	if key == "" || key == t.key {
		return t.key, t.ep
	}
	if ep, ok := t.eps.Load(key); ok {
		return key, ep.(endpoint.Endpoint)
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
	return key, ep
}

// attempt sends one try: a shallow copy of the caller's request with its
// own body, under a context of its own (see tryContext).
func (t *Transport) attempt(ctx context.Context, request any) (any, error) {
	c := request.(*call)
	var data []byte
	switch c.mode {
	case bodyStream:
		if c.handed.Swap(true) {
			return nil, middleware.Permanent(errBodyConsumed)
		}
	case bodyBuffer:
		var err error
		if data, err = c.buf.get(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, middleware.Permanent(err)
		}
	}
	if p := c.prev.Swap(nil); p != nil {
		p.release(ctx) // its connection back in the pool for this try
	}
	// A shallow copy: a RoundTripper may not modify the request, so the
	// tries share the caller's header, URL and trailer; each has its own
	// context and, below, its own body.
	var (
		tr  *try
		out *http.Request
	)
	if c.mode == bodyBuffer {
		// The replay buffer must not live as long as the response, whose
		// body holds its try: that try and its request (whose GetBody
		// holds the buffer) are allocated apart from the call.
		tr = newTry(ctx)
		out = c.req.WithContext(&tr.ctx)
	} else {
		tr = c.newTry(ctx)
		out = &tr.req
		*out = *c.req.WithContext(&tr.ctx) // inlined: the copy WithContext makes stays on the stack
	}
	switch c.mode {
	case bodyGetBody:
		b, err := c.req.GetBody()
		if err != nil {
			tr.release()
			return nil, middleware.Permanent(fmt.Errorf("rhttp: replaying request body: %w", err))
		}
		out.Body = b
	case bodyBuffer:
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		out.Body, _ = out.GetBody()
		out.ContentLength = int64(len(data))
	}
	switch c.mode {
	case bodyStream:
		// net/http waits for a request body blocked in Read even when the
		// request's context ends; closing the body releases it.
		context.AfterFunc(&tr.ctx, c.closeBody)
	case bodyGetBody:
		context.AfterFunc(&tr.ctx, func() { out.Body.Close() })
	}
	hr, err := t.send(tr, out)
	if err == nil && hr == nil {
		err = errors.New("rhttp: base RoundTripper returned neither a response nor an error")
	}
	if err != nil {
		if tr.ctx.Err() != nil {
			// The try's context ended: that is why it failed, even when
			// the base reports what followed (a request body closed under
			// it), as net/http reports the context's cause.
			if cause := tr.ctx.endCause(); !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%w)", cause, err)
			}
		}
		tr.release()
		if isCertificateError(err) {
			return nil, middleware.Permanent(err)
		}
		return nil, err
	}
	hr.Request = c.req // as net/http: the request the caller passed
	if hr.Body == nil {
		hr.Body = http.NoBody
	}
	if IsSuccessStatus(hr.StatusCode) {
		return newResponse(hr, tr), nil
	}
	// A final failed status goes back to the caller with its body unread:
	// the chain hands it the cancel functions of the contexts it was sent
	// under, as to a successful response (AdoptFailedCancel).
	r := newResponse(hr, tr)
	se := &tr.se
	se.Code, se.Status = hr.StatusCode, hr.Status
	now := false // the server asks for the next try at once
	if d, ok := t.retryAfter(hr.Header); ok {
		se.After = d
		if d == 0 {
			se.After = time.Nanosecond // "retry now" still overrides the backoff
			now = true
		}
	}
	if r.body != nil && IsRetryableStatus(hr.StatusCode) && !tryctx.IsAtMostOnce(ctx) && hr.ContentLength <= maxDrain {
		// A short failed body is read while the retry loop waits (peek),
		// or, when it will not wait, by the next try (release).
		if !now {
			r.body.peek()
		}
		c.prev.Store(r)
	}
	if IsRetryableStatus(hr.StatusCode) {
		return r, se
	}
	return r, middleware.Permanent(se)
}

// send runs the base RoundTripper on out. A panic ends the try first (its
// context, and what the base started on it, end as after any failed try),
// then goes on to the chain's recovery.
func (t *Transport) send(tr *try, out *http.Request) (hr *http.Response, err error) {
	returned := false
	defer func() {
		if !returned {
			tr.release()
		}
	}()
	hr, err = t.base.RoundTrip(out)
	returned = true
	return hr, err
}

// retryAfter reads a response's Retry-After header; the clock is read only
// for an HTTP date.
func (t *Transport) retryAfter(h http.Header) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var now time.Time
	if c := v[0]; c < '0' || c > '9' {
		now = t.clock.Now()
	}
	return ParseRetryAfter(v, now)
}
