package rgrpc_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	rgrpc "github.com/recourse-go/recourse/transport/grpc"
)

// gateHealth answers Check and Watch once its gate is open (or at once
// when it has none), counting the calls that reached it.
type gateHealth struct {
	healthpb.UnimplementedHealthServer
	calls   atomic.Int32
	entered chan struct{} // receives when a call reaches the handler, if not nil
	gate    chan struct{} // calls wait for it, if not nil
	err     error         // returned by Check, if set
}

func (g *gateHealth) wait(ctx context.Context) error {
	g.calls.Add(1)
	if g.entered != nil {
		g.entered <- struct{}{}
	}
	if g.gate != nil {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return g.err
}

func (g *gateHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (g *gateHealth) Watch(_ *healthpb.HealthCheckRequest, ss healthpb.Health_WatchServer) error {
	if err := g.wait(ss.Context()); err != nil {
		return err
	}
	return ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// serveShed serves h behind s over bufconn and returns a client
// connection (with the given dial options).
func serveShed(t *testing.T, h healthpb.HealthServer, s *rgrpc.Shedder, dial ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(s.StreamServerInterceptor()))
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, dial...)
	conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestShedderUnaryShedsWithResourceExhaustedAndPushback(t *testing.T) {
	b := middleware.NewBulkhead(1, 0)
	h := &gateHealth{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	var shedKey string
	s := rgrpc.NewShedder(func(key string) middleware.Limiter { return b },
		rgrpc.ShedPushback(250*time.Millisecond),
		rgrpc.OnShed(func(_ context.Context, _, key string, _ error) { shedKey = key }))
	client := healthpb.NewHealthClient(serveShed(t, h, s))

	done := make(chan error, 1)
	go func() { _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); done <- err }()
	<-h.entered
	var trailer metadata.MD
	_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED", err)
	}
	if d, retry, ok := rgrpc.ParsePushback(trailer); !ok || !retry || d < 250*time.Millisecond || d > 250*time.Millisecond*5/4 {
		t.Fatalf("pushback %v %v %v (trailer %v), want 250ms to 312ms", d, retry, ok, trailer)
	}
	if shedKey != "grpc.health.v1.Health.Check" || h.calls.Load() != 1 {
		t.Fatalf("key %q, handler calls %d", shedKey, h.calls.Load())
	}
	close(h.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.InFlight() != 0 {
		t.Fatalf("in flight %d after the call", b.InFlight())
	}
}

func TestShedderStreamShedsAndHoldsRoomUntilTheHandlerReturns(t *testing.T) {
	b := middleware.NewBulkhead(1, 0)
	h := &gateHealth{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	client := healthpb.NewHealthClient(serveShed(t, h, rgrpc.NewShedder(func(string) middleware.Limiter { return b })))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	<-h.entered
	second, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = second.Recv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream: %v, want RESOURCE_EXHAUSTED", err)
	}
	if d, _, ok := rgrpc.ParsePushback(second.Trailer()); !ok || d < time.Second || d > 1250*time.Millisecond {
		t.Fatalf("stream pushback %v %v, want the default 1s to 1.25s", d, ok)
	}
	close(h.gate)
	if _, err := first.Recv(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if b.InFlight() != 0 {
		t.Fatal("the stream kept its room")
	}
}

func TestShedderNilSourceAndNoPushback(t *testing.T) {
	h := &gateHealth{}
	client := healthpb.NewHealthClient(serveShed(t, h, rgrpc.NewShedder(nil)))
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	b := middleware.NewBulkhead(1, 0)
	hold, _ := b.Acquire(context.Background())
	defer hold(false)
	client = healthpb.NewHealthClient(serveShed(t, h, rgrpc.NewShedder(func(string) middleware.Limiter { return b }, rgrpc.ShedPushback(0))))
	var trailer metadata.MD
	_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted || len(trailer.Get(rgrpc.PushbackTrailer)) != 0 {
		t.Fatalf("err %v trailer %v; want RESOURCE_EXHAUSTED and no pushback", err, trailer)
	}
}

// spyLimiter admits everything and records how each call was released.
type spyLimiter struct {
	mu      sync.Mutex
	dropped []bool
}

func (s *spyLimiter) Acquire(context.Context) (func(bool), error) {
	return func(d bool) { s.mu.Lock(); s.dropped = append(s.dropped, d); s.mu.Unlock() }, nil
}

func TestShedderReportsOverloadEndsAsDropped(t *testing.T) {
	spy := &spyLimiter{}
	h := &gateHealth{}
	client := healthpb.NewHealthClient(serveShed(t, h, rgrpc.NewShedder(func(string) middleware.Limiter { return spy })))
	_, _ = client.Check(context.Background(), &healthpb.HealthCheckRequest{})
	h.err = status.Error(codes.Unavailable, "busy")
	_, _ = client.Check(context.Background(), &healthpb.HealthCheckRequest{})
	h.err = status.Error(codes.NotFound, "no such service")
	_, _ = client.Check(context.Background(), &healthpb.HealthCheckRequest{})
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if want := []bool{false, true, false}; len(spy.dropped) != 3 || spy.dropped[0] != want[0] || spy.dropped[1] != want[1] || spy.dropped[2] != want[2] {
		t.Fatalf("releases %v, want %v", spy.dropped, want)
	}
}

// A recourse client retries a shed call after the server's pushback.
func TestShedderRecourseClientWaitsThePushback(t *testing.T) {
	b := middleware.NewBulkhead(1, 0)
	hold, _ := b.Acquire(context.Background())
	h := &gateHealth{}
	exec := recourse.NewExecutor(recourse.WithPolicy("grpc.health.v1.Health.Check",
		policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	conn := serveShed(t, h, rgrpc.NewShedder(func(string) middleware.Limiter { return b }, rgrpc.ShedPushback(50*time.Millisecond)),
		grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(exec)))
	time.AfterFunc(20*time.Millisecond, func() { hold(false) })
	start := time.Now()
	_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("retried after %v, before the 50ms pushback", d)
	}
	if errors.Is(err, middleware.ErrBulkheadFull) || h.calls.Load() != 1 {
		t.Fatalf("handler calls %d", h.calls.Load())
	}
}

// Clients shed together are told different delays, so they do not all
// come back at once: the pushback is spread over [d, 1.25 d].
func TestShedderSpreadsPushback(t *testing.T) {
	full := middleware.NewBulkhead(1, 0)
	release, _ := full.Acquire(context.Background())
	defer release(false)
	s := rgrpc.NewShedder(func(string) middleware.Limiter { return full }, rgrpc.ShedPushback(time.Second))
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		var md metadata.MD
		stream := &trailerStream{ctx: context.Background(), set: func(m metadata.MD) { md = m }}
		err := s.StreamServerInterceptor()(nil, stream, &grpc.StreamServerInfo{FullMethod: "/a.B/C"}, func(any, grpc.ServerStream) error { return nil })
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("not shed: %v", err)
		}
		d, _, ok := rgrpc.ParsePushback(md)
		if !ok || d < time.Second || d > 1250*time.Millisecond {
			t.Fatalf("pushback %v (%v)", d, md)
		}
		seen[md.Get(rgrpc.PushbackTrailer)[0]] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 shed calls were told only %d distinct delays", len(seen))
	}
}

// trailerStream is a grpc.ServerStream that records the trailer set.
type trailerStream struct {
	grpc.ServerStream
	ctx context.Context
	set func(metadata.MD)
}

func (s *trailerStream) Context() context.Context  { return s.ctx }
func (s *trailerStream) SetTrailer(md metadata.MD) { s.set(md) }
