package rgrpc

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/recourse-go/recourse/middleware"
)

// ServerOption configures a Shedder.
type ServerOption func(*Shedder)

// ShedKey sets how a call's key is found from its full method name
// ("/pkg.Service/Method"); the default is KeyFromMethod
// ("pkg.Service.Method"), one limiter per method.
func ShedKey(f func(fullMethod string) string) ServerOption {
	return func(s *Shedder) {
		if f != nil {
			s.key = f
		}
	}
}

// ShedPushback sets the delay a shed call is told to wait before trying
// again, sent in the grpc-retry-pushback-ms trailer (default 1s; 0 or
// less sends no trailer, and then a client following gRPC's retry design
// does not retry the RESOURCE_EXHAUSTED at all). Each shed call is told a
// delay drawn uniformly from [d, 1.25 d], so that clients shed together do
// not all come back together.
func ShedPushback(d time.Duration) ServerOption {
	return func(s *Shedder) { s.pushback = d }
}

// OnShed sets a function called for every call shed, with its full
// method, key and the limiter's error (for metrics or logs). It runs on
// the call's goroutine before the error is returned.
func OnShed(f func(ctx context.Context, fullMethod, key string, err error)) ServerOption {
	return func(s *Shedder) { s.onShed = f }
}

// Shedder is server-side admission control for gRPC: its interceptors
// run each call under a middleware.Limiter chosen by the call's method
// key, and end the calls the limiter refuses with RESOURCE_EXHAUSTED and
// a grpc-retry-pushback-ms trailer, without calling the handler. A
// recourse client (UnaryClientInterceptor) reads that as retryable and
// waits the pushback before its next try, so the two back off together.
//
// Work counts as dropped for the limiter (see middleware.Limiter) when
// the handler ends with DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or
// UNAVAILABLE, or the call's context ended before it returned. A stream
// holds its room until its handler returns.
type Shedder struct {
	limiters func(key string) middleware.Limiter
	key      func(string) string
	pushback time.Duration
	pushMs   int64 // the pushback in whole milliseconds; 0: no trailer
	onShed   func(context.Context, string, string, error)
}

// NewShedder returns a Shedder taking each key's limiter from limiters,
// e.g. middleware.PerKey(func(string) middleware.Limiter { return
// middleware.NewAdaptiveLimit() }). A nil limiters, or a nil limiter for
// a key, sheds nothing.
func NewShedder(limiters func(key string) middleware.Limiter, opts ...ServerOption) *Shedder {
	s := &Shedder{limiters: limiters, key: KeyFromMethod, pushback: time.Second}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	if s.pushback > 0 {
		s.pushMs = int64((s.pushback + time.Millisecond - 1) / time.Millisecond)
	}
	return s
}

// UnaryServerInterceptor returns the interceptor for unary calls:
//
//	grpc.NewServer(grpc.ChainUnaryInterceptor(shedder.UnaryServerInterceptor()))
func (s *Shedder) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		release, err := s.admit(ctx, info.FullMethod, func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
		if err != nil {
			return nil, err
		}
		var resp any
		defer func() { release(dropped(ctx, err)) }()
		resp, err = handler(ctx, req)
		return resp, err
	}
}

// StreamServerInterceptor returns the interceptor for streaming calls:
//
//	grpc.NewServer(grpc.ChainStreamInterceptor(shedder.StreamServerInterceptor()))
func (s *Shedder) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ctx := ss.Context()
		release, err := s.admit(ctx, info.FullMethod, ss.SetTrailer)
		if err != nil {
			return err
		}
		defer func() { release(dropped(ctx, err)) }()
		return handler(srv, ss)
	}
}

// admit takes room for a call, or returns the status error that sheds it
// (after setting the pushback trailer with setTrailer).
func (s *Shedder) admit(ctx context.Context, method string, setTrailer func(metadata.MD)) (func(bool), error) {
	if s.limiters == nil {
		return func(bool) {}, nil
	}
	key := s.key(method)
	l := s.limiters(key)
	if l == nil {
		return func(bool) {}, nil
	}
	release, err := l.Acquire(ctx)
	if err == nil {
		if release == nil {
			release = func(bool) {}
		}
		return release, nil
	}
	if s.onShed != nil {
		s.onShed(ctx, method, key, err)
	}
	if ctx.Err() != nil && !errors.Is(err, middleware.ErrBulkheadFull) {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s.pushMs > 0 {
		ms := s.pushMs + rand.Int64N(s.pushMs/4+1) // spread: see ShedPushback
		setTrailer(metadata.Pairs(PushbackTrailer, strconv.FormatInt(ms, 10)))
	}
	return nil, status.Error(codes.ResourceExhausted, "overloaded: retry later")
}

// dropped reports whether a call's end is a sign of overload.
func dropped(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Unavailable:
		return true
	}
	return false
}
