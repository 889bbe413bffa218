package config_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

const goodV1 = `budgets:
  bucket: {kind: token_bucket, capacity: 5, refill_per_second: 0}
default:
  retry: {max_attempts: 2, initial_backoff: 1ms, max_backoff: 1ms}
policies:
  svc.A:
    id: a-v1
    retry: {max_attempts: 4, initial_backoff: 1ms, max_backoff: 1ms}
    budget: bucket
  svc.B:
    id: b-v1
`

const goodV2 = `budgets:
  bucket: {kind: token_bucket, capacity: 5, refill_per_second: 0}
default:
  retry: {max_attempts: 2, initial_backoff: 1ms, max_backoff: 1ms}
policies:
  svc.A:
    id: a-v2
    retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}
    budget: bucket
  svc.B:
    id: b-v2
`

// A bad reload keeps the last good set, reports the error with key, field and
// value, marks Source stale, bumps Version; a fixed file clears all of it.
func TestFileBadReloadKeepsLastGoodAndRecovers(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	r := &rec{}
	fp := newFP(t, path, policy.ReloadObserver(r))
	v0 := fp.Version()
	writeFile(t, path, strings.Replace(goodV1, "max_attempts: 4", "max_attempts: -4", 1))
	err := fp.Reload()
	if err == nil {
		t.Fatal("Reload of a bad file returned nil")
	}
	mustContainAll(t, "reload error", err.Error(), "svc.A", "retry.max_attempts", "-4")
	if !errors.Is(fp.Err(), policy.ErrInvalid) {
		t.Errorf("Err() = %v, want ErrInvalid", fp.Err())
	}
	if got := pol(t, fp, "svc.A"); got.ID != "a-v1" || got.Retry.MaxAttempts != 4 {
		t.Errorf("after bad reload svc.A = %q/%d, want a-v1/4", got.ID, got.Retry.MaxAttempts)
	}
	if !strings.Contains(fp.Source(), "stale") {
		t.Errorf("Source() = %q, want stale", fp.Source())
	}
	if fp.Version() == v0 {
		t.Error("Version did not move on a failed reload")
	}
	writeFile(t, path, goodV2)
	if err := fp.Reload(); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	if fp.Err() != nil || strings.Contains(fp.Source(), "stale") {
		t.Errorf("after recovery Err=%v Source=%q", fp.Err(), fp.Source())
	}
	if got := pol(t, fp, "svc.A"); got.ID != "a-v2" {
		t.Errorf("after good reload svc.A id %q", got.ID)
	}
	rl := r.Reloads()
	if len(rl) < 2 || rl[len(rl)-2].Err == nil || rl[len(rl)-1].Err != nil {
		t.Errorf("reload events %+v: want a failed then a good one", rl)
	}
}

// Every way of breaking the file mid-flight keeps the last good set.
func TestFileBrokenShapesKeepLastGood(t *testing.T) {
	shapes := map[string]func(t *testing.T, path string){
		"empty":         func(t *testing.T, path string) { writeFile(t, path, "") },
		"comments only": func(t *testing.T, path string) { writeFile(t, path, "# nothing\n# here\n") },
		"truncated mid-key": func(t *testing.T, path string) {
			writeFile(t, path, goodV2[:strings.Index(goodV2, "svc.A:")+6])
		},
		"truncated mid-value": func(t *testing.T, path string) {
			writeFile(t, path, goodV2[:strings.Index(goodV2, "max_attempts: 3")+12])
		},
		"binary":  func(t *testing.T, path string) { writeFile(t, path, "\x00\xff\xfe\x01garbage") },
		"deleted": func(t *testing.T, path string) { os.Remove(path) },
		"directory": func(t *testing.T, path string) {
			os.Remove(path)
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		},
		"dangling symlink": func(t *testing.T, path string) {
			os.Remove(path)
			if err := os.Symlink(path+".nowhere", path); err != nil {
				t.Fatal(err)
			}
		},
		"unreadable": func(t *testing.T, path string) {
			if os.Geteuid() == 0 {
				t.Skip("root reads anything")
			}
			os.Chmod(path, 0)
		},
		"unknown field": func(t *testing.T, path string) { writeFile(t, path, goodV2+"    bogus: 1\n") },
		"bad budget": func(t *testing.T, path string) {
			writeFile(t, path, strings.Replace(goodV2, "capacity: 5", "capacity: 0", 1))
		},
		"second doc": func(t *testing.T, path string) { writeFile(t, path, goodV2+"---\n"+goodV2) },
	}
	for name, breakIt := range shapes {
		t.Run(name, func(t *testing.T) {
			path := tempPolicy(t, "p.yaml", goodV1)
			fp := newFP(t, path)
			breakIt(t, path)
			if err := fp.Reload(); err == nil {
				t.Fatal("Reload returned nil")
			}
			if fp.Err() == nil || !strings.Contains(fp.Source(), "stale") {
				t.Errorf("Err=%v Source=%q", fp.Err(), fp.Source())
			}
			if got := pol(t, fp, "svc.A"); got.ID != "a-v1" {
				t.Errorf("svc.A id %q, want a-v1 kept", got.ID)
			}
			if b, ok := fp.Budget("bucket"); !ok || b == nil {
				t.Error("declared budget lost on a failed reload")
			}
		})
	}
}

// A FIFO swapped in for the watched file must not hang Reload (regular files only).
func TestFileReplacedByFIFODoesNotHang(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() { done <- fp.Reload() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Reload of a FIFO returned nil")
		}
	case <-time.After(2 * time.Second):
		// Unblock the reader so the goroutine ends.
		f, _ := os.OpenFile(path, os.O_WRONLY, 0)
		if f != nil {
			f.Close()
		}
		<-done
		t.Fatal("Reload hung on a FIFO")
	}
	if got := pol(t, fp, "svc.A"); got.ID != "a-v1" {
		t.Errorf("svc.A id %q", got.ID)
	}
}

// Kubernetes-style ConfigMap swap: path -> ..data/p.yaml, ..data a symlink swapped atomically.
func TestFileSymlinkSwapIsSeen(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "v1"), 0o755)
	os.Mkdir(filepath.Join(dir, "v2"), 0o755)
	writeFile(t, filepath.Join(dir, "v1", "p.yaml"), goodV1)
	writeFile(t, filepath.Join(dir, "v2", "p.yaml"), goodV2)
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p.yaml")
	os.Symlink(filepath.Join("..data", "p.yaml"), path)
	fp := newFP(t, path)
	if pol(t, fp, "svc.A").ID != "a-v1" {
		t.Fatal("initial")
	}
	os.Symlink("v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := pol(t, fp, "svc.A").ID; got != "a-v2" {
		t.Errorf("after symlink swap id %q, want a-v2", got)
	}
}

// A file over the cap is an error naming its size and the cap; the last good set stays.
func TestFileOverCapNamesSizeAndCap(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path, policy.MaxPolicyBytes(4096))
	big := goodV2 + "# " + strings.Repeat("x", 5000) + "\n"
	writeFile(t, path, big)
	err := fp.Reload()
	if err == nil {
		t.Fatal("no error for a file over the cap")
	}
	mustContainAll(t, "cap error", err.Error(), "4096", fmt.Sprint(len(big)))
	if pol(t, fp, "svc.A").ID != "a-v1" {
		t.Error("last good set lost")
	}
}

// The first load of a too-large file fails and names size and cap.
func TestFileNewOverCap(t *testing.T) {
	big := goodV1 + "# " + strings.Repeat("y", 3000) + "\n"
	path := tempPolicy(t, "p.yaml", big)
	_, err := policy.NewFileProvider(path, policy.WatchInterval(0), policy.MaxPolicyBytes(1000))
	if err == nil {
		t.Fatal("NewFileProvider accepted a file over the cap")
	}
	mustContainAll(t, "cap error", err.Error(), "1000", fmt.Sprint(len(big)))
}

// The default cap is 4 MiB: a 5 MiB file is refused, quickly.
func TestFileDefaultCapRefusesHugeFile(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	line := "# " + strings.Repeat("z", 1022) + "\n"
	for i := 0; i < 5*1024; i++ {
		f.WriteString(line)
	}
	f.Close()
	start := time.Now()
	err = fp.Reload()
	if err == nil {
		t.Fatal("no error for a 5 MiB file")
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("refusing a huge file took %v", el)
	}
	mustContainAll(t, "cap", err.Error(), fmt.Sprint(policy.DefaultMaxPolicyBytes))
}

// Deleting the file and bringing it back recovers.
func TestFileDeletedThenRestored(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	os.Remove(path)
	if fp.Reload() == nil {
		t.Fatal("deleted file: nil error")
	}
	replaceAtomically(t, path, goodV2)
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if pol(t, fp, "svc.A").ID != "a-v2" || fp.Err() != nil {
		t.Error("did not recover")
	}
}

// A failed reload followed by the very same good content that is in use must
// clear the staleness (the source serves the set in use again).
func TestFileFailedThenSameContentClearsStale(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	r := &rec{}
	fp := newFP(t, path, policy.ReloadObserver(r))
	writeFile(t, path, "")
	fp.Reload()
	v1 := fp.Version()
	writeFile(t, path, goodV1)
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if fp.Err() != nil || strings.Contains(fp.Source(), "stale") {
		t.Errorf("same content after failure: Err=%v Source=%q", fp.Err(), fp.Source())
	}
	if fp.Version() == v1 {
		t.Error("Version did not move on recovery")
	}
	rl := r.Reloads()
	if len(rl) == 0 || rl[len(rl)-1].Err != nil {
		t.Errorf("no recovery event: %+v", rl)
	}
}

// An unchanged file reloaded does not move Version (no recompile storms).
func TestFileUnchangedReloadKeepsVersion(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	r := &rec{}
	fp := newFP(t, path, policy.ReloadObserver(r))
	v := fp.Version()
	for i := 0; i < 5; i++ {
		if err := fp.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if fp.Version() != v {
		t.Errorf("Version moved %d -> %d on unchanged reloads", v, fp.Version())
	}
	// Touching mtime alone changes nothing either.
	now := time.Now().Add(time.Hour)
	os.Chtimes(path, now, now)
	fp.Reload()
	if fp.Version() != v {
		t.Errorf("Version moved on a touch")
	}
}

// The poller, on a fake clock, picks up a change and reports it.
func TestFilePollerOnFakeClock(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	r := &rec{}
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(time.Second), policy.WatchClock(fc), policy.ReloadObserver(r))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	writeFile(t, path, goodV2)
	fc.BlockUntil(1)
	fc.Advance(time.Second)
	if !eventually(time.Second, func() bool { return pol(t, fp, "svc.A").ID == "a-v2" }) {
		t.Fatal("poller did not pick up the change")
	}
	writeFile(t, path, "policies: {svc.A: {retry: {max_attempts: x}}}\n")
	fc.BlockUntil(1)
	fc.Advance(time.Second)
	if !eventually(time.Second, func() bool { return fp.Err() != nil }) {
		t.Fatal("poller did not report the bad file")
	}
	if pol(t, fp, "svc.A").ID != "a-v2" {
		t.Error("bad poll replaced the set")
	}
}

// Close stops the poller; Reload after Close is an error; the set is still served.
func TestFileCloseThenReload(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := fp.Close(); err != nil {
		t.Fatal(err)
	}
	if fp.Close() != nil {
		t.Log("second Close returned an error")
	}
	if fp.Reload() == nil {
		t.Error("Reload after Close returned nil")
	}
	if pol(t, fp, "svc.A").ID != "a-v1" {
		t.Error("closed provider stopped serving")
	}
}

// Reload storm: many goroutines reloading while the file flips; never a torn
// or empty set, always one of the two versions, and no race.
func TestFileReloadStorm(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				replaceAtomically(t, path, goodV2)
			} else {
				replaceAtomically(t, path, goodV1)
			}
		}
	}()
	errc := make(chan error, 8)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				fp.Reload()
				p, err := fp.Policy(context.Background(), policy.ParseKey("svc.A"))
				if err != nil || (p.ID != "a-v1" && p.ID != "a-v2") {
					errc <- fmt.Errorf("torn policy %q %v", p.ID, err)
					return
				}
				if (p.ID == "a-v1") != (p.Retry.MaxAttempts == 4) {
					errc <- fmt.Errorf("mixed versions: id %q attempts %d", p.ID, p.Retry.MaxAttempts)
					return
				}
			}
			errc <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	<-done
}

// A key given twice in YAML names the key, and a duplicated field names the
// policy key it is in (the docs: every error names key, field and value).
func TestParseYAMLDuplicateFieldNamesKey(t *testing.T) {
	_, err := policy.Parse([]byte("policies:\n  pay.Charge:\n    retry: {max_attempts: 2, max_attempts: 3}\n"), policy.YAML)
	if err == nil {
		t.Fatal("duplicate field accepted")
	}
	mustContainAll(t, "dup field", err.Error(), "max_attempts", "pay.Charge")
}

// JSON: the same duplicate names the path.
func TestParseJSONDuplicateFieldNamesKey(t *testing.T) {
	_, err := policy.Parse([]byte(`{"policies": {"pay.Charge": {"retry": {"max_attempts": 2, "max_attempts": 3}}}}`), policy.JSON)
	if err == nil {
		t.Fatal("duplicate field accepted")
	}
	mustContainAll(t, "dup field", err.Error(), "max_attempts", "pay.Charge")
}

// Parse reports every problem: a duplicate key does not hide field errors elsewhere.
func TestParseDuplicateDoesNotHideOtherErrors(t *testing.T) {
	doc := "policies:\n  a.b: {retry: {max_attempts: -1}}\n  c.d: {}\n  c.d: {}\n"
	_, err := policy.Parse([]byte(doc), policy.YAML)
	if err == nil {
		t.Fatal("accepted")
	}
	mustContainAll(t, "every problem", err.Error(), "c.d", "retry.max_attempts")
}

// YAML merge keys let a field be given twice without any error.
func TestParseMergeKeyDuplicateField(t *testing.T) {
	doc := "policies:\n  a.b: {retry: {<<: {max_attempts: 2}, max_attempts: 5}}\n"
	ps, err := policy.Parse([]byte(doc), policy.YAML)
	if err == nil {
		t.Errorf("a field given twice through a merge key was accepted (max_attempts=%d)", ps.Policies[policy.ParseKey("a.b")].Retry.MaxAttempts)
	}
}

// YAML bombs and deep nesting end quickly with an error.
func TestParseYAMLBombAndDepth(t *testing.T) {
	bomb := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for i := 0; i < 9; i++ {
		n := string(rune('b' + i))
		bomb += n + ": &" + n + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
		prev = n
	}
	bomb += "policies:\n  x.y: {id: ok}\n"
	for name, doc := range map[string]string{
		"bomb":  bomb,
		"deep":  "policies:\n  x.y: {id: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "}\n",
		"deepm": "policies:\n  x.y: {id: " + strings.Repeat("{a: ", 5000) + "1" + strings.Repeat("}", 5000) + "}\n",
	} {
		start := time.Now()
		_, err := policy.Parse([]byte(doc), policy.YAML)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Errorf("%s: took %v", name, el)
		}
	}
}

// The built-in trigger name must be "p" + a percentile strictly between 0 and 100.
func TestQuantileTriggerEdges(t *testing.T) {
	good := map[string]float64{"p90": 0.9, "p99": 0.99, "p99.9": 0.999, "p50": 0.5, "p1": 0.01}
	for n, want := range good {
		q, ok := policy.QuantileTrigger(n)
		if !ok || q < want-1e-9 || q > want+1e-9 {
			t.Errorf("QuantileTrigger(%q) = %v, %v; want %v", n, q, ok, want)
		}
	}
	for _, n := range []string{"p0", "p100", "p100.0", "p-5", "p", "P90", "p90.", "p.5", "p9e1", "p99.99.9", "pNaN", "pInf", "p+90", " p90", "p90 ", "p0x5a", "p1_0", "p0.0", "p99.999999999999999999"} {
		if q, ok := policy.QuantileTrigger(n); ok {
			t.Errorf("QuantileTrigger(%q) = %v, true; want not a built-in trigger", n, q)
		}
	}
}

var _ = recourse.New
var _ = middleware.UnlimitedBudget{}
var _ = timeline.AttrPolicySource

// The JSON twin of the duplicate-hides-errors case.
func TestParseJSONDuplicateDoesNotHideOtherErrors(t *testing.T) {
	doc := `{"policies": {"a.b": {"retry": {"max_attempts": -1}}, "c.d": {}, "c.d": {}}}`
	_, err := policy.Parse([]byte(doc), policy.JSON)
	if err == nil {
		t.Fatal("accepted")
	}
	mustContainAll(t, "every problem", err.Error(), "c.d", "retry.max_attempts")
}
