// Package admissionattack attacks, black-box, the breaker controls
// (ForceOpen, Reset, slow calls, jittered cooldowns), fallbacks and
// bulkheads (fixed and adaptive) through recourse's public API.
package admissionattack

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
