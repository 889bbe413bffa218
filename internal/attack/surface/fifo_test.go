package surfaceattack

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
)

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

// unblockFIFO opens fifo for writing until a blocked reader's open returns.
func unblockFIFO(fifo string) {
	for i := 0; i < 5000; i++ {
		fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			syscall.Close(fd)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// The file provider checks "regular file" with Stat and then Opens the path:
// a symlink swapped (atomically, as ConfigMaps do) to a FIFO between the two
// blocks the open forever, and Close then waits for the poller forever.
func TestFileProviderFIFOSwapRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "real.yaml")
	writeFile(t, path, goodYAML)
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skip(err)
	}
	link := filepath.Join(dir, "p.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 5; round++ {
		fp, err := policy.NewFileProvider(link, policy.WatchInterval(time.Microsecond))
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tmpA, tmpB := filepath.Join(dir, "la"), filepath.Join(dir, "lb")
			for i := 0; ; i++ {
				select {
				case <-stop:
					_ = os.Symlink(path, tmpA)
					_ = os.Rename(tmpA, link)
					return
				default:
				}
				if i%2 == 0 {
					_ = os.Symlink(fifo, tmpB)
					_ = os.Rename(tmpB, link)
				} else {
					_ = os.Symlink(path, tmpA)
					_ = os.Rename(tmpA, link)
				}
			}
		}()
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		closed := make(chan struct{})
		go func() { fp.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(time.Second):
			unblockFIFO(fifo)
			<-closed
			t.Fatalf("round %d: Close hung: the poller is blocked opening a FIFO that passed the regular-file check", round)
		}
	}
}
