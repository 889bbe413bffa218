package admissionattack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

var errBoom = errors.New("boom")

// longWait is how long a test waits for something that should happen
// promptly; generous, since the machine is shared and loaded.
const longWait = 10 * time.Second

// obs records attempts, finishes and breaker transitions.
type obs struct {
	timeline.BaseObserver
	mu       sync.Mutex
	attempts map[string][]timeline.AttemptRecord
	finishes []*timeline.Timeline
	states   []timeline.BreakerStateChange
}

func newObs() *obs { return &obs{attempts: map[string][]timeline.AttemptRecord{}} }

func (o *obs) OnAttempt(_ context.Context, key string, r timeline.AttemptRecord) {
	o.mu.Lock()
	o.attempts[key] = append(o.attempts[key], r)
	o.mu.Unlock()
}

func (o *obs) OnFinish(_ context.Context, tl *timeline.Timeline) {
	o.mu.Lock()
	o.finishes = append(o.finishes, tl)
	o.mu.Unlock()
}

func (o *obs) OnBreakerState(ev timeline.BreakerStateChange) {
	o.mu.Lock()
	o.states = append(o.states, ev)
	o.mu.Unlock()
}

func (o *obs) recs(key string) []timeline.AttemptRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]timeline.AttemptRecord(nil), o.attempts[key]...)
}

func (o *obs) transitions() []timeline.BreakerStateChange {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]timeline.BreakerStateChange(nil), o.states...)
}

func (o *obs) finished() []*timeline.Timeline {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*timeline.Timeline(nil), o.finishes...)
}

func fmtRecs(rs []timeline.AttemptRecord) string {
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf("[#%d h%d outcome=%v reason=%q err=%v] ", r.Attempt, r.HedgeIndex, r.Outcome, r.Reason, r.Err)
	}
	return s
}

func countReason(rs []timeline.AttemptRecord, reason string) int {
	n := 0
	for _, r := range rs {
		if r.Reason == reason {
			n++
		}
	}
	return n
}

// fastRetry is a policy with n attempts and tiny, unjittered backoff.
func fastRetry(n int) []policy.Option {
	return []policy.Option{policy.MaxAttempts(n), policy.Backoff(time.Millisecond, time.Millisecond, 1), policy.Jitter(policy.JitterNone)}
}

func bulkheadOpt(n int, wait time.Duration) policy.Option {
	return policy.WithBulkhead(policy.BulkheadPolicy{MaxConcurrent: n, MaxWait: wait})
}

func breakerOpt(n int, cooldown time.Duration) policy.Option {
	return policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: n, Cooldown: cooldown})
}

func opts(base []policy.Option, more ...policy.Option) []policy.Option {
	return append(append([]policy.Option(nil), base...), more...)
}

// holder runs n blocking calls for key on e and returns once all n are
// inside their operation; release lets them return.
type holder struct {
	release chan struct{}
	done    sync.WaitGroup
	errs    chan error
}

func hold(t *testing.T, e *recourse.Executor, key string, n int) *holder {
	t.Helper()
	h := &holder{release: make(chan struct{}), errs: make(chan error, n)}
	in := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		h.done.Add(1)
		go func() {
			defer h.done.Done()
			h.errs <- e.Do(context.Background(), key, func(ctx context.Context) error {
				in <- struct{}{}
				select {
				case <-h.release:
				case <-ctx.Done():
				}
				return nil
			})
		}()
	}
	deadline := time.After(longWait)
	for i := 0; i < n; i++ {
		select {
		case <-in:
		case <-deadline:
			t.Fatalf("only %d of %d holders got in", i, n)
		}
	}
	return h
}

func (h *holder) stop() []error {
	close(h.release)
	h.done.Wait()
	close(h.errs)
	var out []error
	for err := range h.errs {
		out = append(out, err)
	}
	return out
}

// canRunAtOnce checks that n calls of key can be inside their op at once.
func canRunAtOnce(t *testing.T, e *recourse.Executor, key string, n int) {
	t.Helper()
	h := hold(t, e, key, n)
	for _, err := range h.stop() {
		if err != nil {
			t.Errorf("holder call failed: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
