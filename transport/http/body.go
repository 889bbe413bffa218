package rhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/middleware"
)

// ErrBodyTooLarge is returned when a request body without GetBody is too
// large to buffer for replay.
var ErrBodyTooLarge = errors.New("rhttp: request body too large to replay across tries")

// DefaultMaxReplayBody bounds the request body buffered for replay.
const DefaultMaxReplayBody = 1 << 20

// A response dropped by the chain (a failed try the retry loop moves past,
// a hedge that lost) is drained of at most maxDrain bytes, for at most
// drainTimeout, so that its connection can be reused; a longer or slower
// body is cut off instead, closing its connection.
const (
	maxDrain     = 64 << 10
	drainTimeout = 50 * time.Millisecond
)

// errDiscarded is the cause a dropped try's request is cancelled with.
var errDiscarded = errors.New("rhttp: response discarded")

func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// causeOf returns why ctx ended.
func causeOf(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// response is one try's *http.Response as it travels through the chain.
// It releases the body of a dropped try (endpoint.Discarder), keeps the
// contexts of the winning try alive until its body is closed
// (endpoint.CancelAdopter), and reports its status for timelines.
type response struct {
	*http.Response
	body    *body       // nil when there is no body to read (http.NoBody)
	claimed atomic.Bool // drained (or being drained) by Discard or release
}

// newResponse wraps hr, whose request was sent under tr. A response
// without a body keeps http.NoBody and releases tr at once; a 101
// Switching Protocols keeps a writable body.
func newResponse(hr *http.Response, tr *try) *response {
	r := &tr.resp
	r.Response = hr
	if hr.Body == http.NoBody {
		tr.release()
		return r
	}
	b := &tr.body
	b.rc, b.try, b.length = hr.Body, tr, hr.ContentLength
	if rwc, ok := hr.Body.(io.ReadWriteCloser); ok && hr.StatusCode == http.StatusSwitchingProtocols {
		b.upgrade = true
		hr.Body = &upgradeBody{body: b, rwc: rwc}
	} else {
		hr.Body = b
	}
	r.body = b
	return r
}

// Discard drains a little of the body, so the connection can be reused,
// and closes it.
func (r *response) Discard() { r.drain(drainTimeout) }

// drain reads what is left of a short body for at most within, and
// closes it. Only the first of Discard and release to come drains.
func (r *response) drain(within time.Duration) {
	b := r.body
	if b == nil || !r.claimed.CompareAndSwap(false, true) {
		return
	}
	if b.ahead != nil && b.ahead.finished() {
		_ = b.Close() // read to its end by peek: nothing left on the wire
		return
	}
	if r.StatusCode != http.StatusSwitchingProtocols && r.ContentLength <= maxDrain {
		cut := startCut(b.try, within)
		b.drained = io.LimitedReader{R: b, N: maxDrain + 1} // held here: io.CopyN would allocate one
		discardBody(&b.drained)
		cut.stop()
	}
	_ = b.Close()
}

// discardBody reads r to its end for nothing. The body is being dropped:
// a panic in its Read only ends the read (Close follows), rather than
// escaping into a call that has its answer already.
func discardBody(r io.Reader) {
	defer func() { _ = recover() }()
	_, _ = io.Copy(io.Discard, r)
}

// release is called by the next try of the call before it is sent: r,
// the failed response of an earlier try, is then certain to be dropped by
// the chain (a try that has run supersedes it), so its connection can go
// back to the pool now, for this try. A body read ahead is awaited
// briefly (settle); another is drained for at most peekWait.
func (r *response) release(ctx context.Context) {
	b := r.body
	if b == nil {
		return
	}
	if a := b.ahead; a != nil {
		a.settle(ctx)
		if a.finished() && r.claimed.CompareAndSwap(false, true) {
			_ = b.Close()
		}
		return // a slow body: the chain's Discard cuts it
	}
	r.drain(peekWait)
}

// AdoptCancel defers cancel until the body is closed. A response without
// a body adopts nothing.
func (r *response) AdoptCancel(cancel context.CancelFunc) bool {
	if r.body == nil {
		return false
	}
	return r.body.adopt(cancel)
}

// AdoptFailedCancel is AdoptCancel for the response of a failed try (a
// failed status), which the chain may return to the caller: the contexts
// it was sent under stay alive until its body is closed — by the caller,
// or by the chain when it drops the response (Discard).
func (r *response) AdoptFailedCancel(cancel context.CancelFunc) bool { return r.AdoptCancel(cancel) }

// AttemptStatus returns the status code.
func (r *response) AttemptStatus() string { return strconv.Itoa(r.StatusCode) }

// body wraps a response body: closing it also ends its try's context and
// releases the contexts the response adopted.
type body struct {
	rc     io.ReadCloser
	try    *try
	length int64 // the response's ContentLength; -1 if unknown

	ahead *ahead // set by peek

	drained io.LimitedReader // what drain reads the body through

	upgrade bool // a 101's: its connection stays in use after EOF

	mu      sync.Mutex
	cancels []context.CancelFunc
	closed  bool
	ended   bool // read to its end: the try and what it adopted are released
}

// peekChunk is the most peek reads at once.
const peekChunk = 4 << 10

// peek starts reading the first maxDrain bytes of the body of a failed
// try that may be retried, in a goroutine that ends with that read, so
// that a short body is read to its end and its connection goes back to
// the pool while the retry loop waits, before the next try needs one. The
// bytes read ahead are read first, as they arrive: the body stays whole
// and streamed.
func (b *body) peek() {
	a := &ahead{ended: make(chan struct{})}
	a.cond.L = &a.mu
	b.ahead = a
	size := peekChunk
	if n := b.length; n >= 0 && n < peekChunk {
		size = int(n) + 1 // room to see the end of the body in the same read
	}
	go func() {
		defer func() {
			// A body whose Read panics must not take the process down from
			// a goroutine of ours: the panic becomes the body's error, which
			// its reader (the caller, for a final failed response) gets.
			if p := recover(); p != nil {
				a.mu.Lock()
				a.err, a.done = middleware.NewPanicError("op", "", p), true
				a.mu.Unlock()
				a.cond.Broadcast()
				close(a.ended)
			}
		}()
		chunk := make([]byte, size)
		for total := 0; ; {
			n, err := b.rc.Read(chunk)
			total += n
			a.mu.Lock()
			if !a.closed {
				a.buf = append(a.buf, chunk[:n]...)
			}
			a.err, a.done = err, err != nil || total > maxDrain
			done := a.done
			a.mu.Unlock()
			a.cond.Broadcast()
			if done {
				close(a.ended)
				return
			}
		}
	}()
}

// ahead is the head of a body, read ahead by peek.
type ahead struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte        // read ahead, not yet read by the caller
	err    error         // the error that ended the read ahead, if any
	done   bool          // no more is read ahead; the body goes on if err is nil
	ended  chan struct{} // closed once done
	closed bool          // the body was closed: what was read ahead is dropped
}

// peekWait bounds how long a try waits for the previous try's failed
// body to be read to its end, so that the connection it holds goes back
// to the pool before the try needs one.
const peekWait = 5 * time.Millisecond

// settle waits until the read ahead has ended, ctx ends or peekWait
// passes.
func (a *ahead) settle(ctx context.Context) {
	select {
	case <-a.ended:
		return
	default:
	}
	t := time.NewTimer(peekWait)
	defer t.Stop()
	select {
	case <-a.ended:
	case <-ctx.Done():
	case <-t.C:
	}
}

// finished reports whether peek read the body to its end.
func (a *ahead) finished() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done && a.err == io.EOF
}

// Read reads the body. At its end (io.EOF), the try's context and the
// deadlines it adopted are released, as net/http releases a request's
// resources at the end of its body: a caller that reads a body to its end
// and never closes it holds nothing past that.
func (b *body) Read(p []byte) (int, error) {
	n, err := b.read(p)
	if err == io.EOF && !b.upgrade {
		b.end()
	}
	return n, err
}

// end releases the try and runs the adopted cancel functions, once, when
// the body has been read to its end.
func (b *body) end() {
	b.mu.Lock()
	if b.closed || b.ended {
		b.mu.Unlock()
		return
	}
	b.ended = true
	cancels := b.cancels
	b.cancels = nil
	b.mu.Unlock()
	b.releaseTry(cancels)
}

// releaseTry ends the try's context and runs the cancel functions the body
// adopted (taken from it under mu, so each runs once).
func (b *body) releaseTry(cancels []context.CancelFunc) {
	b.try.release()
	for _, c := range cancels {
		c()
	}
}

func (b *body) read(p []byte) (int, error) {
	if a := b.ahead; a != nil {
		a.mu.Lock()
		for len(a.buf) == 0 && !a.done && !a.closed {
			a.cond.Wait()
		}
		if a.closed {
			a.mu.Unlock()
			return b.rc.Read(p) // net/http's error for a closed body
		}
		n := copy(p, a.buf)
		a.buf = a.buf[n:]
		err, rest := a.err, len(a.buf) > 0
		a.mu.Unlock()
		switch {
		case n > 0 || rest:
			return n, nil
		case err != nil:
			return 0, err
		}
	}
	return b.rc.Read(p)
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
	b.mu.Unlock()
	if a := b.ahead; a != nil {
		a.mu.Lock()
		a.closed, a.buf = true, nil
		a.mu.Unlock()
		a.cond.Broadcast()
	}
	err := b.rc.Close()
	b.releaseTry(cancels)
	return err
}

func (b *body) adopt(cancel context.CancelFunc) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.ended {
		cancel()
		return true
	}
	b.cancels = append(b.cancels, cancel)
	return true
}

// upgradeBody is the body of a 101 Switching Protocols response: like
// net/http's, it is an io.ReadWriteCloser over the upgraded connection.
type upgradeBody struct {
	*body
	rwc io.ReadWriteCloser
}

// Write writes to the upgraded connection.
func (b *upgradeBody) Write(p []byte) (int, error) { return b.rwc.Write(p) }

// CloseWrite shuts down the writing side of the upgraded connection, if
// it supports that.
func (b *upgradeBody) CloseWrite() error {
	if cw, ok := b.rwc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("CloseWrite: %w", http.ErrNotSupported)
}

// replayBuffer reads a request body without GetBody once, for every try
// to replay. The first try to need it starts the read in a goroutine;
// each try waits for it under its own context, so neither the caller's
// context nor the policy's deadlines are ignored while a body blocks.
// RoundTrip closes the body when it returns, which ends a read still
// blocked in it.
type replayBuffer struct {
	src    io.Reader
	length int64 // the request's ContentLength; ≤ 0 if unknown
	limit  int64

	once sync.Once
	done chan struct{}
	data []byte
	err  error
}

// get returns the body, waiting at most until ctx ends.
func (b *replayBuffer) get(ctx context.Context) ([]byte, error) {
	b.once.Do(b.start)
	select {
	case <-b.done:
		return b.data, b.err
	default:
	}
	select {
	case <-b.done:
		return b.data, b.err
	case <-ctx.Done():
		return nil, causeOf(ctx)
	}
}

func (b *replayBuffer) start() {
	b.done = make(chan struct{})
	if b.length > b.limit {
		b.err = b.tooLarge()
		close(b.done)
		return
	}
	go b.fill()
}

func (b *replayBuffer) fill() {
	defer close(b.done)
	n := b.limit + 1
	if b.length > 0 {
		n = b.length
	}
	data, err := io.ReadAll(io.LimitReader(b.src, n))
	switch {
	case err != nil:
		b.err = fmt.Errorf("rhttp: reading request body: %w", err)
	case b.length > 0 && int64(len(data)) != b.length:
		b.err = fmt.Errorf("rhttp: ContentLength=%d with Body length %d", b.length, len(data))
	case int64(len(data)) > b.limit:
		b.err = b.tooLarge()
	default:
		b.data = data
	}
}

func (b *replayBuffer) tooLarge() error {
	return fmt.Errorf("%w (more than %d bytes; set Request.GetBody or raise MaxReplayBody)", ErrBodyTooLarge, b.limit)
}

// cutter ends the try it is given when its timer fires: the bound of a
// drain. Cutters whose timer was stopped in time are reused, so that a
// drain allocates no timer of its own.
type cutter struct {
	timer  *time.Timer
	target atomic.Pointer[try]
}

var cutters = sync.Pool{New: func() any {
	c := new(cutter)
	c.timer = time.AfterFunc(time.Hour, c.fire)
	c.timer.Stop()
	return c
}}

// startCut ends tr after within, unless stopped before.
func startCut(tr *try, within time.Duration) *cutter {
	c := cutters.Get().(*cutter)
	c.target.Store(tr)
	c.timer.Reset(within)
	return c
}

func (c *cutter) fire() {
	if tr := c.target.Swap(nil); tr != nil {
		tr.end(context.Canceled, errDiscarded)
	}
}

// stop disarms c. A cutter whose timer has fired (or is firing) is
// dropped: its fire may still be running.
func (c *cutter) stop() {
	if c.timer.Stop() {
		c.target.Store(nil)
		cutters.Put(c)
	}
}
