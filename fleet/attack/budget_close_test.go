package fleetattack

import (
	"runtime"
	"testing"
	"time"

	"github.com/recourse-go/recourse/fleet"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// closeWithHungRedis builds a budget on a client with opts, hangs Redis with
// first tries pending, and returns how long Close took (capped at limit).
func closeWithHungRedis(t *testing.T, opts redis.Options, limit time.Duration) (took time.Duration, returned bool) {
	s := startRedis(t)
	opts.Addr = s.Addr()
	opts.DialerRetries, opts.DialerRetryTimeout = 1, time.Millisecond
	c := redis.NewClient(&opts)
	defer c.Close()
	b := fleet.NewBudget(c, "closehung", fleet.FlushInterval(10*time.Millisecond))
	firsts(b, 100)
	b.Take(bg, retry)
	s.pause()
	firsts(b, 100)
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	start := time.Now()
	go func() { _ = b.Close(); close(done) }()
	select {
	case <-done:
		took, returned = time.Since(start), true
	case <-time.After(limit):
		took = time.Since(start)
	}
	s.resume()
	<-done
	_ = c.Close()
	return took, returned
}

// With a client created with ContextTimeoutEnabled, Close returns promptly
// although Redis hangs.
func TestCloseWithHungRedisContextTimeoutClient(t *testing.T) {
	took, ok := closeWithHungRedis(t, redis.Options{ContextTimeoutEnabled: true}, 5*time.Second)
	t.Logf("Close took %v", took)
	if !ok || took > time.Second {
		t.Errorf("Close took %v (returned %v) with Redis hung and ContextTimeoutEnabled", took, ok)
	}
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// With a client without read timeout (ReadTimeout -1, a documented go-redis
// setting), Close blocks until Redis answers: a hung Redis hangs shutdown.
func TestCloseWithHungRedisNoReadTimeout(t *testing.T) {
	took, ok := closeWithHungRedis(t, redis.Options{ReadTimeout: -1, WriteTimeout: -1}, 5*time.Second)
	if !ok || took > time.Second {
		t.Errorf("Close took %v (returned %v) with Redis hung", took, ok)
	}
}

// "A decision never waits longer than DecisionTimeout, whatever the client's
// options": a client without read timeout on a hung Redis. The goroutines
// left waiting on go-redis must not pile up with every probe.
func TestDecisionsBoundedWithNoReadTimeoutClient(t *testing.T) {
	s := startRedis(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: -1, WriteTimeout: -1,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	defer c.Close()
	b := fleet.NewBudget(c, "noreadtimeout", fleet.ProbeInterval(20*time.Millisecond), fleet.FlushInterval(10*time.Millisecond))
	firsts(b, 100)
	b.Take(bg, retry)
	s.pause()
	base := runtime.NumGoroutine()
	var worst time.Duration
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b.Take(bg, first)
		if d := timed(func() { b.Take(bg, retry) }); d > worst {
			worst = d
		}
		time.Sleep(5 * time.Millisecond)
	}
	grown := runtime.NumGoroutine() - base
	t.Logf("longest decision %v; goroutines grew by %d over 2s of hung Redis", worst, grown)
	if worst > 20*time.Millisecond+slack {
		t.Errorf("a decision took %v", worst)
	}
	if grown > 40 {
		t.Errorf("%d goroutines more after 2s of a hung Redis probed every 20ms", grown)
	}
	s.resume()
	_ = b.Close()
}
