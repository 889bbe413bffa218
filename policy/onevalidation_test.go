package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// One rule in Go and in files: an initial backoff above the maximum (set or
// inherited from the defaults) is not an error; Normalize raises the
// maximum to the initial backoff and reports retry.max_backoff.
func TestOneValidationInitialBackoffAboveMax(t *testing.T) {
	set, err := Parse([]byte("policies:\n  a.b: {retry: {initial_backoff: 500ms}}\n  c.d: {retry: {initial_backoff: 1s, max_backoff: 500ms}}\n"), YAML)
	if err != nil {
		t.Fatalf("file rejected what Go accepts: %v", err)
	}
	goPolicies := map[string]Policy{
		"a.b": func() Policy { p := New("a.b"); p.Retry.InitialBackoff = 500 * time.Millisecond; return p }(),
		"c.d": New("c.d", Backoff(time.Second, 500*time.Millisecond, 2)),
	}
	for key, gp := range goPolicies {
		if err := Validate(gp); err != nil {
			t.Errorf("Go %s: Validate = %v", key, err)
		}
		fp := set.Policies[ParseKey(key)]
		gn, gclamped := gp.Normalize()
		fn, fclamped := fp.Normalize()
		if gn.Retry != fn.Retry || !slices.Equal(gclamped, fclamped) {
			t.Errorf("%s: Go normalizes to %+v %v, the file to %+v %v", key, gn.Retry, gclamped, fn.Retry, fclamped)
		}
		if fn.Retry.MaxBackoff != fn.Retry.InitialBackoff || !slices.Contains(fclamped, "retry.max_backoff") {
			t.Errorf("%s: normalized %+v, clamped %v", key, fn.Retry, fclamped)
		}
	}
	// Hard errors stay hard in both.
	bad := New("a.b", Backoff(-time.Second, 0, 2))
	if err := Validate(bad); err == nil {
		t.Error("Go: negative backoff accepted")
	}
	if _, err := Parse([]byte("policies: {a.b: {retry: {initial_backoff: -1s}}}"), YAML); err == nil {
		t.Error("file: negative backoff accepted")
	}
}

// Parse reports every field error of a key — those the converter finds
// (types, unknown fields) and those Validate finds (negative values) —
// and of every key, once each.
func TestParseReportsAllFieldErrors(t *testing.T) {
	doc := `
default:
  hedge: {delay: -5ms}
policies:
  a.b:
    retry: {max_attempts: many, initial_backoff: -1s, multiplier: -2}
    circuit: {cooldown: soon, half_open_probes: -1}
    bogus: 1
  c.d:
    hedge: {quantile: 2, max_hedges: -1}
`
	_, err := Parse([]byte(doc), YAML)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`policy "default": hedge.delay = -5ms`,
		`policy "a.b": retry.max_attempts = "many"`,
		`policy "a.b": retry.initial_backoff = -1s`,
		`policy "a.b": retry.multiplier = -2`,
		`policy "a.b": circuit.cooldown = "soon"`,
		`policy "a.b": circuit.half_open_probes = -1`,
		`policy "a.b": bogus = 1: unknown field`,
		`policy "c.d": hedge.quantile = 2`,
		`policy "c.d": hedge.max_hedges = -1`,
	} {
		if strings.Count(msg, want) != 1 {
			t.Errorf("error reports %q %d times, want once:\n%s", want, strings.Count(msg, want), msg)
		}
	}
	// The default section's error is not repeated under every key.
	if strings.Contains(msg, `policy "a.b": hedge.delay`) || strings.Contains(msg, `policy "c.d": hedge.delay`) {
		t.Errorf("the default section's error is repeated per key:\n%s", msg)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
		t.Errorf("error %T does not unwrap to *FieldError", err)
	}
}
