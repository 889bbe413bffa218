package policy

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateAdmissionAndBreakerFields(t *testing.T) {
	for _, c := range []struct {
		name  string
		p     Policy
		field string
	}{
		{"jitter above 1", Policy{Circuit: CircuitPolicy{CooldownJitter: 2}}, "circuit.cooldown_jitter"},
		{"jitter NaN", Policy{Circuit: CircuitPolicy{CooldownJitter: math.NaN()}}, "circuit.cooldown_jitter"},
		{"slow rate NaN", Policy{Circuit: CircuitPolicy{SlowCallDuration: time.Second, SlowCallRate: math.NaN()}}, "circuit.slow_call_rate"},
		{"slow rate without duration", Policy{Circuit: CircuitPolicy{SlowCallRate: 0.5}}, "circuit.slow_call_rate"},
		{"negative slow duration", Policy{Circuit: CircuitPolicy{SlowCallDuration: -time.Second}}, "circuit.slow_call_duration"},
		{"negative bulkhead", Policy{Bulkhead: BulkheadPolicy{MaxConcurrent: -1}}, "bulkhead.max_concurrent"},
		{"wait without bulkhead", Policy{Bulkhead: BulkheadPolicy{MaxWait: time.Millisecond}}, "bulkhead.max_wait"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.p.Key = ParseKey("a.b")
			err := Validate(c.p)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("Validate: %v, want a FieldError for %s", err, c.field)
			}
		})
	}
	ok := Policy{Key: ParseKey("a.b"), Circuit: CircuitPolicy{CooldownJitter: 1, SlowCallDuration: time.Second, SlowCallRate: 0.5},
		Bulkhead: BulkheadPolicy{Adaptive: true, MaxWait: time.Millisecond}}
	if err := Validate(ok); err != nil {
		t.Fatal(err)
	}
}

func TestParseAdmissionAndBreakerFields(t *testing.T) {
	set, err := Parse([]byte(`
policies:
  pricing.Get:
    bulkhead: {max_concurrent: 64, max_wait: 5ms}
    circuit: {enabled: true, cooldown_jitter: 0.2, slow_call_duration: 500ms, slow_call_rate: 0.5}
  search.Query:
    bulkhead: {adaptive: true}
`), YAML)
	if err != nil {
		t.Fatal(err)
	}
	p := set.Policies[ParseKey("pricing.Get")]
	if p.Bulkhead != (BulkheadPolicy{MaxConcurrent: 64, MaxWait: 5 * time.Millisecond}) ||
		p.Circuit.CooldownJitter != 0.2 || p.Circuit.SlowCallDuration != 500*time.Millisecond || p.Circuit.SlowCallRate != 0.5 {
		t.Fatalf("parsed %+v %+v", p.Bulkhead, p.Circuit)
	}
	q, _ := set.Policies[ParseKey("search.Query")].Normalize()
	if !q.Bulkhead.Adaptive || q.Bulkhead.MaxConcurrent != defaultAdaptiveCeiling {
		t.Fatalf("adaptive bulkhead normalized to %+v", q.Bulkhead)
	}
	_, err = Parse([]byte("policies:\n  a.b:\n    bulkhead: {max_concurrent: 1, queue: 3}\n"), YAML)
	if err == nil || !strings.Contains(err.Error(), "bulkhead.queue") {
		t.Fatalf("unknown bulkhead field: %v", err)
	}
}

func TestNormalizeBulkhead(t *testing.T) {
	p, clamped := Policy{Bulkhead: BulkheadPolicy{MaxConcurrent: 1 << 30, MaxWait: time.Hour}}.Normalize()
	if p.Bulkhead.MaxConcurrent != maxBulkhead || p.Bulkhead.MaxWait != maxTimeout || len(clamped) != 2 {
		t.Fatalf("%+v, clamped %v", p.Bulkhead, clamped)
	}
	if z, _ := (Policy{}).Normalize(); z.Bulkhead.Enabled() {
		t.Fatal("the zero policy has a bulkhead")
	}
	if l := newLimiter(BulkheadPolicy{}, nil); l != nil {
		t.Fatalf("NewLimiter of no bulkhead = %v", l)
	}
}
