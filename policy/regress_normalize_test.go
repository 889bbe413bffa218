package policy

import (
	"reflect"
	"testing"
	"time"
)

// A zero Policy must normalize to exactly what Defaults normalizes to,
// full jitter included: a hand-built policy must not retry in lockstep.
func TestRegressZeroPolicyNormalizesToDefaults(t *testing.T) {
	got, clamped := Policy{}.Normalize()
	want, _ := Defaults().Normalize()
	if len(clamped) != 0 {
		t.Errorf("zero policy reported clamped fields %v", clamped)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Policy{}.Normalize() =\n%+v\nwant Defaults().Normalize() =\n%+v", got, want)
	}
	if got.Retry.Jitter != JitterFull {
		t.Fatalf("zero policy jitter = %v, want full", got.Retry.Jitter)
	}
	// Defaults itself is already normal except for sections it leaves
	// unset; normalizing it twice changes nothing.
	again, clamped := got.Normalize()
	if !reflect.DeepEqual(again, got) || len(clamped) != 0 {
		t.Fatalf("not idempotent: %+v %v", again, clamped)
	}
}

// A retry section that sets attempts or timeouts but no backoff schedule
// gets the default schedule with full jitter; one that sets any part of
// the schedule keeps an explicit JitterNone.
func TestRegressExplicitJitterNoneKept(t *testing.T) {
	p := Policy{Retry: RetryPolicy{MaxAttempts: 4, OverallTimeout: time.Second}}
	got, _ := p.Normalize()
	if got.Retry.Jitter != JitterFull {
		t.Fatalf("unset schedule: jitter = %v, want full", got.Retry.Jitter)
	}
	p = Policy{Retry: RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond, Jitter: JitterNone}}
	got, _ = p.Normalize()
	if got.Retry.Jitter != JitterNone {
		t.Fatalf("jitter = %v, want none", got.Retry.Jitter)
	}
	q := New("a.b", Jitter(JitterNone))
	got, _ = q.Normalize()
	if got.Retry.Jitter != JitterNone {
		t.Fatalf("New(Jitter(None)) normalized jitter = %v", got.Retry.Jitter)
	}
}
