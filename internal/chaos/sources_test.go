package chaos

// Attacks on what surrounds the call chain: the policy server, the first
// calls of new keys, and hedged gRPC calls with output call options.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rgrpc "github.com/recourse-go/recourse/transport/grpc"
)

// policySet is a file in which every key of sourceKeys gets max_attempts n
// and the policy ID "set-n", so a call's timeline says which set ran it.
func policySet(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "default:\n  id: set-%d\n  retry: {max_attempts: %d, initial_backoff: 1ms, max_backoff: 1ms}\npolicies:\n", n, n)
	for _, k := range sourceKeys {
		fmt.Fprintf(&b, "  %s:\n    id: set-%d\n    retry: {max_attempts: %d, initial_backoff: 1ms, max_backoff: 1ms}\n", k, n, n)
	}
	return b.String()
}

var sourceKeys = []string{"orders.Get", "orders.Put", "users.Find"}

// liar is a policy server that, request after request, answers well,
// hangs, sends nothing, sends half a file, answers 304 before anything
// was sent, redirects to another host, or sends garbage and huge bodies.
type liar struct {
	mu        sync.Mutex
	n         int
	good      string // the set it serves when it behaves
	elsewhere string // a host serving a set nobody should load
	stop      chan struct{}
	served    map[string]int
	honest    bool // from now on, answer well
}

func (l *liar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.n++
	mode := []string{"good", "hang", "empty", "truncated", "304", "redirect", "garbage", "good", "trickle", "huge", "comment"}[l.n%11]
	good := l.good
	if l.honest {
		mode = "good"
	}
	l.served[mode]++
	l.mu.Unlock()
	switch mode {
	case "good":
		w.Header().Set("ETag", strconv.Quote(strconv.Itoa(len(good))))
		_, _ = w.Write([]byte(good))
	case "hang":
		select {
		case <-r.Context().Done():
		case <-l.stop:
		}
	case "empty":
		w.WriteHeader(http.StatusOK)
	case "comment":
		_, _ = w.Write([]byte("# nothing but a comment\n"))
	case "truncated":
		_, _ = w.Write([]byte(good[:len(good)/2]))
	case "304":
		w.WriteHeader(http.StatusNotModified)
	case "redirect":
		http.Redirect(w, r, l.elsewhere, http.StatusFound)
	case "garbage":
		_, _ = w.Write([]byte("\x00\xff{[not: a: policy"))
	case "trickle": // headers, then a byte now and then until given up on
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 100; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_, _ = w.Write([]byte("#"))
			w.(http.Flusher).Flush()
		}
	case "huge":
		_, _ = w.Write([]byte(strings.Repeat("# padding\n", 1<<20)))
	}
}

func (l *liar) setGood(s string) {
	l.mu.Lock()
	l.good = s
	l.mu.Unlock()
}

func TestChaosPolicyServer(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(policySet(9))) // loading this is being lied to
	}))
	defer elsewhere.Close()
	l := &liar{good: policySet(3), elsewhere: elsewhere.URL + "/policies.yaml", stop: make(chan struct{}), served: map[string]int{}}
	l.n = -1 // the first request is answered well
	srv := httptest.NewServer(l)
	defer srv.Close()
	defer close(l.stop)

	rp, err := policy.NewRemoteProvider(srv.URL+"/policies.yaml", policy.WatchInterval(2*time.Millisecond),
		policy.FetchTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	exec := recourse.NewExecutor(recourse.WithProvider(rp))

	// Callers run while the server lies; every call runs under a good set.
	var calls, wrong atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(400 * time.Millisecond)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				key := sourceKeys[(g+i)%len(sourceKeys)]
				tl, _ := exec.DoWithTimeline(context.Background(), key, func(context.Context) error { return errFlap })
				calls.Add(1)
				if n := len(tl.Attempts); n != 3 && n != 4 {
					wrong.Add(1)
					t.Errorf("%s ran %d attempts: not a good set's", key, n)
				}
			}
		}(g)
	}
	time.Sleep(150 * time.Millisecond)
	l.setGood(policySet(4)) // a real change, published among the lies
	wg.Wait()

	// Every key must end on the newest good set.
	l.mu.Lock()
	l.honest = true
	l.mu.Unlock()
	if err := rp.Reload(); err != nil {
		t.Fatalf("reload of a good set: %v", err)
	}
	for _, key := range sourceKeys {
		tl, _ := exec.DoWithTimeline(context.Background(), key, func(context.Context) error { return errFlap })
		if len(tl.Attempts) != 4 {
			t.Errorf("%s left on a wrong policy: %d attempts after the set with 4 loaded", key, len(tl.Attempts))
		}
	}
	start := time.Now()
	if err := rp.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, mode := range []string{"good", "hang", "empty", "truncated", "304", "redirect", "garbage", "trickle", "huge", "comment"} {
		if l.served[mode] == 0 {
			t.Errorf("the server never answered %q: the attack did not run", mode)
		}
	}
	t.Logf("%d calls, %d on a wrong policy; server answers %v", calls.Load(), wrong.Load(), l.served)
}

var errFlap = errors.New("flap")

// slowProvider answers after a delay, honouring ctx, and counts lookups.
type slowProvider struct {
	lookups atomic.Int64
	delay   time.Duration
}

func (p *slowProvider) Policy(ctx context.Context, key policy.Key) (policy.Policy, error) {
	p.lookups.Add(1)
	t := time.NewTimer(p.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return policy.Policy{}, ctx.Err()
	}
	return policy.New(key.String(), policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1), policy.WithID("real")), nil
}

func TestChaosCancelStormOnFirstCalls(t *testing.T) {
	p := &slowProvider{delay: 3 * time.Millisecond}
	exec := recourse.NewExecutor(recourse.WithProvider(p))
	const keysN = 40
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < keysN; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				switch g % 4 {
				case 0:
					cancel() // cancelled before the call
				case 1:
					time.AfterFunc(time.Duration(g%3)*time.Millisecond, cancel)
				case 2:
					ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
				}
				_ = exec.Do(ctx, fmt.Sprintf("storm.K%d", i), func(context.Context) error { return nil })
				cancel()
			}
		}(g)
	}
	wg.Wait()
	// After the storm every key answers with its real policy.
	for i := 0; i < keysN; i++ {
		key := fmt.Sprintf("storm.K%d", i)
		var tries int
		tl, err := exec.DoWithTimeline(context.Background(), key, func(context.Context) error {
			tries++
			return errFlap
		})
		if tries != 2 || tl.PolicyID != "real" {
			t.Errorf("%s after a cancel storm: %d tries, policy %q (err %v, attrs %v)", key, tries, tl.PolicyID, err, tl.Attributes)
		}
	}
	t.Logf("%d provider lookups for %d keys", p.lookups.Load(), keysN)
}

// echoHealth answers Check with the try's number in a header and a
// trailer, after a delay that makes hedges fire and race.
type echoHealth struct {
	healthpb.UnimplementedHealthServer
	n atomic.Int64
}

func (h *echoHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	n := h.n.Add(1)
	_ = grpc.SetHeader(ctx, metadata.Pairs("try", strconv.FormatInt(n, 10)))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("try", strconv.FormatInt(n, 10)))
	d := time.Duration(n%4) * 2 * time.Millisecond
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_ServingStatus(n % 3)}, nil
}

func TestChaosHedgedGRPCCallOptions(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, &echoHealth{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	exec := recourse.NewExecutor(recourse.WithPolicy("grpc.health.v1.Health.Check",
		policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 2})))
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(exec)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	var wg sync.WaitGroup
	var mismatched atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				var header, trailer metadata.MD
				var p peer.Peer
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%7)*time.Millisecond)
				resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer), grpc.Peer(&p))
				cancel()
				if err != nil {
					continue
				}
				// The caller's variables hold the winning try's values: its
				// header and trailer name the same try, whose number also
				// decides the reply.
				h, tr := header.Get("try"), trailer.Get("try")
				if len(h) != 1 || len(tr) != 1 || h[0] != tr[0] || p.Addr == nil {
					mismatched.Add(1)
					t.Errorf("header %v trailer %v peer %v", h, tr, p.Addr)
					continue
				}
				n, _ := strconv.Atoi(h[0])
				if int32(resp.Status) != int32(n%3) {
					mismatched.Add(1)
					t.Errorf("reply of try %d with the header of try %s", resp.Status, h[0])
				}
			}
		}()
	}
	wg.Wait()
	if mismatched.Load() != 0 {
		t.Fatalf("%d calls mixed tries' outputs", mismatched.Load())
	}
}
