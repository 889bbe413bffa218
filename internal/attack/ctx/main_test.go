// Package ctxattack attacks the deadline contexts recourse hands to
// operations (per-attempt, overall and hedged) and nested recourse calls,
// comparing them with the standard library's context semantics.
package ctxattack

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
