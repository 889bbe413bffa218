package rgrpc

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
)

// StreamClientInterceptor returns an interceptor that retries streams
// under their key's policy on exec, only before the first response
// message (see the package documentation).
func StreamClientInterceptor(exec *recourse.Executor, opts ...Option) grpc.StreamClientInterceptor {
	cfg := &config{}
	for _, o := range opts {
		o(cfg)
	}
	opens := &endpoints{exec: exec, next: openAttempt}
	firsts := &endpoints{exec: exec, next: firstAttempt}
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		key := cfg.keyFor(method)
		ctx = endpoint.WithoutHedging(ctx)
		o := &opening{desc: desc, cc: cc, method: method, streamer: streamer, opts: callOpts}
		if desc.ClientStreams {
			// The client sends many messages: only opening is retried.
			resp, err := opens.get(key)(ctx, o)
			if err != nil {
				return nil, original(err)
			}
			return resp.(*openStream), nil
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
	opts     []grpc.CallOption

	// For server streams: what the caller sent before the first receive.
	sent      []any
	closeSend bool
	recvInto  any // the caller's first message, nil to open only
}

// openStream is an opened stream as a try's response: it owns the
// contexts it was opened under (endpoint.CancelAdopter) and releases them
// when it ends or is dropped (endpoint.Discarder).
type openStream struct {
	grpc.ClientStream
	// single: the server answers one message, so a receive that returns
	// it ends the stream (client streaming, or a desc with neither flag).
	single  bool
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
	cs, err := o.streamer(ctx, o.desc, o.cc, o.method, append(o.opts[:len(o.opts):len(o.opts)], grpc.Trailer(&trailer))...)
	if err != nil {
		return nil, classify(err, trailer)
	}
	return &openStream{ClientStream: cs, single: !o.desc.ServerStreams}, nil
}

// firstAttempt opens a server stream, sends what the caller sent, and
// receives the first message: one try.
func firstAttempt(ctx context.Context, request any) (any, error) {
	o := request.(*opening)
	cs, err := o.streamer(ctx, o.desc, o.cc, o.method, o.opts...)
	if err != nil {
		return nil, classify(err, nil)
	}
	s := &openStream{ClientStream: cs, single: !o.desc.ServerStreams}
	fail := func(err error) (any, error) {
		s.Discard()
		return nil, classify(err, cs.Trailer())
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

	mu  sync.Mutex
	cs  *openStream // once open
	err error       // the error opening ended with
}

// open runs the first try under the policy; recvInto may be nil.
func (l *lazyStream) open(recvInto any) (first bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cs != nil || l.err != nil {
		return false, l.err
	}
	l.o.recvInto = recvInto
	resp, err := l.first(l.ctx, l.o)
	if err != nil {
		l.err = original(err)
		return true, l.err
	}
	l.cs = resp.(*openStream)
	return true, nil
}

func (l *lazyStream) stream() *openStream {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cs
}

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
