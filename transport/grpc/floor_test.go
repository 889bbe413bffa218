package rgrpc

import (
	"context"
	"net"
	"strings"
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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/policy"
)

// invokeWith runs interceptor ic on one call whose invoker is inv.
func invokeWith(ic grpc.UnaryClientInterceptor, ctx context.Context, reply any, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return ic(ctx, "/bench.Svc/Get", fakeRequest, reply, nil, inv, opts...)
}

var (
	fakeRequest = &wrapperspb.StringValue{Value: "req"}
	okBytes     = []byte("ok")
)

func okInvoker(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	reply.(*wrapperspb.BytesValue).Value = okBytes
	return nil
}

// A successful call through the interceptor allocates its call (with the
// first try's result inside it) and the try's context: no key string, no
// reply of its own, no error target.
func TestUnarySuccessAllocations(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(3)))
	ic := UnaryClientInterceptor(exec)
	ctx := context.Background()
	reply := new(wrapperspb.BytesValue)
	allocs := testing.AllocsPerRun(200, func() {
		if err := invokeWith(ic, ctx, reply, okInvoker); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.1f allocations per call", allocs)
	if allocs > 2 {
		t.Errorf("%.1f allocations per successful call; want at most 2", allocs)
	}
}

func BenchmarkUnarySuccess(b *testing.B) {
	exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(3)))
	ic := UnaryClientInterceptor(exec)
	ctx := context.Background()
	reply := new(wrapperspb.BytesValue)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := invokeWith(ic, ctx, reply, okInvoker); err != nil {
			b.Fatal(err)
		}
	}
}

// tryOf returns the hedge index of the try running under ctx.
func tryOf(ctx context.Context) int {
	info, _ := endpoint.AttemptFromContext(ctx)
	return info.HedgeIndex
}

// Hedged tries never share a reply: the primary try decodes into the
// caller's, each hedge into its own, all of them writing at once (the
// race detector watches); the caller gets the winner's content, and no
// try is still running when the call returns.
func TestHedgedRepliesAreNeverShared(t *testing.T) {
	for _, winner := range []int{0, 2} {
		exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 2})))
		var (
			mu      sync.Mutex
			replies = map[int]any{}
			running atomic.Int32
		)
		started := make(chan struct{})
		inv := func(ctx context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			running.Add(1)
			defer running.Add(-1)
			idx := tryOf(ctx)
			mu.Lock()
			replies[idx] = reply
			if len(replies) == 3 {
				close(started)
			}
			mu.Unlock()
			select {
			case <-started: // every try is running
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
			m := reply.(*wrapperspb.BytesValue)
			for i := 0; i < 100; i++ { // decoding, as a codec would, at the same time as the others
				m.Value = []byte{byte(idx), byte(i)}
			}
			if idx == winner {
				m.Value = []byte("try " + string(rune('0'+idx)))
				return nil
			}
			<-ctx.Done() // the losers run until the winner cancels them
			return status.FromContextError(ctx.Err()).Err()
		}
		reply := new(wrapperspb.BytesValue)
		if err := invokeWith(UnaryClientInterceptor(exec), context.Background(), reply, inv); err != nil {
			t.Fatalf("winner %d: %v", winner, err)
		}
		if n := running.Load(); n != 0 {
			t.Fatalf("winner %d: %d tries still running after the call returned", winner, n)
		}
		if replies[0] != any(reply) {
			t.Errorf("winner %d: the primary try did not decode into the caller's reply", winner)
		}
		if replies[1] == any(reply) || replies[2] == any(reply) || replies[1] == replies[2] {
			t.Errorf("winner %d: hedges shared a reply: %p %p (caller's %p)", winner, replies[1], replies[2], reply)
		}
		if want := "try " + string(rune('0'+winner)); string(reply.Value) != want {
			t.Errorf("winner %d: reply %q, want %q", winner, reply.Value, want)
		}
	}
}

// Sequential tries decode into the caller's reply, in place, each
// starting from an empty one.
func TestRetriesDecodeInPlace(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(3),
		policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	reply := new(wrapperspb.BytesValue)
	var tries int
	inv := func(_ context.Context, _ string, _, r any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		tries++
		if r != any(reply) {
			t.Errorf("try %d decodes into %p, not the caller's reply %p", tries, r, reply)
		}
		m := r.(*wrapperspb.BytesValue)
		if tries > 1 && m.Value != nil {
			t.Errorf("try %d starts from %q, left by the try before", tries, m.Value)
		}
		if tries < 3 {
			m.Value = []byte("partial") // a message, then a failed status
			return status.Error(codes.Unavailable, "again")
		}
		m.Value = []byte("ok")
		return nil
	}
	if err := invokeWith(UnaryClientInterceptor(exec), context.Background(), reply, inv); err != nil || string(reply.Value) != "ok" || tries != 3 {
		t.Fatalf("err %v, reply %q, %d tries", err, reply.Value, tries)
	}
}

// Every try after the first says how many tries of the call were started
// before it (gRFC A6), retries and hedges alike.
func TestPreviousAttemptsHeader(t *testing.T) {
	sent := func(ctx context.Context) string {
		md, _ := metadata.FromOutgoingContext(ctx)
		if v := md.Get(PreviousAttemptsHeader); len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	t.Run("retries", func(t *testing.T) {
		exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(3),
			policy.Backoff(time.Millisecond, time.Millisecond, 1)))
		var got []string
		inv := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			got = append(got, sent(ctx))
			if len(got) < 3 {
				return status.Error(codes.Unavailable, "again")
			}
			return nil
		}
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-caller", "kept")
		if err := invokeWith(UnaryClientInterceptor(exec), ctx, new(wrapperspb.BytesValue), inv); err != nil {
			t.Fatal(err)
		}
		if want := []string{"", "1", "2"}; !equalStrings(got, want) {
			t.Fatalf("headers %q, want %q", got, want)
		}
		if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(PreviousAttemptsHeader)) != 0 {
			t.Fatal("the caller's metadata was modified")
		}
	})
	t.Run("hedge", func(t *testing.T) {
		exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})))
		var mu sync.Mutex
		got := map[int]string{}
		inv := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			idx := tryOf(ctx)
			mu.Lock()
			got[idx] = sent(ctx)
			mu.Unlock()
			if idx == 0 {
				<-ctx.Done() // stalls until the hedge wins
				return status.FromContextError(ctx.Err()).Err()
			}
			return nil
		}
		if err := invokeWith(UnaryClientInterceptor(exec), context.Background(), new(wrapperspb.BytesValue), inv); err != nil {
			t.Fatal(err)
		}
		if got[0] != "" || got[1] != "1" {
			t.Fatalf("headers %q, want primary none and hedge \"1\"", got)
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// handOver moves a reply's content without copying it, whatever its
// shape: nested messages, oneofs, lists, maps, unknown fields; what the
// destination held before is gone.
func TestHandOver(t *testing.T) {
	src, err := structpb.NewStruct(map[string]any{
		"n": 1.5, "s": "x", "list": []any{1.0, "two", map[string]any{"k": true}}, "nested": map[string]any{"a": nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	src.ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01}) // field 99, varint 1
	want := proto.Clone(src)
	dst, _ := structpb.NewStruct(map[string]any{"old": "gone"})
	handOver(dst, src)
	if !proto.Equal(dst, want) {
		t.Fatalf("got %v, want %v", dst, want)
	}
	if len(dst.ProtoReflect().GetUnknown()) != 3 {
		t.Fatal("unknown fields lost")
	}

	big := &wrapperspb.BytesValue{Value: make([]byte, 1<<16)}
	to := &wrapperspb.BytesValue{Value: []byte("old")}
	handOver(to, big)
	if &to.Value[0] != &big.Value[0] {
		t.Fatal("the bytes were copied")
	}
}

// attemptsServer fails each method's first two tries UNAVAILABLE and
// records the grpc-previous-rpc-attempts header of every try.
type attemptsServer struct {
	healthpb.UnimplementedHealthServer
	mu   sync.Mutex
	seen map[string][]string
}

func (s *attemptsServer) record(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[method] = append(s.seen[method], strings.Join(md.Get(PreviousAttemptsHeader), ","))
	if len(s.seen[method]) < 3 {
		return status.Error(codes.Unavailable, "again")
	}
	return nil
}

func (s *attemptsServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := s.record(ctx, "check"); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *attemptsServer) Watch(_ *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if err := s.record(stream.Context(), "watch"); err != nil {
		return err
	}
	return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// The header reaches the server over a real connection (grpc-go lets it
// through as metadata), for unary calls and streams.
func TestPreviousAttemptsHeaderOnTheWire(t *testing.T) {
	exec := recourse.NewExecutor(fast(3))
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	as := &attemptsServer{seen: map[string][]string{}}
	healthpb.RegisterHealthServer(srv, as)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor(exec)),
		grpc.WithStreamInterceptor(StreamClientInterceptor(exec)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "1", "2"}
	for _, m := range []string{"check", "watch"} {
		if got := as.seen[m]; !equalStrings(got, want) {
			t.Errorf("%s: server saw %q, want %q", m, got, want)
		}
	}
}

// unavailableOnce fails the first try of each call UNAVAILABLE with a
// pushback of 0 ms in its trailer, as the bench server does, and answers
// the next.
func unavailableOnce() grpc.UnaryInvoker {
	var tries atomic.Int64
	return func(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		if tries.Add(1)%2 == 1 {
			for _, o := range opts {
				if t, ok := o.(*grpc.TrailerCallOption); ok {
					*t.TrailerAddr = metadata.MD{PushbackTrailer: {"0"}}
				}
			}
			return status.Error(codes.Unavailable, "try again")
		}
		reply.(*wrapperspb.BytesValue).Value = okBytes
		return nil
	}
}

// A call retried once allocates, beyond the status error and trailer its
// invoker makes: the call, the second try's result, an attempt context
// per try, the grpc-previous-rpc-attempts metadata (4, in package
// metadata), the status read from the error and the verdict. The failed
// try's *CodeError is held in its result: none of its own.
func TestUnaryRetryAllocations(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(2)))
	ic := UnaryClientInterceptor(exec)
	inv := unavailableOnce()
	ctx := context.Background()
	reply := new(wrapperspb.BytesValue)
	var trailer metadata.MD
	topt := &grpc.TrailerCallOption{TrailerAddr: &trailer}
	floor := testing.AllocsPerRun(200, func() {
		if err := inv(ctx, "", nil, reply, nil, topt); err == nil {
			t.Fatal("no error")
		}
		if err := inv(ctx, "", nil, reply, nil, topt); err != nil {
			t.Fatal(err)
		}
	})
	allocs := testing.AllocsPerRun(200, func() {
		if err := invokeWith(ic, ctx, reply, inv); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("invoker alone %.1f, through the interceptor %.1f allocations per call", floor, allocs)
	if allocs-floor > 9 {
		t.Errorf("%.1f allocations over the invoker's; want at most 9", allocs-floor)
	}
}

func BenchmarkUnaryRetry(b *testing.B) {
	exec := recourse.NewExecutor(recourse.WithPolicy("bench.Svc.Get", policy.MaxAttempts(2)))
	ic := UnaryClientInterceptor(exec)
	inv := unavailableOnce()
	ctx := context.Background()
	reply := new(wrapperspb.BytesValue)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := invokeWith(ic, ctx, reply, inv); err != nil {
			b.Fatal(err)
		}
	}
}
