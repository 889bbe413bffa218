package admissionattack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

const reloadKey = "adm.reload"

func writePolicy(t *testing.T, path string, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func policyFile(circuit, bulkhead string) string {
	return fmt.Sprintf("policies:\n  %s:\n    retry: {max_attempts: 2, initial_backoff: 1ms, max_backoff: 1ms, jitter: none}\n    circuit: %s\n    bulkhead: %s\n", reloadKey, circuit, bulkhead)
}

func newFileExec(t *testing.T, body string) (*recourse.Executor, *policy.FileProvider, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.yaml")
	writePolicy(t, path, body)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fp.Close() })
	e, err := recourse.New(recourse.WithProvider(fp))
	if err != nil {
		t.Fatal(err)
	}
	return e, fp, path
}

// A reload that leaves the circuit section alone keeps the forced breaker.
func TestForceOpenSurvivesUnrelatedReload(t *testing.T) {
	e, fp, path := newFileExec(t, policyFile("{enabled: true, cooldown: 10ms}", "{max_concurrent: 4}"))
	_ = e.Do(context.Background(), reloadKey, func(context.Context) error { return nil })
	e.Breaker(reloadKey).ForceOpen()
	writePolicy(t, path, policyFile("{enabled: true, cooldown: 10ms}", "{max_concurrent: 8}"))
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := e.Do(context.Background(), reloadKey, func(context.Context) error { return nil }); !errors.Is(err, middleware.ErrCircuitOpen) {
		t.Fatalf("after an unrelated reload the forced breaker let a call through: %v", err)
	}
}

// An operator's ForceOpen holds "until Reset": a reload that retunes the
// circuit section (cooldown, jitter, slow calls) must not silently lift it.
func TestForceOpenSurvivesCircuitReload(t *testing.T) {
	e, fp, path := newFileExec(t, policyFile("{enabled: true, cooldown: 10ms}", "{max_concurrent: 4}"))
	_ = e.Do(context.Background(), reloadKey, func(context.Context) error { return nil })
	e.Breaker(reloadKey).ForceOpen()
	writePolicy(t, path, policyFile("{enabled: true, cooldown: 20ms, cooldown_jitter: 0.2, slow_call_duration: 1s}", "{max_concurrent: 4}"))
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	var ran atomic.Bool
	err := e.Do(context.Background(), reloadKey, func(context.Context) error { ran.Store(true); return nil })
	if !errors.Is(err, middleware.ErrCircuitOpen) || ran.Load() {
		t.Fatalf("after a circuit reload: err=%v ran=%v forced=%v", err, ran.Load(), e.Breaker(reloadKey).Forced())
	}
}

// An idle forced key evicted from the executor's cache comes back with a
// fresh, closed breaker.
func TestForceOpenSurvivesEviction(t *testing.T) {
	const key = "adm.evict"
	e := recourse.NewExecutor(recourse.WithMaxKeys(2), recourse.WithPolicy(key, breakerOpt(5, time.Minute)))
	_ = e.Do(context.Background(), key, func(context.Context) error { return nil })
	e.Breaker(key).ForceOpen()
	for i := 0; i < 50; i++ {
		_ = e.Do(context.Background(), fmt.Sprintf("adm.other%d", i), func(context.Context) error { return nil })
	}
	var ran atomic.Bool
	err := e.Do(context.Background(), key, func(context.Context) error { ran.Store(true); return nil })
	if !errors.Is(err, middleware.ErrCircuitOpen) || ran.Load() {
		t.Fatalf("forced key after eviction: err=%v ran=%v", err, ran.Load())
	}
}

// Reload storm: bulkhead and circuit sections change under 100 callers
// while operators flip the breaker; afterwards the final bound holds
// exactly and the key works.
func TestBulkheadReloadStorm(t *testing.T) {
	e, fp, path := newFileExec(t, policyFile("{enabled: true, cooldown: 10ms}", "{max_concurrent: 2, max_wait: 1ms}"))
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < 100; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+g%4)*time.Millisecond)
				_ = e.Do(ctx, reloadKey, func(ctx context.Context) error {
					select {
					case <-time.After(time.Duration(k%2) * time.Millisecond):
					case <-ctx.Done():
					}
					if k%6 == 0 {
						return errBoom
					}
					return nil
				})
				cancel()
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; !stop.Load(); k++ {
			if b := e.Breaker(reloadKey); b != nil {
				if k%2 == 0 {
					b.ForceOpen()
				} else {
					b.Reset()
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	shapes := []string{"{max_concurrent: 1}", "{max_concurrent: 5, max_wait: 2ms}", "{adaptive: true, max_concurrent: 3}", "{max_concurrent: 2, max_wait: 1ms}"}
	circuits := []string{"{enabled: true, cooldown: 10ms}", "{enabled: true, cooldown: 10ms, slow_call_duration: 1ms, min_requests: 2}", "{enabled: true, cooldown: 10ms, cooldown_jitter: 1}"}
	end := time.Now().Add(400 * time.Millisecond)
	for k := 0; time.Now().Before(end); k++ {
		writePolicy(t, path, policyFile(circuits[k%len(circuits)], shapes[k%len(shapes)]))
		_ = fp.Reload()
		time.Sleep(3 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	writePolicy(t, path, policyFile("{enabled: true, cooldown: 10ms}", "{max_concurrent: 3}"))
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	_ = e.Do(context.Background(), reloadKey, func(context.Context) error { return nil })
	b := e.Breaker(reloadKey)
	b.Reset()
	if b.State() != endpoint.BreakerClosed {
		t.Fatal(b.State())
	}
	h := hold(t, e, reloadKey, 3)
	refusedNow(t, e, reloadKey)
	for _, err := range h.stop() {
		if err != nil {
			t.Fatal(err)
		}
	}
	canRunAtOnce(t, e, reloadKey, 3)
}
