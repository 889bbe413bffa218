package transport

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The gRPC methods the server answers. Health/Check answers a request
// for service "ok" SERVING; for a service "flaky/<call>", it answers the
// call's first request UNAVAILABLE with a pushback of 0 ms and its next
// one SERVING. The large-reply methods take an Empty and are described by
// hand (LargeDesc), without generated code.
const (
	MethodCheck = "/grpc.health.v1.Health/Check"
	MethodBytes = "/bench.Large/Bytes" // a BytesValue of LargeBytes bytes
	MethodList  = "/bench.Large/List"  // a ListValue of LargeList numbers
)

// The sizes of the large replies.
const (
	LargeBytes = 256 << 10
	LargeList  = 2000
)

// GRPCServer serves the methods above on a listener that counts the
// connections it accepts: loopback TCP or bufconn.
type GRPCServer struct {
	counters
	healthpb.UnimplementedHealthServer
	calls calls
	srv   *grpc.Server
	lis   net.Listener
	buf   *bufconn.Listener // nil over TCP
	bytes *wrapperspb.BytesValue
	list  *structpb.ListValue
}

// NewGRPCServer starts a server over bufconn (mem true) or loopback TCP.
func NewGRPCServer(mem bool) (*GRPCServer, error) {
	s := &GRPCServer{bytes: &wrapperspb.BytesValue{Value: make([]byte, LargeBytes)}, list: &structpb.ListValue{}}
	for i := range s.bytes.Value {
		s.bytes.Value[i] = byte(i)
	}
	for i := 0; i < LargeList; i++ {
		s.list.Values = append(s.list.Values, structpb.NewNumberValue(float64(i)))
	}
	if mem {
		s.buf = bufconn.Listen(1 << 20)
		s.lis = s.buf
	} else {
		var err error
		if s.lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	s.srv = grpc.NewServer()
	healthpb.RegisterHealthServer(s.srv, s)
	s.srv.RegisterService(&LargeDesc, s)
	go func() { _ = s.srv.Serve(countingListener{s.lis, &s.counters}) }()
	return s, nil
}

// Dial returns a client connection to the server with opts added.
func (s *GRPCServer) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	target := s.lis.Addr().String()
	if s.buf != nil {
		target = "passthrough:///bufnet"
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.buf.DialContext(ctx)
		}))
	}
	return grpc.NewClient(target, opts...)
}

// Close stops the server.
func (s *GRPCServer) Close() { s.srv.Stop() }

// Check answers Health/Check (see MethodCheck).
func (s *GRPCServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s.active.Add(1)
	defer s.active.Add(-1)
	s.requests.Add(1)
	if call, ok := strings.CutPrefix(req.Service, "flaky/"); ok && s.calls.first(call) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", "0"))
		return nil, status.Error(codes.Unavailable, "try again")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *GRPCServer) large(ctx context.Context, dec func(any) error, reply any) (any, error) {
	s.active.Add(1)
	defer s.active.Add(-1)
	s.requests.Add(1)
	if err := dec(new(emptypb.Empty)); err != nil {
		return nil, err
	}
	return reply, nil
}

// LargeDesc describes the service of the large replies by hand.
var LargeDesc = grpc.ServiceDesc{
	ServiceName: "bench.Large",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Bytes", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			s := srv.(*GRPCServer)
			return s.large(ctx, dec, s.bytes)
		}},
		{MethodName: "List", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			s := srv.(*GRPCServer)
			return s.large(ctx, dec, s.list)
		}},
	},
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	c *counters
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.c.conns.Add(1)
	}
	return conn, err
}
