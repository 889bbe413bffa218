package policy

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseKey(t *testing.T) {
	cases := map[string]Key{
		"payments.Charge": {"payments", "Charge"},
		"db.Users.Query":  {"db", "Users.Query"},
		"standalone":      {"", "standalone"},
		"":                {},
		"x.":              {"x", ""},
		"..":              {"", "."}, // found by FuzzParseKey: String must keep the dot
	}
	for in, want := range cases {
		got := ParseKey(in)
		if got != want {
			t.Errorf("ParseKey(%q) = %+v, want %+v", in, got, want)
		}
		if ParseKey(got.String()) != got {
			t.Errorf("round trip of %q failed", in)
		}
	}
}

func TestZeroPolicyNormalizesToDefaults(t *testing.T) {
	got, clamped := Policy{}.Normalize()
	want, _ := Defaults().Normalize()
	if len(clamped) != 0 {
		t.Fatalf("clamped %v", clamped)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestNormalizeClampsEverySectionAndReports(t *testing.T) {
	p := New("a.b",
		MaxAttempts(50),
		Backoff(time.Nanosecond, 24*time.Hour, 100),
		TimeoutPerAttempt(-time.Second),
		OverallTimeout(time.Hour),
		WithHedge(HedgePolicy{Enabled: false, Delay: time.Hour, Quantile: 2, MaxHedges: 9}),
		WithCircuitBreaker(CircuitPolicy{Enabled: false, ConsecutiveFailures: -1, Cooldown: time.Nanosecond, HalfOpenProbes: 1000, FailureRatio: 3}),
		BudgetCost(-4),
	)
	got, clamped := p.Normalize()
	want := []string{
		"retry.max_attempts", "retry.initial_backoff", "retry.max_backoff", "retry.multiplier",
		"retry.timeout_per_attempt", "retry.overall_timeout",
		"hedge.delay", "hedge.quantile", "hedge.max_hedges",
		"circuit.consecutive_failures", "circuit.cooldown", "circuit.half_open_probes", "circuit.failure_ratio",
		"budget_cost",
	}
	if strings.Join(clamped, ",") != strings.Join(want, ",") {
		t.Fatalf("clamped\n %v\nwant\n %v", clamped, want)
	}
	r := got.Retry
	if r.MaxAttempts != maxMaxAttempts || r.InitialBackoff != minBackoff || r.MaxBackoff != maxMaxBackoff ||
		r.Multiplier != maxMultiplier || r.TimeoutPerAttempt != 0 || r.OverallTimeout != maxTimeout {
		t.Fatalf("retry = %+v", r)
	}
	// The seed returned early when hedging was off; circuit fields must be
	// clamped regardless.
	if got.Circuit.ConsecutiveFailures != 1 || got.Circuit.Cooldown != minCooldown || got.Circuit.HalfOpenProbes != maxHalfOpenProbes {
		t.Fatalf("circuit = %+v", got.Circuit)
	}
	if got.Hedge.Quantile != maxQuantile || got.Hedge.MaxHedges != maxMaxHedges || got.BudgetCost != 1 {
		t.Fatalf("hedge = %+v cost %d", got.Hedge, got.BudgetCost)
	}
	again, clamped2 := got.Normalize()
	if len(clamped2) != 0 || !reflect.DeepEqual(again, got) {
		t.Fatalf("Normalize is not idempotent: %v", clamped2)
	}
}

func TestNormalizeNaN(t *testing.T) {
	p := New("a", WithHedge(HedgePolicy{Quantile: math.NaN()}), Backoff(time.Millisecond, time.Second, math.NaN()))
	got, clamped := p.Normalize()
	if math.IsNaN(got.Hedge.Quantile) || math.IsNaN(got.Retry.Multiplier) || len(clamped) != 2 {
		t.Fatalf("got %+v, clamped %v", got, clamped)
	}
}

func TestPresetsAreInBounds(t *testing.T) {
	for name, opt := range map[string]Option{
		"http": HTTPDefaults(), "db": DatabaseDefaults(), "background": BackgroundJobDefaults(), "lowlatency": LowLatencyDefaults(),
	} {
		p := New("k", opt)
		if _, clamped := p.Normalize(); len(clamped) != 0 {
			t.Errorf("%s preset is out of bounds: %v", name, clamped)
		}
	}
	if p := New("k", BackgroundJobDefaults()); p.Retry.TimeoutPerAttempt != 0 || p.Retry.MaxAttempts <= defaultMaxAttempts {
		t.Errorf("background preset = %+v", p.Retry)
	}
	if p := New("k", LowLatencyDefaults()); !p.Hedge.Enabled || p.Retry.MaxAttempts != 2 {
		t.Errorf("low latency preset = %+v", p)
	}
}

func TestStaticProvider(t *testing.T) {
	var s StaticProvider // zero value works
	if _, err := s.Policy(context.Background(), ParseKey("a.b")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	v0 := s.Version()
	s.Set(New("a.b", MaxAttempts(2)))
	s.SetDefault(New("", MaxAttempts(4)))
	if s.Version() == v0 {
		t.Fatal("version did not change")
	}
	p, err := s.Policy(context.Background(), ParseKey("a.b"))
	if err != nil || p.Retry.MaxAttempts != 2 {
		t.Fatalf("p %+v err %v", p, err)
	}
	p, err = s.Policy(context.Background(), ParseKey("c.d"))
	if err != nil || p.Retry.MaxAttempts != 4 || p.Key != ParseKey("c.d") {
		t.Fatalf("default p %+v err %v", p, err)
	}
}

func TestCompileOrderAndOnlyWhatIsEnabled(t *testing.T) {
	var c Compiler
	bare, err := c.Compile(New("a.b"))
	if err != nil {
		t.Fatal(err)
	}
	if got := stageNames(bare); got != "observe,retry,classify" {
		t.Fatalf("bare chain = %s", got)
	}
	full, err := c.Compile(New("a.b", TimeoutPerAttempt(time.Second), OverallTimeout(2*time.Second), WithID("v7")))
	if err != nil {
		t.Fatal(err)
	}
	if got := stageNames(full); got != "observe,overall_timeout,retry,attempt_timeout,classify" {
		t.Fatalf("chain = %s", got)
	}
	if d := full.Describe(); !strings.Contains(d, "1. observe") || !strings.Contains(d, "id=v7") || !strings.Contains(d, "max_attempts=3") {
		t.Fatalf("Describe = %s", d)
	}
}

func stageNames(c *Compiled) string {
	var names []string
	for _, s := range c.Stages {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func TestCompileRefusesABudgetItWasNotGiven(t *testing.T) {
	var c Compiler
	_, err := c.Compile(New("a.b", WithBudget("retries")))
	if !errors.Is(err, ErrBudgetNotGiven) || !strings.Contains(err.Error(), `budget="retries"`) || !strings.Contains(err.Error(), `"a.b"`) {
		t.Fatalf("err = %v", err)
	}
	_, err = c.Compile(New("a.b", WithHedge(HedgePolicy{Enabled: true, Budget: "hedges"})))
	if !errors.Is(err, ErrBudgetNotGiven) || !strings.Contains(err.Error(), `hedge.budget="hedges"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestCompileFullChainStandalone(t *testing.T) {
	c := Compiler{}
	comp, err := c.Compile(New("a.b", LowLatencyDefaults(), WithCircuitBreaker(CircuitPolicy{Enabled: true, FailureRatio: 0.5})))
	if err != nil {
		t.Fatal(err)
	}
	if got := stageNames(comp); got != "observe,overall_timeout,retry,breaker,hedge,attempt_timeout,classify" {
		t.Fatalf("chain = %s", got)
	}
	d := comp.Describe()
	if !strings.Contains(d, "trigger=p95 of the key's latencies (fixed 10ms until 20 samples)") || !strings.Contains(d, "failure_ratio=0.5") {
		t.Fatalf("Describe:\n%s", d)
	}
}
