package middleware

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestFindMatchesErrorsAs(t *testing.T) {
	p := &PermanentError{Err: errFlaky}
	cases := []error{
		nil,
		errFlaky,
		p,
		fmt.Errorf("outer: %w", p),
		errors.Join(errFlaky, fmt.Errorf("x: %w", p)),
		fmt.Errorf("%w and %w", errFlaky, errors.New("other")),
	}
	for i, err := range cases {
		var want *PermanentError
		wantOK := errors.As(err, &want)
		got, ok := find[*PermanentError](err)
		if ok != wantOK || got != want {
			t.Errorf("case %d (%v): find = %v, %v; errors.As = %v, %v", i, err, got, ok, want, wantOK)
		}
	}
}

func TestVerdictOfFailurePathAllocatesNothing(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", Permanent(errFlaky))
	if n := testing.AllocsPerRun(100, func() { _ = VerdictOf(context.Background(), nil, err) }); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}
