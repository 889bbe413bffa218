package rgrpc

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
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

// endpoints caches one executor endpoint per key (keys are few: one per
// method at most).
type endpoints struct {
	exec *recourse.Executor
	next endpoint.Endpoint
	m    sync.Map
}

func (e *endpoints) get(key string) endpoint.Endpoint {
	if ep, ok := e.m.Load(key); ok {
		return ep.(endpoint.Endpoint)
	}
	ep, _ := e.m.LoadOrStore(key, e.exec.Endpoint(key, e.next))
	return ep.(endpoint.Endpoint)
}

// unaryCall is one unary call travelling through the chain as the request.
type unaryCall struct {
	method  string
	req     any
	reply   any
	cc      *grpc.ClientConn
	invoker grpc.UnaryInvoker
	opts    []grpc.CallOption
	// replyType, when reply is a proto.Message, makes each try's own
	// reply; tries never touch the caller's until one copies its result in.
	replyType protoreflect.MessageType
	mu        sync.Mutex
	done      bool // a try's reply has been copied out
}

// UnaryClientInterceptor returns an interceptor that runs each unary call
// under its key's policy on exec.
func UnaryClientInterceptor(exec *recourse.Executor, opts ...Option) grpc.UnaryClientInterceptor {
	cfg := &config{}
	for _, o := range opts {
		o(cfg)
	}
	eps := &endpoints{exec: exec, next: unaryAttempt}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		call := &unaryCall{method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: callOpts}
		if m, ok := reply.(proto.Message); ok {
			call.replyType = m.ProtoReflect().Type()
		} else {
			ctx = endpoint.WithoutHedging(ctx)
		}
		_, err := eps.get(cfg.keyFor(method))(ctx, call)
		return original(err)
	}
}

// unaryAttempt makes one try of a unary call.
func unaryAttempt(ctx context.Context, request any) (any, error) {
	c := request.(*unaryCall)
	reply := c.reply
	if c.replyType != nil {
		reply = c.replyType.New().Interface()
	}
	var trailer metadata.MD
	opts := append(append(make([]grpc.CallOption, 0, len(c.opts)+1), c.opts...), grpc.Trailer(&trailer))
	if err := c.invoker(ctx, c.method, c.req, reply, c.cc, opts...); err != nil {
		return nil, classify(err, trailer)
	}
	if c.replyType != nil {
		c.mu.Lock() // the first success copies its reply out; hedges never share one
		if !c.done {
			proto.Reset(c.reply.(proto.Message))
			proto.Merge(c.reply.(proto.Message), reply.(proto.Message))
			c.done = true
		}
		c.mu.Unlock()
	}
	return nil, nil
}
