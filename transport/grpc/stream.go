package rgrpc

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/tryctx"
)

// StreamClientInterceptor returns an interceptor that retries streams
// under their key's policy on exec (recourse.Default() if nil), only
// before the first response message (see the package documentation).
func StreamClientInterceptor(exec *recourse.Executor, opts ...Option) grpc.StreamClientInterceptor {
	cfg := &config{}
	for _, o := range opts {
		o(cfg)
	}
	exec = orDefault(exec)
	opens := &endpoints{exec: exec, next: openAttempt}
	firsts := &endpoints{exec: exec, next: firstAttempt}
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		key := cfg.keyFor(method)
		ctx = endpoint.WithoutHedging(ctx)
		o := &opening{desc: desc, cc: cc, method: method, streamer: streamer}
		o.opts, o.onFinish = withoutOnFinish(callOpts)
		if desc.ClientStreams {
			// The client sends many messages: only opening is retried.
			resp, err := opens.get(key)(ctx, o)
			return o.opened(resp, err)
		}
		return &lazyStream{ctx: ctx, first: firsts.get(key), o: o}, nil
	}
}

// opening is one stream being opened, the request through the chain.
type opening struct {
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption // the caller's, without onFinish
	onFinish []func(error)     // the caller's grpc.OnFinish functions

	// tries counts the tries started (grpc-previous-rpc-attempts).
	tries atomic.Int32

	// For server streams: what the caller sent before the first receive.
	sent      []any
	closeSend bool
	recvInto  any // the caller's first message, nil to open only
}

// withoutOnFinish takes the grpc.OnFinish options out of opts. Each try
// gets its own instead (tryFinish), and the caller's run once per call:
// when the stream the call returns ends, or with the call's error when no
// stream is returned. opts itself is returned when it holds none.
func withoutOnFinish(opts []grpc.CallOption) ([]grpc.CallOption, []func(error)) {
	var fns []func(error)
	var rest []grpc.CallOption
	for i, o := range opts {
		var f func(error)
		switch o := o.(type) {
		case grpc.OnFinishCallOption:
			f = o.OnFinish
		case *grpc.OnFinishCallOption:
			f = o.OnFinish
		default:
			if rest != nil {
				rest = append(rest, o)
			}
			continue
		}
		if rest == nil {
			rest = append(make([]grpc.CallOption, 0, len(opts)), opts[:i]...)
		}
		fns = append(fns, f)
	}
	if rest == nil {
		return opts, nil
	}
	return rest, fns
}

// tryOpts returns the call options of one try, and the try's tryFinish
// when the caller asked for OnFinish.
func (o *opening) tryOpts(extra ...grpc.CallOption) ([]grpc.CallOption, *tryFinish) {
	opts := append(o.opts[:len(o.opts):len(o.opts)], extra...)
	if len(o.onFinish) == 0 {
		return opts, nil
	}
	tf := &tryFinish{fns: o.onFinish}
	return append(opts, grpc.OnFinish(tf.done)), tf
}

// opened ends the call of the chain that opens a stream: the stream, or
// the error (after which the caller's OnFinish functions run).
func (o *opening) opened(resp any, err error) (*openStream, error) {
	if err != nil {
		err = original(err)
		tryctx.Discard(resp)
		for _, f := range o.onFinish {
			f(err)
		}
		return nil, err
	}
	s := resp.(*openStream)
	s.finish.choose()
	return s, nil
}

// tryFinish is the OnFinish of one try of a stream: it passes the end of
// the stream to the caller's OnFinish functions only if the call returned
// that try's stream.
type tryFinish struct {
	fns []func(error)

	mu       sync.Mutex
	chosen   bool
	finished bool
	err      error
}

// done is the try's grpc.OnFinish.
func (t *tryFinish) done(err error) {
	t.mu.Lock()
	chosen := t.chosen
	t.finished, t.err = true, err
	t.mu.Unlock()
	if chosen {
		t.report(err)
	}
}

// choose marks the try as the one the call returned.
func (t *tryFinish) choose() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.chosen = true
	finished, err := t.finished, t.err
	t.mu.Unlock()
	if finished {
		t.report(err)
	}
}

func (t *tryFinish) report(err error) {
	for _, f := range t.fns {
		f(err)
	}
}

// openStream is an opened stream as a try's response: it owns the
// contexts it was opened under (endpoint.CancelAdopter) and releases them
// when it ends or is dropped (endpoint.Discarder).
type openStream struct {
	grpc.ClientStream
	// single: the server answers one message, so a receive that returns
	// it ends the stream (client streaming, or a desc with neither flag).
	single  bool
	finish  *tryFinish // nil unless the caller asked for OnFinish
	mu      sync.Mutex
	cancels []context.CancelFunc
	ended   bool
	empty   bool // the first receive found the stream over (io.EOF)
}

func (s *openStream) AdoptCancel(c context.CancelFunc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		c()
		return true
	}
	s.cancels = append(s.cancels, c)
	return true
}

func (s *openStream) Discard() { s.end() }

func (s *openStream) end() {
	s.mu.Lock()
	cancels := s.cancels
	s.cancels, s.ended = nil, true
	s.mu.Unlock()
	for _, c := range cancels {
		c()
	}
}

// RecvMsg releases the stream's contexts once the stream is over: on an
// error (io.EOF included), or after the one response of a stream whose
// server sends one (CloseAndRecv), as gRPC itself ends it then.
func (s *openStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || s.single {
		s.end()
	}
	return err
}

// openAttempt opens a stream: one try.
func openAttempt(ctx context.Context, request any) (any, error) {
	o := request.(*opening)
	var trailer metadata.MD
	opts, tf := o.tryOpts(grpc.Trailer(&trailer))
	ctx = withPreviousAttempts(ctx, o.tries.Add(1)-1)
	cs, err := o.streamer(ctx, o.desc, o.cc, o.method, opts...)
	if err != nil {
		return nil, classifyTry(ctx, err, trailer, nil)
	}
	return &openStream{ClientStream: cs, single: !o.desc.ServerStreams, finish: tf}, nil
}

// firstAttempt opens a server stream, sends what the caller sent, and
// receives the first message: one try.
func firstAttempt(ctx context.Context, request any) (any, error) {
	o := request.(*opening)
	opts, tf := o.tryOpts()
	ctx = withPreviousAttempts(ctx, o.tries.Add(1)-1)
	cs, err := o.streamer(ctx, o.desc, o.cc, o.method, opts...)
	if err != nil {
		return nil, classifyTry(ctx, err, nil, nil)
	}
	s := &openStream{ClientStream: cs, single: !o.desc.ServerStreams, finish: tf}
	fail := func(err error) (any, error) {
		s.Discard()
		return nil, classifyTry(ctx, err, cs.Trailer(), nil)
	}
	for _, m := range o.sent {
		if err := cs.SendMsg(m); err != nil && !errors.Is(err, io.EOF) {
			return fail(err)
		}
	}
	if o.closeSend {
		if err := cs.CloseSend(); err != nil {
			return fail(err)
		}
	}
	if o.recvInto != nil {
		if err := cs.RecvMsg(o.recvInto); err != nil {
			if !errors.Is(err, io.EOF) {
				return fail(err)
			}
			s.empty = true // the server ended the stream without messages
			s.end()
		} else if s.single {
			s.end() // its one message was the last
		}
	}
	return s, nil
}

// lazyStream holds a server stream's request until the first RecvMsg,
// then opens it through the executor.
type lazyStream struct {
	ctx   context.Context
	first endpoint.Endpoint
	o     *opening

	mu  sync.Mutex  // held while opening: sends wait for the stream
	cs  *openStream // once open
	err error       // the error opening ended with

	opened atomic.Pointer[openStream] // cs, read without waiting for an opening
}

// open runs the first try under the policy; recvInto may be nil.
func (l *lazyStream) open(recvInto any) (first bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cs != nil || l.err != nil {
		return false, l.err
	}
	l.o.recvInto = recvInto
	l.cs, l.err = l.o.opened(l.first(l.ctx, l.o))
	if l.cs != nil {
		l.opened.Store(l.cs)
	}
	return true, l.err
}

// stream returns the open stream, or nil while none is: it never waits
// for an opening in progress.
func (l *lazyStream) stream() *openStream { return l.opened.Load() }

// SendMsg holds the request until the stream opens.
func (l *lazyStream) SendMsg(m any) error {
	l.mu.Lock()
	if l.cs == nil && l.err == nil {
		l.o.sent = append(l.o.sent, m)
		l.mu.Unlock()
		return nil
	}
	cs, err := l.cs, l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return cs.SendMsg(m)
}

// CloseSend is held until the stream opens.
func (l *lazyStream) CloseSend() error {
	l.mu.Lock()
	if l.cs == nil && l.err == nil {
		l.o.closeSend = true
		l.mu.Unlock()
		return nil
	}
	cs, err := l.cs, l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return cs.CloseSend()
}

// RecvMsg opens the stream on the first call: that receive is retried
// under the policy; later ones are not.
func (l *lazyStream) RecvMsg(m any) error {
	first, err := l.open(m)
	if err != nil {
		return err
	}
	if first {
		if l.stream().empty {
			return io.EOF
		}
		return nil // m holds the first message
	}
	return l.stream().RecvMsg(m)
}

// Header opens the stream if needed (without receiving) and returns its header.
func (l *lazyStream) Header() (metadata.MD, error) {
	if _, err := l.open(nil); err != nil {
		return nil, err
	}
	return l.stream().Header()
}

// Trailer returns the trailer of the open stream.
func (l *lazyStream) Trailer() metadata.MD {
	if cs := l.stream(); cs != nil {
		return cs.Trailer()
	}
	return nil
}

// Context returns the stream's context.
func (l *lazyStream) Context() context.Context {
	if cs := l.stream(); cs != nil {
		return cs.Context()
	}
	return l.ctx
}
