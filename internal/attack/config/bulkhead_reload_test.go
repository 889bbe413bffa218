package config_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

// A key's own section may switch off what the default section switches on,
// with explicit zero / false / none / "" values.
func TestKeyOverridesDefaultWithZeroValues(t *testing.T) {
	doc := `default:
  retry: {max_attempts: 4, jitter: full, timeout_per_attempt: 1s, overall_timeout: 5s}
  hedge: {enabled: true, delay: 5ms, trigger: p90, budget: hb}
  circuit: {enabled: true, failure_ratio: 0.5, cooldown_jitter: 0.2}
  bulkhead: {max_concurrent: 5, adaptive: true}
  budget: rb
  classifier: cls
  id: dflt
policies:
  a.b:
    retry: {jitter: none, timeout_per_attempt: 0s, overall_timeout: 0s}
    hedge: {enabled: false, trigger: "", budget: ""}
    circuit: {enabled: false}
    bulkhead: {max_concurrent: 0, adaptive: false}
    budget: ""
    classifier: ""
    id: ""
`
	ps, err := policy.Parse([]byte(doc), policy.YAML)
	if err != nil {
		t.Fatal(err)
	}
	p := ps.Policies[policy.ParseKey("a.b")]
	if p.Retry.Jitter != policy.JitterNone || p.Retry.TimeoutPerAttempt != 0 || p.Retry.OverallTimeout != 0 ||
		p.Hedge.Enabled || p.Hedge.Trigger != "" || p.Circuit.Enabled || p.Bulkhead.Enabled() ||
		p.Budget != "" || p.Classifier != "" || p.ID != "" {
		t.Errorf("explicit zero values did not override the default: %+v", p)
	}
	if p.Retry.MaxAttempts != 4 {
		t.Errorf("unset field not inherited: %d", p.Retry.MaxAttempts)
	}
}

// The bulkhead's occupancy survives a reload that does not touch its section:
// a try in flight before the reload still counts against the bound after it.
func TestBulkheadBoundHoldsAcrossReload(t *testing.T) {
	mk := func(id string) string {
		return "policies:\n  bh.K: {id: " + id + ", retry: {max_attempts: 1}, bulkhead: {max_concurrent: 1}}\n"
	}
	for _, how := range []string{"good reload", "failed reload"} {
		t.Run(how, func(t *testing.T) {
			path := tempPolicy(t, "p.yaml", mk("v1"))
			fp := newFP(t, path)
			e := recourse.NewExecutor(recourse.WithProvider(fp))
			in := make(chan struct{})
			release := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- e.Do(context.Background(), "bh.K", func(context.Context) error {
					close(in)
					<-release
					return nil
				})
			}()
			<-in
			if how == "good reload" {
				writeFile(t, path, mk("v2"))
			} else {
				writeFile(t, path, "policies: [")
			}
			fp.Reload()
			ran := false
			err := e.Do(context.Background(), "bh.K", func(context.Context) error { ran = true; return nil })
			close(release)
			<-done
			if ran || !errors.Is(err, middleware.ErrBulkheadFull) {
				t.Errorf("after a %s a second try ran beside the one in flight (bound 1): ran=%v err=%v", how, ran, err)
			}
		})
	}
}

// Changing the bound takes effect.
func TestBulkheadBoundChangeApplies(t *testing.T) {
	mk := func(n string) string {
		return "policies:\n  bh.K: {retry: {max_attempts: 1}, bulkhead: {max_concurrent: " + n + "}}\n"
	}
	path := tempPolicy(t, "p.yaml", mk("1"))
	fp := newFP(t, path)
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	c, _ := e.Explain(context.Background(), "bh.K")
	writeFile(t, path, mk("7"))
	fp.Reload()
	c2, _ := e.Explain(context.Background(), "bh.K")
	if c.Policy.Bulkhead.MaxConcurrent != 1 || c2.Policy.Bulkhead.MaxConcurrent != 7 {
		t.Errorf("bounds %d -> %d", c.Policy.Bulkhead.MaxConcurrent, c2.Policy.Bulkhead.MaxConcurrent)
	}
	if !strings.Contains(c2.Describe(), "7") {
		t.Errorf("describe: %s", c2.Describe())
	}
}

// A hedge trigger pNN from a file is in force: Explain names it.
func TestFileQuantileTriggerInForce(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  h.K: {hedge: {enabled: true, delay: 7ms, trigger: p99.9}}\n  h.L: {hedge: {enabled: true, delay: 7ms, trigger: p90}}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	for k, want := range map[string]string{"h.K": "p99.9", "h.L": "p90"} {
		c, err := e.Explain(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.Describe(), want) {
			t.Errorf("%s: chain does not name trigger %s:\n%s", k, want, c.Describe())
		}
	}
}

// A hedge with a quantile trigger and no delay: "on the policy's delay until
// [latencies] are known" — Validate accepts a named trigger without delay; the
// executor must still not hedge instantly (delay 0) before samples exist.
func TestQuantileTriggerWithoutDelayDoesNotHedgeAtOnce(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  h.K: {retry: {max_attempts: 1}, hedge: {enabled: true, trigger: p90, max_hedges: 1}}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	var n int32
	ch := make(chan struct{}, 4)
	tl, err := e.DoWithTimeline(context.Background(), "h.K", func(ctx context.Context) error {
		ch <- struct{}{}
		time.Sleep(2 * time.Millisecond)
		return nil
	})
	n = int32(len(ch))
	if err != nil {
		t.Fatal(err)
	}
	// Default hedge.delay is 10ms: a 2ms try must not have been hedged.
	if n != 1 {
		t.Errorf("%d tries for a 2ms call with no delay given (default 10ms): %+v", n, tl.Attempts)
	}
}
