//go:build unix

package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Hostile: a FIFO or a device as the policy file is refused, instead of a
// read that blocks for ever (FIFO, Close waiting on it) or never ends
// (/dev/zero) or a device read as an empty set (/dev/null).
func TestRegressNonRegularFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "p.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() {
		fp, err := NewFileProvider(fifo, WatchInterval(0))
		if err == nil {
			fp.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("FIFO: err %v", err)
		}
	case <-time.After(2 * time.Second):
		// Unblock the reader so the test can end.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, _ = w.WriteString(goodDoc)
			w.Close()
		}
		<-done
		t.Fatal("loading a FIFO blocked")
	}
	if fp, err := NewFileProvider("/dev/null", WatchInterval(0)); err == nil {
		fp.Close()
		t.Fatal("/dev/null loaded")
	}
}
