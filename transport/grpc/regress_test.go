package rgrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// echo is a hand-built service (no generated code). /test.Echo/Call runs
// its script with the 1-based number of the call, after sending a header
// and setting a trailer "try" = that number. /test.Echo/Sum (client
// streaming) answers the number of messages it read; /test.Echo/Chat
// (bidirectional) echoes every message until the client closes.
type echo struct {
	calls  atomic.Int32
	script func(ctx context.Context, n int) (string, error)
	gate   chan struct{} // /test.Echo/Feed sends its message once closed
}

func (e *echo) call(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	n := int(e.calls.Add(1))
	try := metadata.Pairs("try", string(rune('0'+n)))
	if err := grpc.SendHeader(ctx, try); err != nil {
		return nil, err
	}
	_ = grpc.SetTrailer(ctx, try)
	v := in.GetValue()
	if e.script != nil {
		var err error
		if v, err = e.script(ctx, n); err != nil {
			return nil, err
		}
	}
	return wrapperspb.String(v), nil
}

func (e *echo) desc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Call", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in wrapperspb.StringValue
			if err := dec(&in); err != nil {
				return nil, err
			}
			return srv.(*echo).call(ctx, &in)
		}}},
		Streams: []grpc.StreamDesc{
			{StreamName: "Sum", ClientStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
				var n int64
				for {
					var m wrapperspb.StringValue
					if err := stream.RecvMsg(&m); err != nil {
						if errors.Is(err, io.EOF) {
							return stream.SendMsg(wrapperspb.Int64(n))
						}
						return err
					}
					n++
				}
			}},
			{StreamName: "Feed", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
				var m wrapperspb.StringValue
				if err := stream.RecvMsg(&m); err != nil {
					return err
				}
				select {
				case <-srv.(*echo).gate:
				case <-stream.Context().Done():
					return stream.Context().Err()
				}
				return stream.SendMsg(&m)
			}},
			{StreamName: "Chat", ClientStreams: true, ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
				for {
					var m wrapperspb.StringValue
					if err := stream.RecvMsg(&m); err != nil {
						if errors.Is(err, io.EOF) {
							return nil
						}
						return err
					}
					if err := stream.SendMsg(&m); err != nil {
						return err
					}
				}
			}},
		},
	}
}

// dialEcho serves e over bufconn and returns a connection whose calls go
// through exec's interceptors, then through extra stream interceptors.
func dialEcho(t *testing.T, exec *recourse.Executor, e *echo, extra ...grpc.StreamClientInterceptor) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	srv.RegisterService(e.desc(), e)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(UnaryClientInterceptor(exec)),
		grpc.WithChainStreamInterceptor(append([]grpc.StreamClientInterceptor{StreamClientInterceptor(exec)}, extra...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return conn
}

// outputs are the caller's variables for every output call option.
type outputs struct {
	header, trailer metadata.MD
	peer            peer.Peer
	mu              sync.Mutex
	finished        []error
}

func (o *outputs) opts() []grpc.CallOption {
	return []grpc.CallOption{grpc.Header(&o.header), grpc.Trailer(&o.trailer), grpc.Peer(&o.peer),
		grpc.OnFinish(func(err error) {
			o.mu.Lock()
			o.finished = append(o.finished, err)
			o.mu.Unlock()
		})}
}

// check reports whether the caller's variables hold try n's values and
// OnFinish was called once, with a status of code.
func (o *outputs) check(t *testing.T, n string, code codes.Code) {
	t.Helper()
	if got := o.header.Get("try"); len(got) != 1 || got[0] != n {
		t.Errorf("header try = %v, want [%s]", got, n)
	}
	if got := o.trailer.Get("try"); len(got) != 1 || got[0] != n {
		t.Errorf("trailer try = %v, want [%s]", got, n)
	}
	if o.peer.Addr == nil {
		t.Errorf("peer not set")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.finished) != 1 || status.Code(o.finished[0]) != code {
		t.Errorf("OnFinish called with %v, want once with %v", o.finished, code)
	}
}

func TestRegressHedgedCallGivesTheCallerTheWinnersOutputs(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	exec := recourse.NewExecutor(recourse.WithClock(f), recourse.WithFallbackPolicy(policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})))
	primaryHeard := make(chan struct{})
	e := &echo{script: func(ctx context.Context, n int) (string, error) {
		if n == 1 { // the primary: answers nothing until cancelled
			close(primaryHeard)
			<-ctx.Done()
			return "", ctx.Err()
		}
		return "hedge", nil
	}}
	conn := dialEcho(t, exec, e)
	var out outputs
	var reply wrapperspb.StringValue
	done := make(chan error, 1)
	go func() {
		done <- conn.Invoke(context.Background(), "/test.Echo/Call", wrapperspb.String("x"), &reply, out.opts()...)
	}()
	<-primaryHeard
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	if err := <-done; err != nil || reply.GetValue() != "hedge" {
		t.Fatalf("reply %q err %v", reply.GetValue(), err)
	}
	out.check(t, "2", codes.OK)
}

func TestRegressRetriedCallGivesTheCallerTheFinalTrysOutputs(t *testing.T) {
	for _, c := range []struct {
		name string
		fail int // calls that fail
		code codes.Code
	}{{"recovered", 1, codes.OK}, {"failed", 2, codes.Unavailable}} {
		t.Run(c.name, func(t *testing.T) {
			e := &echo{script: func(_ context.Context, n int) (string, error) {
				if n <= c.fail {
					return "", status.Error(codes.Unavailable, "down")
				}
				return "ok", nil
			}}
			conn := dialEcho(t, recourse.NewExecutor(fast(2)), e)
			var out outputs
			var reply wrapperspb.StringValue
			err := conn.Invoke(context.Background(), "/test.Echo/Call", wrapperspb.String("x"), &reply, out.opts()...)
			if status.Code(err) != c.code || e.calls.Load() != 2 {
				t.Fatalf("err %v after %d calls", err, e.calls.Load())
			}
			out.check(t, "2", c.code)
		})
	}
}

func TestRegressConcurrentHedgedCallsDoNotShareOutputs(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithFallbackPolicy(policy.MaxAttempts(1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Microsecond, MaxHedges: 3})))
	conn := dialEcho(t, exec, &echo{})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out outputs
			var reply wrapperspb.StringValue
			if err := conn.Invoke(context.Background(), "/test.Echo/Call", wrapperspb.String("x"), &reply, out.opts()...); err != nil || reply.GetValue() != "x" {
				t.Errorf("reply %q err %v", reply.GetValue(), err)
			}
			out.mu.Lock()
			if len(out.finished) != 1 || len(out.header.Get("try")) != 1 {
				t.Errorf("finished %v header %v", out.finished, out.header)
			}
			out.mu.Unlock()
		}()
	}
	wg.Wait() // -race reports any variable two tries write
}

// spyContexts is a stream interceptor, inside recourse's, that keeps the
// context each stream was opened under: the try's.
type spyContexts struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (s *spyContexts) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s.mu.Lock()
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	return streamer(ctx, desc, cc, method, opts...)
}

func (s *spyContexts) last(t *testing.T) context.Context {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ctxs) == 0 {
		t.Fatal("no stream was opened")
	}
	return s.ctxs[len(s.ctxs)-1]
}

func TestRegressFinishedClientAndBidiStreamsReleaseTheirDeadlines(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithFallbackPolicy(policy.MaxAttempts(2),
		policy.TimeoutPerAttempt(time.Minute), policy.OverallTimeout(time.Minute)))
	spy := &spyContexts{}
	conn := dialEcho(t, exec, &echo{}, spy.intercept)

	// Client streaming, finished by CloseAndRecv.
	cs, err := conn.NewStream(context.Background(), &grpc.StreamDesc{StreamName: "Sum", ClientStreams: true}, "/test.Echo/Sum")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b"} {
		if err := cs.SendMsg(wrapperspb.String(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var sum wrapperspb.Int64Value
	if err := cs.RecvMsg(&sum); err != nil || sum.Value != 2 {
		t.Fatalf("sum %d err %v", sum.Value, err)
	}
	if spy.last(t).Err() == nil {
		t.Error("client stream: its try's context is still live after CloseAndRecv returned; its deadline timers wait for the timeout")
	}

	// Bidirectional, finished by RecvMsg returning io.EOF.
	bs, err := conn.NewStream(context.Background(), &grpc.StreamDesc{StreamName: "Chat", ClientStreams: true, ServerStreams: true}, "/test.Echo/Chat")
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.SendMsg(wrapperspb.String("hi")); err != nil {
		t.Fatal(err)
	}
	if err := bs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var m wrapperspb.StringValue
	if err := bs.RecvMsg(&m); err != nil || m.Value != "hi" {
		t.Fatalf("echo %q err %v", m.Value, err)
	}
	if err := bs.RecvMsg(&m); !errors.Is(err, io.EOF) {
		t.Fatalf("end of chat: %v", err)
	}
	if spy.last(t).Err() == nil {
		t.Error("bidi stream: its try's context is still live after RecvMsg returned io.EOF")
	}

	// A stream with neither flag (one request, one answer), finished by
	// its one RecvMsg.
	us, err := conn.NewStream(context.Background(), &grpc.StreamDesc{}, "/test.Echo/Call")
	if err != nil {
		t.Fatal(err)
	}
	if err := us.SendMsg(wrapperspb.String("one")); err != nil {
		t.Fatal(err)
	}
	if err := us.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := us.RecvMsg(&m); err != nil || m.Value != "one" {
		t.Fatalf("answer %q err %v", m.Value, err)
	}
	if spy.last(t).Err() == nil {
		t.Error("one-answer stream: its try's context is still live after its answer")
	}
}

func TestRegressRetriedStreamCallsOnFinishOnce(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(3)), map[string][]step{"watch": {{code: codes.Unavailable}}})
	var mu sync.Mutex
	var finished []error
	onFinish := grpc.OnFinish(func(err error) {
		mu.Lock()
		finished = append(finished, err)
		mu.Unlock()
	})
	stream, err := c.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "watch"}, onFinish)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil || hs.count("watch") != 2 {
		t.Fatalf("first message err %v after %d streams", err, hs.count("watch"))
	}
	mu.Lock()
	if len(finished) != 0 {
		t.Errorf("OnFinish called %v while the stream is still open", finished)
	}
	mu.Unlock()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("second Recv err %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 1 || status.Code(finished[0]) != codes.Unavailable || finished[0].Error() != "rpc error: code = Unavailable desc = dropped after the first message" {
		t.Fatalf("OnFinish called with %v, want once with the stream's end", finished)
	}
}

func TestRegressFailedStreamCallsOnFinishOnce(t *testing.T) {
	c, hs := setup(t, recourse.NewExecutor(fast(2)), map[string][]step{"down": {{code: codes.Unavailable}, {code: codes.Unavailable}}})
	var mu sync.Mutex
	var finished []error
	stream, err := c.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "down"}, grpc.OnFinish(func(err error) {
		mu.Lock()
		finished = append(finished, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable || hs.count("down") != 2 {
		t.Fatalf("err %v after %d streams", err, hs.count("down"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 1 || status.Code(finished[0]) != codes.Unavailable {
		t.Fatalf("OnFinish called with %v, want once", finished)
	}
}

func TestRegressNilExecutorUsesTheDefault(t *testing.T) {
	c, hs := setup(t, nil, map[string][]step{"flaky": {{code: codes.Unavailable}}})
	if _, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "flaky"}); err != nil || hs.count("flaky") != 2 {
		t.Fatalf("err %v after %d calls", err, hs.count("flaky"))
	}
	stream, err := c.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
}

func TestRegressCallerCancellationIsRecordedAsCanceled(t *testing.T) {
	heard := make(chan struct{}, 1)
	e := &echo{script: func(ctx context.Context, _ int) (string, error) {
		heard <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	}}
	conn := dialEcho(t, recourse.NewExecutor(fast(3)), e)
	ctx, cancel := context.WithCancel(context.Background())
	ctx, capture := timeline.Record(ctx)
	go func() { <-heard; cancel() }()
	var reply wrapperspb.StringValue
	err := conn.Invoke(ctx, "/test.Echo/Call", wrapperspb.String("x"), &reply)
	if status.Code(err) != codes.Canceled || e.calls.Load() != 1 {
		t.Fatalf("err %v after %d calls", err, e.calls.Load())
	}
	a := capture.Timeline().Attempts
	if len(a) != 1 || a[0].Outcome != timeline.OutcomeAbort || a[0].Reason != timeline.ReasonCanceled {
		t.Fatalf("timeline %v: the caller's cancellation is no non-retryable failure of the server", capture.Timeline())
	}
}

func TestRegressTypedNilReplyIsAnErrorNotAPanic(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithFallbackPolicy(policy.MaxAttempts(2),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Microsecond, MaxHedges: 1})))
	conn := dialEcho(t, exec, &echo{})
	var reply *wrapperspb.StringValue
	var out outputs
	if err := conn.Invoke(context.Background(), "/test.Echo/Call", wrapperspb.String("x"), reply, out.opts()...); err == nil {
		t.Fatal("a typed nil reply cannot receive an answer: want an error")
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if len(out.finished) != 1 {
		t.Fatalf("OnFinish called %d times", len(out.finished))
	}
}

func TestRegressEndpointCacheIsBounded(t *testing.T) {
	eps := &endpoints{exec: recourse.NewExecutor(), next: unaryAttempt}
	for i := 0; i < maxCachedKeys+500; i++ {
		if eps.get(fmt.Sprintf("k%d", i)) == nil {
			t.Fatal("no endpoint")
		}
	}
	var n int
	eps.m.Range(func(any, any) bool { n++; return true })
	if n > maxCachedKeys {
		t.Fatalf("%d endpoints cached for as many keys: a key per request grows the cache without bound", n)
	}
	if eps.get("k1") == nil || eps.get("fresh") == nil {
		t.Fatal("no endpoint once the cache is full")
	}
}

func TestRegressStreamContextDoesNotWaitForTheFirstMessage(t *testing.T) {
	e := &echo{gate: make(chan struct{})}
	conn := dialEcho(t, recourse.NewExecutor(fast(2)), e)
	desc := &grpc.StreamDesc{StreamName: "Feed", ServerStreams: true}
	cs, err := conn.NewStream(context.Background(), desc, "/test.Echo/Feed")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(wrapperspb.String("hi")); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	received := make(chan error, 1)
	go func() {
		var m wrapperspb.StringValue
		received <- cs.RecvMsg(&m) // opens the stream; the server holds its message
	}()
	time.Sleep(20 * time.Millisecond) // let the receive start opening
	asked := make(chan struct{})
	go func() {
		_ = cs.Context() // tracing and stats code asks at any time
		_ = cs.Trailer()
		close(asked)
	}()
	select {
	case <-asked:
	case <-time.After(2 * time.Second):
		t.Error("Context and Trailer wait for the stream's first message")
	}
	close(e.gate)
	if err := <-received; err != nil {
		t.Fatal(err)
	}
	<-asked
}
