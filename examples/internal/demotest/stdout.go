// Package demotest holds what the examples' tests share.
package demotest

import (
	"io"
	"os"
	"testing"
)

// CaptureStdout runs run with os.Stdout piped (as when a demo's output is
// piped into another program) and returns what it wrote. The examples'
// tests run their main through it.
func CaptureStdout(t testing.TB, run func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	run()
	os.Stdout = stdout
	w.Close()
	return string(<-done)
}
