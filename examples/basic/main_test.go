package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

// Piped into another program, the demo writes no ANSI escapes.
func TestOutputHasNoEscapesWhenPiped(t *testing.T) {
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
	main()
	os.Stdout = stdout
	w.Close()
	out := <-done
	if i := bytes.IndexByte(out, 0x1b); i >= 0 {
		t.Fatalf("ANSI escape at byte %d of the piped output:\n%s", i, out)
	}
	for _, want := range []string{"WRN recourse attempt", "INF recourse call", "duration_ms=", "== inventory.Get"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
