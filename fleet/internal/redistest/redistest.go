// Package redistest runs real redis-server processes for the fleet
// module's tests: each on 127.0.0.1 on a free port, without persistence,
// killed when its test ends. No mocks: the point of those tests is the
// real engine. It is shared by the package's own tests and the black-box
// attack suite.
package redistest

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

// Server is a redis-server a test started.
type Server struct {
	t     testing.TB
	port  int
	extra []string
	cmd   *exec.Cmd
}

// Start starts a redis-server on a free port, with extra arguments after
// the defaults, and waits until it answers PING. Without redis-server on
// PATH the test is skipped, except under CI (CI set), where it fails:
// .ci/run installs it.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH (.ci/run installs it): %v", err)
		}
		t.Skip("redis-server not installed")
	}
	s := &Server{t: t, port: FreePort(t), extra: extra}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// FreePort returns a TCP port on 127.0.0.1 nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Restart runs redis-server on the server's port (empty: nothing is
// persisted) and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"}, s.extra...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := NewClient(s.Addr())
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

// Kill stops the server at once (SIGKILL) and reaps it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the process (SIGSTOP): it holds its connections but answers
// nothing, like a hung Redis. Resume continues it.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := NewClient(s.Addr())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// NewClient returns a client of addr that gives up dialing at once:
// go-redis otherwise keeps a goroutine redialing a dead server for
// 5 × 100ms after the command that asked has returned, and even after
// Close.
func NewClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
}
