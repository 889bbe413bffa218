package config_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

var errBoom = errors.New("boom")

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceAtomically writes s to a temp file beside path and renames it over path.
func replaceAtomically(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, s)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tempPolicy(t *testing.T, name, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, s)
	return p
}

// newFP opens a FileProvider that polls only when asked (Reload).
func newFP(t *testing.T, path string, opts ...policy.FileOption) *policy.FileProvider {
	t.Helper()
	fp, err := policy.NewFileProvider(path, append([]policy.FileOption{policy.WatchInterval(0)}, opts...)...)
	if err != nil {
		t.Fatalf("NewFileProvider: %v", err)
	}
	t.Cleanup(func() { fp.Close() })
	return fp
}

func pol(t *testing.T, p policy.Provider, key string) policy.Policy {
	t.Helper()
	got, err := p.Policy(context.Background(), policy.ParseKey(key))
	if err != nil {
		t.Fatalf("Policy(%q): %v", key, err)
	}
	return got
}

// rec records every event an observer gets.
type rec struct {
	timeline.BaseObserver
	mu       sync.Mutex
	reloads  []timeline.PolicyReload
	problems []timeline.PolicyProblem
	finishes []*timeline.Timeline
	budget   []timeline.BudgetDecision
	breaker  []timeline.BreakerStateChange
}

func (r *rec) OnPolicyReload(ev timeline.PolicyReload) {
	r.mu.Lock()
	r.reloads = append(r.reloads, ev)
	r.mu.Unlock()
}
func (r *rec) OnPolicyProblem(ev timeline.PolicyProblem) {
	r.mu.Lock()
	r.problems = append(r.problems, ev)
	r.mu.Unlock()
}
func (r *rec) OnFinish(_ context.Context, tl *timeline.Timeline) {
	r.mu.Lock()
	r.finishes = append(r.finishes, tl)
	r.mu.Unlock()
}
func (r *rec) OnBudgetDecision(_ context.Context, ev timeline.BudgetDecision) {
	r.mu.Lock()
	r.budget = append(r.budget, ev)
	r.mu.Unlock()
}
func (r *rec) OnBreakerState(ev timeline.BreakerStateChange) {
	r.mu.Lock()
	r.breaker = append(r.breaker, ev)
	r.mu.Unlock()
}
func (r *rec) Reloads() []timeline.PolicyReload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]timeline.PolicyReload(nil), r.reloads...)
}
func (r *rec) Problems() []timeline.PolicyProblem {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]timeline.PolicyProblem(nil), r.problems...)
}

// attempts counts tries of op and fails every one.
func failing(n *int) func(context.Context) error {
	return func(context.Context) error { *n++; return errBoom }
}

func mustContainAll(t *testing.T, label, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s: %q does not mention %q", label, s, sub)
		}
	}
}

// eventually polls cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return cond()
}

func tl(t *testing.T, e *recourse.Executor, key string, op func(context.Context) error) (*timeline.Timeline, error) {
	t.Helper()
	return e.DoWithTimeline(context.Background(), key, op)
}

type hedgeTracker = hedge.LatencyTracker
type hedgeTrigger = hedge.Trigger
