package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

// oneBreaker is a Breakers with one breaker for every key.
type oneBreaker struct{ b *middleware.CircuitBreaker }

func (o oneBreaker) Breaker(string) *middleware.CircuitBreaker { return o.b }

// noBreakers is a Breakers with none.
type noBreakers struct{}

func (noBreakers) Breaker(string) *middleware.CircuitBreaker { return nil }

var errDependency = errors.New("dependency down")

// trip opens b by itself: one failing try (b trips after one failure).
func trip(t *testing.T, b *middleware.CircuitBreaker) {
	t.Helper()
	fail := middleware.Breaker(b)(func(context.Context, any) (any, error) { return nil, errDependency })
	_, _ = fail(context.Background(), nil)
	if b.State() != endpoint.BreakerOpen || b.Forced() {
		t.Fatalf("breaker %v (forced %v) after a failure; want open by itself", b.State(), b.Forced())
	}
}

// succeed runs one successful try through b.
func succeed(b *middleware.CircuitBreaker) {
	ok := middleware.Breaker(b)(func(context.Context, any) (any, error) { return "ok", nil })
	_, _ = ok(context.Background(), nil)
}

// replica is one simulated replica: a breaker and a running signal.
type replica struct {
	b   *middleware.CircuitBreaker
	sig *BreakerSignal
}

// runReplicas starts n signals, each with its own client and breaker
// (tripping after one failure, cooldown cd), stopped when the test ends.
func runReplicas(t *testing.T, srv *redisServer, n int, cd time.Duration, opts ...SignalOption) []replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	rs := make([]replica, n)
	for i := range rs {
		rs[i].b = middleware.NewCircuitBreaker(middleware.BreakerConfig{Name: "dep", ConsecutiveFailures: 1, Cooldown: cd})
		o := append([]SignalOption{Replica(fmt.Sprint("r", i)), PollInterval(20 * time.Millisecond), Keys("dep")}, opts...)
		rs[i].sig = NewBreakerSignal(srv.client(), o...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rs[i].sig.Run(ctx, oneBreaker{rs[i].b}); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	return rs
}

// When 3 of 10 replicas' breakers open, the fleet holds the other 7 open;
// when the 3 recover (half-open probes, local), the 7 are released.
func TestSignalQuorumHoldsAndReleases(t *testing.T) {
	srv := startRedis(t)
	rs := runReplicas(t, srv, 10, 150*time.Millisecond, Quorum(3, 0))
	trip(t, rs[0].b)
	trip(t, rs[1].b)
	time.Sleep(100 * time.Millisecond)
	for i, r := range rs[2:] {
		if r.b.State() != endpoint.BreakerClosed {
			t.Fatalf("replica %d: %v with 2 of 10 open; quorum is 3", i+2, r.b.State())
		}
	}
	start := time.Now()
	trip(t, rs[2].b)
	waitFor(t, time.Second, "7 breakers held open", func() bool {
		for _, r := range rs[3:] {
			if !r.b.Forced() {
				return false
			}
		}
		return true
	})
	t.Logf("every breaker open %v after the third tripped", time.Since(start))
	if v := rs[9].sig.View("dep"); !v.Quorum || !v.Held || v.Open != 3 || v.Live != 10 {
		t.Fatalf("view %+v; want 3 of 10 open, quorum, held", v)
	}
	for _, r := range rs[:3] {
		if r.b.Forced() {
			t.Fatal("a breaker open by itself was held open: it must keep probing")
		}
	}
	// The three recover: after the cooldown a probe succeeds and closes each.
	time.Sleep(200 * time.Millisecond)
	for _, r := range rs[:3] {
		succeed(r.b)
		if r.b.State() != endpoint.BreakerClosed {
			t.Fatalf("probe did not close the breaker: %v", r.b.State())
		}
	}
	waitFor(t, time.Second, "held breakers released", func() bool {
		for _, r := range rs[3:] {
			if r.b.Forced() || r.b.State() != endpoint.BreakerClosed {
				return false
			}
		}
		return true
	})
}

// The default quorum is 3 replicas or 50 %: in a fleet of two, one open
// breaker holds the other's open.
func TestSignalFractionQuorum(t *testing.T) {
	srv := startRedis(t)
	rs := runReplicas(t, srv, 2, time.Minute)
	trip(t, rs[0].b)
	waitFor(t, time.Second, "the other breaker held", rs[1].b.Forced)
}

// With both quorum tests off the signal never holds a breaker.
func TestSignalQuorumOff(t *testing.T) {
	srv := startRedis(t)
	rs := runReplicas(t, srv, 2, time.Minute, Quorum(0, 0))
	trip(t, rs[0].b)
	time.Sleep(150 * time.Millisecond)
	if rs[1].b.Forced() {
		t.Fatal("held with the quorum off")
	}
}

// Through an executor: the signal is its observer, so a breaker that
// opens is published at once (the poll interval here is an hour), and a
// replica that has never seen the key learns it from the fleet's index.
func TestSignalWithExecutor(t *testing.T) {
	srv := startRedis(t)
	pol := recourse.WithPolicy("dep.Get", policy.MaxAttempts(1),
		policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 2, Cooldown: time.Minute}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var execs [2]*recourse.Executor
	var sigs [2]*BreakerSignal
	for i := range execs {
		poll := time.Hour
		if i == 1 {
			poll = 20 * time.Millisecond
		}
		sigs[i] = NewBreakerSignal(srv.client(), Replica(fmt.Sprint("e", i)), PollInterval(poll))
		execs[i] = recourse.NewExecutor(pol, recourse.WithObserver(sigs[i]))
		wg.Add(1)
		go func() { defer wg.Done(); _ = sigs[i].Run(ctx, execs[i]) }()
	}
	// Replica 1 has a breaker for the key but has never seen it change.
	_ = execs[1].Do(ctx, "dep.Get", func(context.Context) error { return nil })
	fail := func(context.Context) error { return errDependency }
	for range 2 {
		_ = execs[0].Do(ctx, "dep.Get", fail)
	}
	if execs[0].Breaker("dep.Get").State() != endpoint.BreakerOpen {
		t.Fatal("replica 0's breaker did not open")
	}
	waitFor(t, time.Second, "replica 1 held open", func() bool { return execs[1].Breaker("dep.Get").Forced() })
	if err := execs[1].Do(ctx, "dep.Get", func(context.Context) error { return nil }); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("replica 1 call: %v; want ErrCircuitOpen (held open by the fleet)", err)
	}
}

// A replica that loses Redis for longer than the report lifetime releases
// what it holds: its own breakers decide alone.
func TestSignalReleasesWhenRedisIsGone(t *testing.T) {
	srv := startRedis(t)
	rs := runReplicas(t, srv, 2, time.Minute, ReportTTL(200*time.Millisecond))
	trip(t, rs[0].b)
	waitFor(t, time.Second, "held", rs[1].b.Forced)
	srv.kill()
	waitFor(t, 2*time.Second, "released without Redis", func() bool { return !rs[1].b.Forced() })
	if rs[1].b.State() != endpoint.BreakerClosed {
		t.Fatalf("released breaker is %v; want closed", rs[1].b.State())
	}
}

// Run stops with its context: held breakers released, reports withdrawn.
func TestSignalRunStops(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client()
	ctx, cancel := context.WithCancel(context.Background())
	b0 := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Minute})
	b1 := middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Minute})
	s0 := NewBreakerSignal(srv.client(), Replica("a"), Keys("k"), PollInterval(10*time.Millisecond))
	s1 := NewBreakerSignal(srv.client(), Replica("b"), Keys("k"), PollInterval(10*time.Millisecond))
	done := make(chan error, 2)
	go func() { done <- s0.Run(ctx, oneBreaker{b0}) }()
	go func() { done <- s1.Run(ctx, oneBreaker{b1}) }()
	trip(t, b0)
	waitFor(t, time.Second, "held", b1.Forced)
	if err := s1.Run(ctx, oneBreaker{b1}); !errors.Is(err, ErrSignalRunning) {
		t.Fatalf("second Run: %v; want ErrSignalRunning", err)
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v", err)
		}
	}
	if b1.Forced() {
		t.Fatal("a stopped signal still holds a breaker open")
	}
	if n, err := admin.HLen(context.Background(), "recourse:fleet:{k}:breaker").Result(); err != nil || n != 0 {
		t.Fatalf("HLEN = %d, %v after both stopped; want 0", n, err)
	}
}

// Bad input is an error, not a panic.
func TestSignalBadInput(t *testing.T) {
	var nilCtx context.Context
	rdb := newClient("127.0.0.1:1")
	defer rdb.Close()
	s := NewBreakerSignal(rdb, nil, Quorum(-1, -1), PollInterval(-1), ReportTTL(-1), MaxKeys(-1), SignalKeyPrefix(""))
	if s.Replica() == "" {
		t.Fatal("no default replica id")
	}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Fatal("Run with nil breakers: no error")
	}
	if err := s.Run(nilCtx, noBreakers{}); err == nil {
		t.Fatal("Run with nil context: no error")
	}
	if err := NewBreakerSignal(nil).Run(context.Background(), noBreakers{}); err == nil {
		t.Fatal("Run with nil client: no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx, noBreakers{}); err != nil {
		t.Fatalf("Run against no Redis: %v; want nil when ctx ends", err)
	}
}

// A hung Redis (SIGSTOP) makes a replica release what it holds once its
// reports are older than their lifetime, when the client honours context
// deadlines (ContextTimeoutEnabled); calls never wait on the signal.
func TestSignalHungRedis(t *testing.T) {
	srv := startRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	bs := make([]*middleware.CircuitBreaker, 2)
	for i := range bs {
		bs[i] = middleware.NewCircuitBreaker(middleware.BreakerConfig{ConsecutiveFailures: 1, Cooldown: time.Minute})
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		sig := NewBreakerSignal(c, Replica(fmt.Sprint("h", i)), Keys("dep"), PollInterval(20*time.Millisecond), ReportTTL(200*time.Millisecond))
		wg.Add(1)
		go func() { defer wg.Done(); _ = sig.Run(ctx, oneBreaker{bs[i]}) }()
	}
	trip(t, bs[0])
	waitFor(t, time.Second, "held", bs[1].Forced)
	srv.pause()
	defer srv.resume()
	start := time.Now()
	waitFor(t, 2*time.Second, "released with Redis hung", func() bool { return !bs[1].Forced() })
	t.Logf("released %v after Redis hung", time.Since(start))
}

// Calls keep running on 50 goroutines of a replica while the fleet holds
// and releases its breaker over and over: no race, no panic, and once the
// fleet recovers the replica's calls succeed.
func TestSignalFlipsUnderLoad(t *testing.T) {
	srv := startRedis(t)
	rs := runReplicas(t, srv, 2, 20*time.Millisecond)
	call := middleware.Breaker(rs[1].b)(func(context.Context, any) (any, error) { return "ok", nil })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = call(context.Background(), nil)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	for range 5 {
		trip(t, rs[0].b)
		waitFor(t, time.Second, "held", rs[1].b.Forced)
		time.Sleep(30 * time.Millisecond) // past the cooldown: the next try probes
		succeed(rs[0].b)
		waitFor(t, time.Second, "released", func() bool { return !rs[1].b.Forced() })
	}
	close(stop)
	wg.Wait()
	if _, err := call(context.Background(), nil); err != nil {
		t.Fatalf("call after the fleet recovered: %v", err)
	}
}
