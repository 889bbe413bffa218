package fleet

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server a test started on 127.0.0.1, without
// persistence, stopped when the test ends.
type redisServer struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

// startRedis starts a redis-server on a free port. Without redis-server
// on PATH the test is skipped, except under CI (CI=true), where it fails:
// .ci/run installs it.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH (.ci/run installs it): %v", err)
		}
		t.Skip("redis-server not installed")
	}
	s := &redisServer{t: t, port: freePort(t)}
	s.start()
	t.Cleanup(s.kill)
	return s
}

// freePort returns a TCP port on 127.0.0.1 nothing listened on a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr returns the server's host:port.
func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs redis-server on s.port and waits until it answers PING.
func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := newClient(s.Addr())
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
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

// kill stops the server at once (SIGKILL) and reaps it.
func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// pause stops the process (SIGSTOP): it holds its connections but answers
// nothing, like a hung Redis. resume continues it.
func (s *redisServer) pause()  { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *redisServer) resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// client returns a new client of the server, closed when the test ends.
func (s *redisServer) client() *redis.Client {
	c := newClient(s.Addr())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

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

// newClient returns a client of addr that gives up dialing at once: go-redis
// otherwise keeps a goroutine redialing a dead server for 5 × 100ms after
// the command that asked has returned, and even after Close.
func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
}
