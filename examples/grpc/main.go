// Command grpc shows rgrpc, recourse's gRPC client interceptors, against
// an embedded gRPC health server on loopback that is Unavailable twice,
// then answers; that rejects a bad request; that asks for pushback; and
// whose stream fails once before its first message. Timelines are logged
// through zerolog with each try's status code.
//
//	go run ./examples/grpc
package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
	rgrpc "github.com/recourse-go/recourse/transport/grpc"
)

// health is a misbehaving health service: each service name has a story.
type health struct {
	healthpb.UnimplementedHealthServer
	mu    sync.Mutex
	calls map[string]int
}

func (h *health) n(service string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[service]++
	return h.calls[service]
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	n := h.n(req.Service)
	switch req.Service {
	case "inventory":
		if n <= 2 {
			return nil, status.Error(codes.Unavailable, "starting up")
		}
	case "bogus":
		return nil, status.Error(codes.InvalidArgument, "no such service")
	case "quota":
		if n == 1 {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(rgrpc.PushbackTrailer, "300"))
			return nil, status.Error(codes.ResourceExhausted, "slow down")
		}
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *health) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if h.n("watch") == 1 {
		return status.Error(codes.Unavailable, "not ready to stream")
	}
	for _, s := range []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING} {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: s}); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, &health{calls: map[string]int{}})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	log := demo.Logger()
	exec := recourse.NewExecutor(
		recourse.WithObserver(timeline.NewZerologObserver(log)),
		recourse.WithFallbackPolicy(policy.MaxAttempts(3), policy.Backoff(20*time.Millisecond, 100*time.Millisecond, 2),
			policy.TimeoutPerAttempt(time.Second), policy.OverallTimeout(3*time.Second)),
	)
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(exec)),
		grpc.WithStreamInterceptor(rgrpc.StreamClientInterceptor(exec)))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx := context.Background()

	for _, service := range []string{"inventory", "bogus", "quota"} {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		fmt.Printf("== Check(%s) → %v, err=%v\n\n", service, resp.GetStatus(), err)
	}

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "watch"})
	if err != nil {
		panic(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			fmt.Printf("== Watch ended: %v\n", err)
			break
		}
		fmt.Printf("== Watch → %v\n", msg.Status)
	}
}
