package policy

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/recourse-go/recourse/timeline"
)

type reloadLog struct {
	timeline.BaseObserver
	mu  sync.Mutex
	got []timeline.PolicyReload
}

func (r *reloadLog) OnPolicyReload(ev timeline.PolicyReload) {
	r.mu.Lock()
	r.got = append(r.got, ev)
	r.mu.Unlock()
}

func (r *reloadLog) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// Subscribers get every later reload, good or failed, beside the
// ReloadObserver, until they unsubscribe.
func TestFileProviderReloadSubscribers(t *testing.T) {
	var _ ReloadSubscriber = (*FileProvider)(nil)
	var _ ReloadSubscriber = (*RemoteProvider)(nil)
	path := filepath.Join(t.TempDir(), "p.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policies: {a.b: {}}\n")
	own := &reloadLog{}
	fp, err := NewFileProvider(path, WatchInterval(0), ReloadObserver(own))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	sub := &reloadLog{}
	unsubscribe := fp.SubscribeReloads(sub)
	noop := fp.SubscribeReloads(timeline.NoopObserver{})
	noop()
	write("policies: {a.b: {retry: {max_attempts: 2}}}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	write("policies: [")
	if err := fp.Reload(); err == nil {
		t.Fatal("bad file loaded")
	}
	// The ReloadObserver also saw the first load, before the subscription.
	if sub.n() != 2 || own.n() != 3 {
		t.Fatalf("subscriber saw %d reloads, ReloadObserver %d", sub.n(), own.n())
	}
	if sub.got[0].Err != nil || sub.got[1].Err == nil || sub.got[1].Version <= sub.got[0].Version {
		t.Fatalf("events %+v", sub.got)
	}
	unsubscribe()
	unsubscribe() // safe twice
	write("policies: {a.b: {retry: {max_attempts: 3}}}\n")
	if err := fp.Reload(); err != nil {
		t.Fatal(err)
	}
	if sub.n() != 2 {
		t.Fatalf("an unsubscribed observer got %d events", sub.n())
	}
}
