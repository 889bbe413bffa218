package config_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// cliBin is the recourse command, built once for the CLI tests.
var cliBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "recourse-cli-")
	if err != nil {
		panic(err)
	}
	cliBin = filepath.Join(dir, "recourse")
	cmd := exec.Command("go", "build", "-o", cliBin, "github.com/recourse-go/recourse/cmd/recourse")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the CLI:", err)
		cliBin = ""
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
