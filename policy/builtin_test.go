package policy

import "testing"

func TestQuantileTrigger(t *testing.T) {
	for name, want := range map[string]float64{"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999, "p1": 0.01, "p99.99": 0.9999} {
		q, ok := QuantileTrigger(name)
		if !ok || q < want-1e-12 || q > want+1e-12 {
			t.Errorf("QuantileTrigger(%q) = %v, %v; want %v", name, q, ok, want)
		}
	}
	for _, name := range []string{"", "p", "p0", "p100", "p100.0", "p-5", "p+5", "p1e1", "pNaN", "pInf", "P99", "p99.", "p.9", "p099", "99", "p9x", "p 9", "p0x10", "p05"} {
		if q, ok := QuantileTrigger(name); ok {
			t.Errorf("QuantileTrigger(%q) = %v, true; want not a trigger name", name, q)
		}
	}
}
