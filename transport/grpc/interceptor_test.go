package rgrpc

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// step is one scripted answer: a code (OK = answer) and a pushback trailer.
type step struct {
	code     codes.Code
	pushback string
}

// healthServer answers Check and Watch per service name from a script and
// counts the calls it receives.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	mu      sync.Mutex
	scripts map[string][]step
	calls   map[string]int
}

func (h *healthServer) next(service string) step {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.calls[service]
	h.calls[service]++
	if s := h.scripts[service]; i < len(s) {
		return s[i]
	}
	return step{code: codes.OK}
}

func (h *healthServer) count(service string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[service]
}

func (h *healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s := h.next(req.Service)
	if s.pushback != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(PushbackTrailer, s.pushback))
	}
	if s.code != codes.OK {
		return nil, status.Error(s.code, "scripted "+s.code.String())
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Watch fails before any message per the script; once a step is OK it
// sends one message and then ends with Unavailable.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	s := h.next(req.Service)
	if s.code != codes.OK {
		return status.Error(s.code, "scripted "+s.code.String())
	}
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "dropped after the first message")
}

func setup(t *testing.T, exec *recourse.Executor, scripts map[string][]step) (healthpb.HealthClient, *healthServer) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	hs := &healthServer{scripts: scripts, calls: map[string]int{}}
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor(exec)),
		grpc.WithStreamInterceptor(StreamClientInterceptor(exec)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return healthpb.NewHealthClient(conn), hs
}

const checkKey = "grpc.health.v1.Health.Check"

func fast(n int) recourse.Option {
	return recourse.WithFallbackPolicy(policy.MaxAttempts(n), policy.Backoff(time.Millisecond, time.Millisecond, 1))
}

func TestKeyFromMethod(t *testing.T) {
	if got := KeyFromMethod("/grpc.health.v1.Health/Check"); got != checkKey {
		t.Fatalf("key = %q", got)
	}
}

func TestUnavailableTwiceThenOK(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(3)), map[string][]step{"flaky": {{code: codes.Unavailable}, {code: codes.Unavailable}}})
	ctx, capture := timeline.Record(context.Background())
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "flaky"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING || hs.count("flaky") != 3 {
		t.Fatalf("resp %v err %v after %d calls", resp, err, hs.count("flaky"))
	}
	tl := capture.Timeline()
	if tl.Key != checkKey || len(tl.Attempts) != 3 || tl.Attempts[0].Status != "UNAVAILABLE" {
		t.Fatalf("timeline %v", tl)
	}
}

func TestInvalidArgumentIsTriedOnce(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(3)), map[string][]step{"bad": {{code: codes.InvalidArgument}}})
	_, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "bad"})
	if status.Code(err) != codes.InvalidArgument || hs.count("bad") != 1 {
		t.Fatalf("err %v after %d calls", err, hs.count("bad"))
	}
	if st, _ := status.FromError(err); st.Message() != "scripted InvalidArgument" {
		t.Fatalf("the caller must get the server's own status, got %q", st.Message())
	}
}

func TestNonRetryableCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.NotFound, codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition, codes.Unimplemented, codes.ResourceExhausted} {
		c, hs := setup(t, recourse.NewExecutor(fast(3)), map[string][]step{"s": {{code: code}}})
		_, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "s"})
		if status.Code(err) != code || hs.count("s") != 1 {
			t.Fatalf("%v: err %v after %d calls", code, err, hs.count("s"))
		}
	}
}

func TestPushbackTrailerIsHonoured(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	exec := recourse.NewExecutor(recourse.WithClock(f), recourse.WithFallbackPolicy(policy.MaxAttempts(3), policy.Backoff(time.Hour, time.Hour, 1)))
	c, hs := setup(t, exec, map[string][]step{"busy": {{code: codes.ResourceExhausted, pushback: "1500"}}})
	ctx, capture := timeline.Record(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "busy"})
		done <- err
	}()
	f.BlockUntil(1)
	f.Advance(1499 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("retried before the pushback elapsed")
	default:
	}
	f.Advance(time.Millisecond)
	if err := <-done; err != nil || hs.count("busy") != 2 {
		t.Fatalf("err %v after %d calls", err, hs.count("busy"))
	}
	if a := capture.Timeline().Attempts[0]; a.Backoff != 1500*time.Millisecond || a.Reason != timeline.ReasonRetryAfter {
		t.Fatalf("first record %+v", a)
	}
}

func TestNegativePushbackMeansDoNotRetry(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(3)), map[string][]step{"stop": {{code: codes.Unavailable, pushback: "-1"}}})
	_, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "stop"})
	if status.Code(err) != codes.Unavailable || hs.count("stop") != 1 {
		t.Fatalf("err %v after %d calls", err, hs.count("stop"))
	}
}

func TestDeadlinePropagatesPerAttempt(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithFallbackPolicy(policy.MaxAttempts(1), policy.TimeoutPerAttempt(300*time.Millisecond)))
	lis := bufconn.Listen(1 << 20)
	var got time.Duration
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if dl, ok := ctx.Deadline(); ok {
			got = time.Until(dl)
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, &healthServer{calls: map[string]int{}})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, _ := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor(exec)))
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if got <= 0 || got > 300*time.Millisecond {
		t.Fatalf("server saw a deadline %v away, want ≤ 300ms", got)
	}
}

func TestHedgedUnaryCallsDoNotShareAReply(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithFallbackPolicy(policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 3})))
	c, _ := setup(t, exec, nil)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "x"})
			if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("resp %v err %v", resp, err)
			}
		}()
	}
	wg.Wait() // -race reports any shared reply
}

func TestStreamRetriedBeforeFirstMessageOnly(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(3)), map[string][]step{"watch": {{code: codes.Unavailable}}})
	ctx, capture := timeline.Record(context.Background())
	stream, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "watch"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first message %v err %v", first, err)
	}
	if hs.count("watch") != 2 {
		t.Fatalf("streams opened %d: the failure before any message should be retried once", hs.count("watch"))
	}
	// The server now drops the stream: a message was received, so no retry.
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("second Recv err %v", err)
	}
	if hs.count("watch") != 2 {
		t.Fatalf("streams opened %d: retried after a message was received", hs.count("watch"))
	}
	if a := capture.Timeline().Attempts; len(a) != 2 || a[0].Status != "UNAVAILABLE" {
		t.Fatalf("timeline %v", capture.Timeline())
	}
}

func TestStreamGivesUpWithTheServersStatus(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(2)), map[string][]step{"down": {{code: codes.Unavailable}, {code: codes.Unavailable}, {code: codes.Unavailable}}})
	stream, err := c.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "down"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable || hs.count("down") != 2 {
		t.Fatalf("err %v after %d streams", err, hs.count("down"))
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("after failing, Recv must keep failing: %v", err)
	}
}

func TestPushbackParsing(t *testing.T) {
	cases := []struct {
		v          []string
		d          time.Duration
		retry, has bool
	}{
		{nil, 0, true, false},
		{[]string{"250"}, 250 * time.Millisecond, true, true},
		{[]string{"-1"}, 0, false, true},
		{[]string{"soon"}, 0, false, true},
	}
	for _, c := range cases {
		md := metadata.MD{}
		if c.v != nil {
			md[PushbackTrailer] = c.v
		}
		d, retry, has := ParsePushback(md)
		if d != c.d || retry != c.retry || has != c.has {
			t.Errorf("%v: %v %v %v", c.v, d, retry, has)
		}
	}
	if got := (&CodeError{Code: codes.DeadlineExceeded}).AttemptStatus(); got != "DEADLINE_EXCEEDED" {
		t.Errorf("status name %q", got)
	}
	if got := (&CodeError{Code: codes.OK}).AttemptStatus(); got != "OK" {
		t.Errorf("status name %q", got)
	}
	orig := status.Error(codes.Unavailable, "x")
	if got := original(classify(orig, nil, nil)); got != orig {
		t.Errorf("original = %v, want the status error itself", got)
	}
	if perm := classify(status.Error(codes.NotFound, "y"), nil, nil); status.Code(original(perm)) != codes.NotFound {
		t.Errorf("permanent status lost: %v", perm)
	}
}

// uploads is a client-streaming service built by hand (no generated code):
// /test.Upload/Sum counts the messages it receives; its first stream fails
// with Unavailable after reading them.
type uploads struct {
	mu      sync.Mutex
	streams int
}

func (u *uploads) desc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Upload",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Sum", ClientStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
			u.mu.Lock()
			u.streams++
			first := u.streams == 1
			u.mu.Unlock()
			var n int64
			for {
				var m wrapperspb.StringValue
				if err := stream.RecvMsg(&m); err != nil {
					break
				}
				n++
			}
			if first {
				return status.Error(codes.Unavailable, "lost the upload")
			}
			return stream.SendMsg(wrapperspb.Int64(n))
		}}},
	}
}

func TestClientStreamIsNotRetriedOnceSending(t *testing.T) {
	exec := recourse.NewExecutor(fast(3))
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	u := &uploads{}
	srv.RegisterService(u.desc(), struct{}{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(StreamClientInterceptor(exec)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	upload := func() (int64, error) {
		cs, err := conn.NewStream(context.Background(), &grpc.StreamDesc{StreamName: "Sum", ClientStreams: true}, "/test.Upload/Sum")
		if err != nil {
			return 0, err
		}
		for _, s := range []string{"a", "b", "c"} {
			if err := cs.SendMsg(wrapperspb.String(s)); err != nil {
				return 0, err
			}
		}
		if err := cs.CloseSend(); err != nil {
			return 0, err
		}
		var out wrapperspb.Int64Value
		err = cs.RecvMsg(&out)
		return out.Value, err
	}
	if _, err := upload(); status.Code(err) != codes.Unavailable {
		t.Fatalf("first upload err %v", err)
	}
	u.mu.Lock()
	if u.streams != 1 {
		t.Fatalf("%d streams: a client stream that had sent messages was retried", u.streams)
	}
	u.mu.Unlock()
	if n, err := upload(); err != nil || n != 3 {
		t.Fatalf("second upload: %d, %v", n, err)
	}
}
