package rgrpc

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
)

// Option configures the interceptors.
type Option func(*config)

type config struct {
	key     string
	keyFunc func(method string) string
}

// WithKey runs every call under key instead of its method's key.
func WithKey(key string) Option { return func(c *config) { c.key = key } }

// WithKeyFunc derives each call's key from its full method name.
func WithKeyFunc(f func(method string) string) Option { return func(c *config) { c.keyFunc = f } }

// KeyFromMethod turns a full method name into a key:
// "/pkg.Service/Method" → "pkg.Service.Method".
func KeyFromMethod(method string) string {
	return strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")
}

func (c *config) keyFor(method string) string {
	switch {
	case c.key != "":
		return c.key
	case c.keyFunc != nil:
		return c.keyFunc(method)
	}
	return KeyFromMethod(method)
}

// maxCachedKeys bounds the endpoints cached per interceptor. Keys are
// meant to be few (one per method); past this many, as with a key
// function that derives keys from something unbounded, endpoints for new
// keys are made per call instead of growing the cache without bound.
const maxCachedKeys = 4096

// endpoints caches one executor endpoint per key (or per method, when
// the key is the method's; see forMethod). One endpoints serves one kind
// of id.
type endpoints struct {
	exec *recourse.Executor
	next endpoint.Endpoint
	m    sync.Map
	n    atomic.Int32 // keys in m
}

// orDefault returns exec, or the package-level default executor if nil.
func orDefault(exec *recourse.Executor) *recourse.Executor {
	if exec == nil {
		return recourse.Default()
	}
	return exec
}

func (e *endpoints) get(key string) endpoint.Endpoint { return e.cached(key, key) }

// forMethod returns the endpoint of a call of method under cfg. Keys
// derived by KeyFromMethod are cached by method, so that a call does not
// pay for building its key's string.
func (e *endpoints) forMethod(cfg *config, method string) endpoint.Endpoint {
	if cfg.key == "" && cfg.keyFunc == nil {
		if ep, ok := e.m.Load(method); ok {
			return ep.(endpoint.Endpoint)
		}
		return e.cached(method, KeyFromMethod(method))
	}
	return e.get(cfg.keyFor(method))
}

// cached returns the endpoint of key, cached under id.
func (e *endpoints) cached(id, key string) endpoint.Endpoint {
	if ep, ok := e.m.Load(id); ok {
		return ep.(endpoint.Endpoint)
	}
	ep := e.exec.Endpoint(key, e.next)
	if e.n.Load() >= maxCachedKeys {
		return ep
	}
	got, loaded := e.m.LoadOrStore(id, ep)
	if !loaded {
		e.n.Add(1)
	}
	return got.(endpoint.Endpoint)
}

// unaryCall is one unary call travelling through the chain as the request.
type unaryCall struct {
	method  string
	req     any
	reply   any
	cc      *grpc.ClientConn
	invoker grpc.UnaryInvoker
	// opts are the caller's call options that only configure a try;
	// those that write results back to the caller are in out instead.
	opts []grpc.CallOption
	out  callOutputs
	// replyType is set when reply is a proto.Message: a hedged try, which
	// runs beside the attempt's primary try, decodes into a reply of its
	// own made from it, and a hedge's winning reply is handed over to the
	// caller's. Primary tries decode into the caller's reply, in place:
	// they never run beside one another.
	replyType protoreflect.MessageType
	// tries counts the tries started (grpc-previous-rpc-attempts).
	tries atomic.Int32
	// first is the result of the call's first try, allocated with the
	// call.
	first unaryResult

	mu   sync.Mutex
	last *unaryResult // the try that returned last
}

// callOutputs are the caller's call options that write a call's results back
// into the caller's variables (grpc.Header, grpc.Trailer, grpc.Peer) or
// report its end (grpc.OnFinish). Tries never get them: each try writes
// into its own unaryResult, and the call copies the chosen try's values
// out once the chain has returned, so hedged tries never write the same
// variable and the caller sees the try whose result it gets.
type callOutputs struct {
	headers  []*metadata.MD
	trailers []*metadata.MD
	peers    []*peer.Peer
	onFinish []func(error)
}

// split sorts opts into the options each try gets and the outputs. opts
// itself is returned when it holds no outputs (the common case).
func split(opts []grpc.CallOption) ([]grpc.CallOption, callOutputs) {
	var out callOutputs
	var in []grpc.CallOption
	for i, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			out.headers = append(out.headers, o.HeaderAddr)
		case *grpc.HeaderCallOption:
			out.headers = append(out.headers, o.HeaderAddr)
		case grpc.TrailerCallOption:
			out.trailers = append(out.trailers, o.TrailerAddr)
		case *grpc.TrailerCallOption:
			out.trailers = append(out.trailers, o.TrailerAddr)
		case grpc.PeerCallOption:
			out.peers = append(out.peers, o.PeerAddr)
		case *grpc.PeerCallOption:
			out.peers = append(out.peers, o.PeerAddr)
		case grpc.OnFinishCallOption:
			out.onFinish = append(out.onFinish, o.OnFinish)
		case *grpc.OnFinishCallOption:
			out.onFinish = append(out.onFinish, o.OnFinish)
		default:
			if in != nil {
				in = append(in, o)
			}
			continue
		}
		if in == nil { // the first output: keep the inputs before it
			in = append(make([]grpc.CallOption, 0, len(opts)), opts[:i]...)
		}
	}
	if in == nil {
		return opts, out
	}
	return in, out
}

// unaryResult is what one try of a unary call produced: the chain's
// response for that try, failed or not.
type unaryResult struct {
	reply   any // the caller's reply, or a hedge's own
	header  metadata.MD
	trailer metadata.MD
	peer    peer.Peer

	trailerOpt grpc.TrailerCallOption
	optBuf     [4]grpc.CallOption // the try's call options, when they fit
	ce         CodeError          // the try's error, when it failed with a status
}

// deliver copies r's values into the caller's variables: the reply only
// when the call succeeded.
func (c *unaryCall) deliver(r *unaryResult, ok bool) {
	for _, h := range c.out.headers {
		if h != nil {
			*h = r.header
		}
	}
	for _, t := range c.out.trailers {
		if t != nil {
			*t = r.trailer
		}
	}
	if r.peer.Addr != nil {
		for _, p := range c.out.peers {
			if p != nil {
				*p = r.peer
			}
		}
	}
	if ok && c.replyType != nil && r.reply != c.reply {
		handOver(c.reply.(proto.Message), r.reply.(proto.Message))
	}
}

// handOver makes dst hold what src holds, without copying it: dst's
// fields are set to src's values (slices, maps and messages shared), so
// src must not be used again. src and dst are of the same type.
func handOver(dst, src proto.Message) {
	proto.Reset(dst)
	d := dst.ProtoReflect()
	s := src.ProtoReflect()
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	if u := s.GetUnknown(); len(u) > 0 {
		d.SetUnknown(u)
	}
}

// UnaryClientInterceptor returns an interceptor that runs each unary call
// under its key's policy on exec (recourse.Default() if nil).
//
// The caller's grpc.Header, grpc.Trailer and grpc.Peer variables receive
// the values of the try whose result the call returns (the winner of a
// hedge race, the last of a run of retries); grpc.OnFinish functions are
// called once, with the call's error.
func UnaryClientInterceptor(exec *recourse.Executor, opts ...Option) grpc.UnaryClientInterceptor {
	cfg := &config{}
	for _, o := range opts {
		o(cfg)
	}
	eps := &endpoints{exec: orDefault(exec), next: unaryAttempt}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		call := &unaryCall{method: method, req: req, reply: reply, cc: cc, invoker: invoker}
		call.opts, call.out = split(callOpts)
		if m, ok := reply.(proto.Message); ok && m.ProtoReflect().IsValid() { // not a typed nil
			call.replyType = m.ProtoReflect().Type()
		} else {
			ctx = endpoint.WithoutHedging(ctx)
		}
		resp, err := eps.forMethod(cfg, method)(ctx, call)
		err = original(err)
		r, _ := resp.(*unaryResult)
		if r == nil { // the chain dropped the last try's result (a wait cut short)
			call.mu.Lock()
			r = call.last
			call.mu.Unlock()
		}
		if r != nil {
			call.deliver(r, err == nil)
		}
		for _, f := range call.out.onFinish {
			f(err)
		}
		return err
	}
}

// PreviousAttemptsHeader is the request header of a retried or hedged
// try that says how many tries of the call were started before it (gRPC's
// retry design, A6). The first try does not send it.
const PreviousAttemptsHeader = "grpc-previous-rpc-attempts"

// withPreviousAttempts adds PreviousAttemptsHeader to the outgoing
// metadata of a try that n tries preceded.
func withPreviousAttempts(ctx context.Context, n int32) context.Context {
	if n <= 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, PreviousAttemptsHeader, strconv.Itoa(int(n)))
}

// unaryAttempt makes one try of a unary call. Its response, even when the
// try fails, is the try's *unaryResult.
func unaryAttempt(ctx context.Context, request any) (any, error) {
	c := request.(*unaryCall)
	n := c.tries.Add(1) - 1
	r := &c.first
	if n > 0 {
		r = new(unaryResult)
	}
	r.reply = c.reply
	if c.replyType != nil {
		if info, _ := endpoint.AttemptFromContext(ctx); info.IsHedge() {
			r.reply = c.replyType.New().Interface()
		} else if n > 0 {
			// An earlier try may have decoded into the caller's reply (a
			// message then an error, or a hedge's primary that lost); no
			// other try touches it now.
			proto.Reset(c.reply.(proto.Message))
		}
	}
	opts := r.optBuf[:0]
	if len(c.opts)+3 > len(r.optBuf) {
		opts = make([]grpc.CallOption, 0, len(c.opts)+3)
	}
	r.trailerOpt.TrailerAddr = &r.trailer
	opts = append(append(opts, c.opts...), &r.trailerOpt)
	if len(c.out.headers) > 0 {
		opts = append(opts, grpc.Header(&r.header))
	}
	if len(c.out.peers) > 0 {
		opts = append(opts, grpc.Peer(&r.peer))
	}
	err := c.invoker(withPreviousAttempts(ctx, n), c.method, c.req, r.reply, c.cc, opts...)
	c.mu.Lock()
	c.last = r
	c.mu.Unlock()
	if err != nil {
		return r, classifyTry(ctx, err, r.trailer, &r.ce)
	}
	return r, nil
}
