package transport

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/recourse-go/recourse/policy"
	rgrpc "github.com/recourse-go/recourse/transport/grpc"
)

// retryConfig is grpc-go's own retry: one retry of UNAVAILABLE, with the
// smallest backoff the service config admits (the server's pushback of
// 0 ms overrides it anyway).
const retryConfig = `{"methodConfig": [{"name": [{"service": "grpc.health.v1.Health"}, {"service": "bench.Large"}],
  "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.000001s", "maxBackoff": "0.000001s",
    "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// AttemptTimeout is the per-try deadline of the "recourse+deadline" cases.
const AttemptTimeout = time.Second

// GRPCScenarios returns the gRPC scenarios — success, one retry, a
// 256 KiB reply, a 2000-element reply — over loopback TCP (mem false) or
// bufconn (mem true).
func GRPCScenarios(mem bool) ([]*Scenario, error) {
	net := "loopback"
	if mem {
		net = "bufconn"
	}
	var out []*Scenario
	for _, w := range []string{"success", "retry", "bytes256k", "list2000"} {
		sc, err := grpcScenario("grpc/"+net+"/"+w, w, mem)
		if err != nil {
			for _, s := range out {
				s.Close()
			}
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

func grpcScenario(name, work string, mem bool) (*Scenario, error) {
	s, err := NewGRPCServer(mem)
	if err != nil {
		return nil, err
	}
	var conns []*grpc.ClientConn
	sc := &Scenario{Name: name, Server: &s.counters}
	sc.Close = func() {
		for _, c := range conns {
			c.Close()
		}
		s.Close()
	}
	add := func(client string, loop bool, opts ...grpc.DialOption) error {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
		cc, err := s.Dial(opts...)
		if err != nil {
			return err
		}
		conns = append(conns, cc)
		call := callFor(work, loop)
		sc.Cases = append(sc.Cases, Case{client, func(ctx context.Context) error { return call(ctx, cc) }})
		return nil
	}
	interceptor := func(opts ...policy.Option) grpc.DialOption {
		return grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(recourseExec(opts...), rgrpc.WithKey("bench")))
	}
	floor := "grpc-go"
	if work == "retry" {
		floor = "grpc-go+loop"
	}
	errs := []error{
		add(floor, true, grpc.WithDisableRetry()),
		add("recourse", false, interceptor(policy.MaxAttempts(2))),
		add("recourse+deadline", false, interceptor(policy.MaxAttempts(2), policy.TimeoutPerAttempt(AttemptTimeout))),
	}
	if work == "bytes256k" || work == "list2000" {
		// A hedge that never fires (its delay outlives the call): each try
		// decodes into a reply of its own, the winner's is handed over.
		errs = append(errs, add("recourse+hedge", false, interceptor(policy.MaxAttempts(2),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Minute, MaxHedges: 1}))))
	}
	errs = append(errs,
		add("grpc-go retry", false, grpc.WithDefaultServiceConfig(retryConfig)),
		add("failsafegrpc", false, grpc.WithDisableRetry(), grpc.WithUnaryInterceptor(
			failsafegrpc.NewUnaryClientInterceptor[any](failsafegrpc.NewRetryPolicyBuilder[any]().WithMaxRetries(1).Build()))),
	)
	for _, err := range errs {
		if err != nil {
			sc.Close()
			return nil, err
		}
	}
	return sc, nil
}

// callFor returns the call a workload makes, checking its reply. With
// loop, UNAVAILABLE is tried once more, at once (the server's pushback
// is 0 ms): the hand-written retry.
func callFor(work string, loop bool) func(context.Context, *grpc.ClientConn) error {
	switch work {
	case "bytes256k":
		return func(ctx context.Context, cc *grpc.ClientConn) error {
			reply := new(wrapperspb.BytesValue)
			if err := cc.Invoke(ctx, MethodBytes, &emptypb.Empty{}, reply); err != nil {
				return err
			}
			if len(reply.Value) != LargeBytes || reply.Value[LargeBytes-1] != byte((LargeBytes-1)%256) {
				return fmt.Errorf("reply of %d bytes", len(reply.Value))
			}
			return nil
		}
	case "list2000":
		return func(ctx context.Context, cc *grpc.ClientConn) error {
			reply := new(structpb.ListValue)
			if err := cc.Invoke(ctx, MethodList, &emptypb.Empty{}, reply); err != nil {
				return err
			}
			if len(reply.Values) != LargeList || reply.Values[LargeList-1].GetNumberValue() != LargeList-1 {
				return fmt.Errorf("reply of %d values", len(reply.Values))
			}
			return nil
		}
	}
	flaky := work == "retry"
	return func(ctx context.Context, cc *grpc.ClientConn) error {
		service := "ok"
		if flaky {
			service = "flaky/" + strconv.FormatInt(callID.Add(1), 10)
		}
		req := &healthpb.HealthCheckRequest{Service: service}
		for try := 1; ; try++ {
			reply := new(healthpb.HealthCheckResponse)
			err := cc.Invoke(ctx, MethodCheck, req, reply)
			if loop && try < 2 && status.Code(err) == codes.Unavailable {
				continue
			}
			if err != nil {
				return err
			}
			if reply.Status != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("status %v", reply.Status)
			}
			return nil
		}
	}
}
