package surfaceattack

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("SURFACE_CHILD") != "" {
		// Child processes run one crash probe; no leak check there.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}
