package fleet

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recourse-go/recourse/fleet/internal/redistest"
)

// redisServer is a real redis-server a test started (see redistest).
type redisServer struct{ *redistest.Server }

// startRedis starts one for t (skipped without redis-server, except in CI).
func startRedis(t testing.TB) *redisServer { return &redisServer{redistest.Start(t)} }

func (s *redisServer) start()                { s.Restart() }
func (s *redisServer) kill()                 { s.Kill() }
func (s *redisServer) pause()                { s.Pause() }
func (s *redisServer) resume()               { s.Resume() }
func (s *redisServer) client() *redis.Client { return s.Client() }

// hashSum sums the fields of key whose names start with kind ("f" or "e").
func hashSum(t testing.TB, c *redis.Client, key, kind string) int64 {
	t.Helper()
	m, err := c.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	var n int64
	for f, v := range m {
		if f[:1] == kind {
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("field %s=%q: %v", f, v, err)
			}
			n += x
		}
	}
	return n
}

// waitFor polls cond every 5ms until it holds or d passes.
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

// newClient returns a client of addr that gives up dialing at once.
func newClient(addr string) *redis.Client { return redistest.NewClient(addr) }

// freePort returns a TCP port on 127.0.0.1 nothing listened on a moment ago.
func freePort(t testing.TB) int { return redistest.FreePort(t) }
