package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/timeline"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTheSampleFile(t *testing.T) {
	set, err := Parse(readFile(t, "../examples/policies.yaml"), YAML)
	if err != nil {
		t.Fatal(err)
	}
	pc := set.Policies[ParseKey("payments.Charge")]
	want := Policy{
		Key: ParseKey("payments.Charge"), ID: "payments-v3",
		Retry: RetryPolicy{MaxAttempts: 2, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2,
			Jitter: JitterEqual, TimeoutPerAttempt: 800 * time.Millisecond, OverallTimeout: 2 * time.Second, MaxRetryAfter: defaultMaxRetryAfter},
		Hedge:      HedgePolicy{Enabled: true, Delay: 20 * time.Millisecond, Quantile: 0.99, MaxHedges: 1, Budget: "hedges"},
		Circuit:    CircuitPolicy{Enabled: true, ConsecutiveFailures: 5, Cooldown: 10 * time.Second, HalfOpenProbes: 1},
		Budget:     "retries",
		BudgetCost: 1,
	}
	if !reflect.DeepEqual(pc, want) {
		t.Fatalf("payments.Charge =\n%+v\nwant\n%+v", pc, want)
	}
	ig := set.Policies[ParseKey("inventory.Get")]
	// Fields the key does not set come from the default section.
	if ig.Retry.MaxAttempts != 4 || ig.Retry.InitialBackoff != 10*time.Millisecond || ig.Retry.Jitter != JitterFull || ig.Circuit.FailureRatio != 0.5 {
		t.Fatalf("inventory.Get = %+v", ig)
	}
	if set.Default == nil || set.Default.Retry.MaxAttempts != 3 {
		t.Fatalf("default = %+v", set.Default)
	}
	js, err := Parse(readFile(t, "testdata/policies.json"), JSON)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(js, set) {
		t.Fatalf("JSON and YAML of the same file differ:\n%+v\n%+v", js, set)
	}
}

func TestParseErrorsNameKeyFieldAndValue(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"policies:\n  a.b:\n    retry: {max_attempts: lots}\n", `policy "a.b": retry.max_attempts = "lots": must be an integer`},
		{"policies:\n  a.b:\n    retry: {initial_backoff: 10 parsecs}\n", `policy "a.b": retry.initial_backoff = "10 parsecs"`},
		{"policies:\n  a.b:\n    retry: {initial_backoff: -5ms}\n", `policy "a.b": retry.initial_backoff = -5ms: a duration must not be negative`},
		{"policies:\n  a.b:\n    retry: {jitter: wobbly}\n", `policy "a.b": retry.jitter = "wobbly": unknown jitter`},
		{"policies:\n  a.b:\n    retry: {max_atempts: 3}\n", `policy "a.b": retry.max_atempts = 3: unknown field`},
		{"policies:\n  a.b:\n    hedge: {enabled: true}\n", `policy "a.b": hedge.enabled = true: hedging needs a delay`},
		{"policies:\n  a.b:\n    hedge: {enabled: true, quantile: 1.5}\n", `policy "a.b": hedge.quantile = 1.5: must be in (0, 1)`},
		{"policies:\n  a.b:\n    circuit: {cooldown: 10}\n", `policy "a.b": circuit.cooldown = 10: must be a duration string`},
		{"default:\n  retry: {max_attempts: 0}\n", `policy "default": retry.max_attempts = 0: must be at least 1`},
		{"polices: {}\n", `unknown top-level field "polices"`},
		{"policies: [1, 2]\n", `'policies' must be a mapping`},
		{"policies:\n  a.b: {retry: {max_attempts: 2}\n", `YAML`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc), YAML)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q)\n  err = %v\n want it to contain %q", c.doc, err, c.want)
		}
	}
	var fe *FieldError
	_, err := Parse([]byte("policies:\n  a.b: {budget_cost: -2}\n  c.d: {retry: {multiplier: x}}\n"), YAML)
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"c.d"`) || !strings.Contains(err.Error(), `"a.b"`) {
		t.Fatalf("every broken key must be reported: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type reloads struct {
	timeline.BaseObserver
	mu  sync.Mutex
	got []timeline.PolicyReload
}

func (r *reloads) OnPolicyReload(ev timeline.PolicyReload) {
	r.mu.Lock()
	r.got = append(r.got, ev)
	r.mu.Unlock()
}

func TestFileProviderKeepsTheLastGoodSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	writeFile(t, path, "policies:\n  a.b: {retry: {max_attempts: 2}}\n")
	obs := &reloads{}
	fp, err := NewFileProvider(path, WatchInterval(0), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	ctx := context.Background()
	if p, err := fp.Policy(ctx, ParseKey("a.b")); err != nil || p.Retry.MaxAttempts != 2 {
		t.Fatalf("p %+v err %v", p, err)
	}
	if _, err := fp.Policy(ctx, ParseKey("x.y")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key err = %v", err)
	}
	v1 := fp.Version()

	writeFile(t, path, "policies:\n  a.b: {retry: {max_attempts: 5}}\n  c.d: {retry: {max_attempts: many}}\n")
	err = fp.Reload()
	if err == nil || !strings.Contains(err.Error(), `policy "c.d": retry.max_attempts = "many"`) {
		t.Fatalf("reload err = %v", err)
	}
	if p, _ := fp.Policy(ctx, ParseKey("a.b")); p.Retry.MaxAttempts != 2 {
		t.Fatalf("a failed reload changed the served policy: %+v", p.Retry)
	}
	if !strings.Contains(fp.Source(), "stale") || fp.Err() == nil || fp.Version() == v1 {
		t.Fatalf("source %q err %v version %d", fp.Source(), fp.Err(), fp.Version())
	}

	writeFile(t, path, "policies:\n  a.b: {retry: {max_attempts: 5}}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, _ := fp.Policy(ctx, ParseKey("a.b")); p.Retry.MaxAttempts != 5 || strings.Contains(fp.Source(), "stale") || fp.Err() != nil {
		t.Fatalf("fixed file not picked up: %+v, source %q", p.Retry, fp.Source())
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.got) != 3 || obs.got[0].Err != nil || obs.got[1].Err == nil || obs.got[2].Err != nil {
		t.Fatalf("reload events %+v", obs.got)
	}
}

func TestFileProviderFirstLoadMustSucceed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	writeFile(t, path, `{"policies": {"a.b": {"retry": {"max_attempts": "x"}}}}`)
	if _, err := NewFileProvider(path); err == nil || !strings.Contains(err.Error(), `"a.b": retry.max_attempts = "x"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewFileProvider(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestFileProviderPollsForChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	writeFile(t, path, "policies:\n  a.b: {retry: {max_attempts: 2}}\n")
	f := clock.NewFake(time.Unix(0, 0))
	fp, err := NewFileProvider(path, WatchInterval(time.Second), WatchClock(f))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	v := fp.Version()
	writeFile(t, path, "policies:\n  a.b: {retry: {max_attempts: 7}}\n")
	f.BlockUntil(1) // the poller is waiting
	f.Advance(time.Second)
	f.BlockUntil(1) // it reloaded and waits again
	if fp.Version() == v {
		t.Fatal("change not picked up by polling")
	}
	if p, _ := fp.Policy(context.Background(), ParseKey("a.b")); p.Retry.MaxAttempts != 7 {
		t.Fatalf("p = %+v", p.Retry)
	}
	// Unchanged content does not bump the version.
	v = fp.Version()
	f.Advance(time.Second)
	f.BlockUntil(1)
	if fp.Version() != v {
		t.Fatal("unchanged file bumped the version")
	}
}

func TestValidateAcceptsEveryPreset(t *testing.T) {
	for _, o := range []Option{HTTPDefaults(), DatabaseDefaults(), BackgroundJobDefaults(), LowLatencyDefaults()} {
		if err := Validate(New("a.b", o)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Validate(Policy{}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("a keyless policy validated: %v", err)
	}
}
