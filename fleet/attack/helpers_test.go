package fleetattack

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/recourse-go/recourse/middleware"
	"github.com/redis/go-redis/v9"
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

// redisServer is a redis-server started by a test on 127.0.0.1 without
// persistence, killed when the test ends (copied from fleet/redis_test.go).
type redisServer struct {
	t     testing.TB
	port  int
	extra []string
	cmd   *exec.Cmd
}

func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found: %v", err)
		}
		t.Skip("redis-server not installed")
	}
	s := &redisServer{t: t, port: freePort(t), extra: extra}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *redisServer) start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"}, s.extra...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := newClient(s.Addr())
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer: %v", s.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *redisServer) pause()  { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *redisServer) resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// client returns a new client of the server, closed when the test ends.
func (s *redisServer) client() *redis.Client {
	c := newClient(s.Addr())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// clientOf returns a client of addr (server possibly down), closed at the end.
func clientOf(t testing.TB, addr string) *redis.Client {
	c := newClient(addr)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// admin returns a client for the test's own commands.
func (s *redisServer) admin() *redis.Client { return s.client() }

// newClient gives up dialing at once (see fleet/redis_test.go).
func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
}

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
