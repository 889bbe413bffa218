package fleetattack

import (
	"context"
	"testing"
	"time"

	"github.com/recourse-go/recourse/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse/fleet/internal/redistest"
	"go.uber.org/goleak"
)

// quiet drops go-redis's log lines: the attacks kill Redis on purpose.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// TestMain fails the package if any test leaves a goroutine running.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m)
}

// redisServer is a redis-server started by a test (see redistest).
type redisServer struct{ *redistest.Server }

// startRedis starts one for t with extra arguments (skipped without
// redis-server, except in CI).
func startRedis(t testing.TB, extra ...string) *redisServer {
	return &redisServer{redistest.Start(t, extra...)}
}

func (s *redisServer) start()                { s.Restart() }
func (s *redisServer) kill()                 { s.Kill() }
func (s *redisServer) pause()                { s.Pause() }
func (s *redisServer) resume()               { s.Resume() }
func (s *redisServer) client() *redis.Client { return s.Client() }

// clientOf returns a client of addr (server possibly down), closed at the end.
func clientOf(t testing.TB, addr string) *redis.Client {
	c := newClient(addr)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// admin returns a client for the test's own commands.
func (s *redisServer) admin() *redis.Client { return s.client() }

// newClient gives up dialing at once (see redistest.NewClient).
func newClient(addr string) *redis.Client { return redistest.NewClient(addr) }

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var (
	first = middleware.Try{Key: "k", Kind: middleware.TryFirst, Cost: 1}
	retry = middleware.Try{Key: "k", Kind: middleware.TryRetry, Cost: 1}
	hedge = middleware.Try{Key: "k", Kind: middleware.TryHedge, Cost: 1}
)

// bg is a context for Take.
var bg = context.Background()

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// isFallback reports whether a decision reason is the fallback's.
func isFallback(reason string) bool {
	return len(reason) > len("fleet_fallback:") && reason[:len("fleet_fallback:")] == "fleet_fallback:"
}

// freePort returns a TCP port on 127.0.0.1 nothing listened on a moment ago.
func freePort(t testing.TB) int { return redistest.FreePort(t) }
