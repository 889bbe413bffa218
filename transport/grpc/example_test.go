package rgrpc_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rgrpc "github.com/recourse-go/recourse/transport/grpc"
)

type flakyHealth struct {
	healthpb.UnimplementedHealthServer
	calls atomic.Int32
}

func (f *flakyHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if f.calls.Add(1) < 3 {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func ExampleUnaryClientInterceptor() {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	health := &flakyHealth{}
	healthpb.RegisterHealthServer(srv, health)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	exec := recourse.NewExecutor(recourse.WithPolicy("grpc.health.v1.Health.Check",
		policy.MaxAttempts(3), policy.Backoff(time.Millisecond, 5*time.Millisecond, 2)))
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(exec)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(resp.GetStatus(), err, "after", health.calls.Load(), "calls")
	// Output: SERVING <nil> after 3 calls
}
