package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/timeline"
)

// FileProvider serves policies from a YAML or JSON file (by extension:
// ".json" is JSON, anything else YAML) and reloads it when it changes.
//
// Changes are found by polling: every interval the file is read and its
// content hashed. Polling needs no extra dependency, sees a change however
// it was made — an edit in place, an atomic rename, a Kubernetes ConfigMap
// swapping a symlink, which file-event watchers handle poorly — and costs
// one small read per interval.
//
// A reload that fails (unreadable file, bad syntax, an invalid field)
// changes nothing: the provider keeps serving the last good set, Err
// reports the failure, observers get OnPolicyReload with the error, and
// Source (the timeline attribute policy_source) says the set is stale
// until a good file is loaded.
type FileProvider struct {
	reloader
}

// reloader serves a policy set loaded from a source and reloaded by
// polling, keeping the last good set when a reload fails. FileProvider
// and RemoteProvider differ only in how they fetch.
type reloader struct {
	name     string       // "file:PATH", "remote:URL"
	remote   *remoteFetch // for RemoteProvider's options; nil for a file
	fetch    fetchFunc
	interval time.Duration
	clock    clock.Clock
	observer timeline.Observer

	mu      sync.RWMutex
	set     *PolicySet
	sum     [sha256.Size]byte
	lastErr error
	source  string

	version atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	closed  sync.Once
}

// fetchFunc reads a source: its content and format, or unchanged=true
// when the source says nothing changed since the last fetch.
type fetchFunc func() (data []byte, format Format, unchanged bool, err error)

// FileOption configures a FileProvider or a RemoteProvider.
type FileOption func(*reloader)

// WatchInterval sets how often the source is checked for changes (default
// 5s); 0 turns polling off (call Reload yourself).
func WatchInterval(d time.Duration) FileOption { return func(r *reloader) { r.interval = d } }

// WatchClock sets the clock polling waits on (default clock.Real).
func WatchClock(c clock.Clock) FileOption { return func(r *reloader) { r.clock = clock.Or(c) } }

// ReloadObserver reports every reload, good or failed, to o.
func ReloadObserver(o timeline.Observer) FileOption { return func(r *reloader) { r.observer = o } }

// NewFileProvider loads path and, unless WatchInterval(0) is given, starts
// polling it. The first load must succeed: its error names the key, the
// field and the value. Close stops the polling.
func NewFileProvider(path string, opts ...FileOption) (*FileProvider, error) {
	f := &FileProvider{}
	format := FormatOf(path)
	fetch := func() ([]byte, Format, bool, error) {
		data, err := os.ReadFile(path)
		return data, format, false, err
	}
	if err := f.start("file:"+path, fetch, opts); err != nil {
		return nil, err
	}
	return f, nil
}

// start configures r, loads its source once and starts polling.
func (r *reloader) start(name string, fetch fetchFunc, opts []FileOption) error {
	r.name, r.fetch, r.interval, r.clock = name, fetch, 5*time.Second, clock.Real{}
	for _, o := range opts {
		o(r)
	}
	if err := r.Reload(); err != nil {
		return err
	}
	if r.interval > 0 {
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.watch()
	}
	return nil
}

// Policy returns key's policy, the default section's (with Key set) for a
// key the file does not name, or an error wrapping ErrNotFound.
func (f *reloader) Policy(_ context.Context, key Key) (Policy, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if p, ok := f.set.Policies[key]; ok {
		return p, nil
	}
	if f.set.Default != nil {
		p := *f.set.Default
		p.Key = key
		return p, nil
	}
	return Policy{}, fmt.Errorf("%w %q in %s", ErrNotFound, key.String(), f.name)
}

// Set returns the policy set being served.
func (f *reloader) Set() *PolicySet {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.set
}

// Version changes whenever a reload succeeds with new content, or fails.
func (f *reloader) Version() uint64 { return f.version.Load() }

// Source returns "file:PATH" (or "remote:URL"), followed by " (stale: …)"
// while the last reload has failed and the previous good set is served.
func (f *reloader) Source() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.source
}

// Err returns the error of the last reload, nil if it succeeded.
func (f *reloader) Err() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastErr
}

// Reload reads the source now. On success with changed content the new
// set is served; on failure the previous set stays. It returns the error.
func (f *reloader) Reload() error {
	data, format, unchanged, err := f.fetch()
	if err == nil && unchanged {
		f.mu.RLock()
		defer f.mu.RUnlock()
		return f.lastErr // nothing new: still good, or still stale
	}
	var set *PolicySet
	if err == nil {
		sum := sha256.Sum256(data)
		f.mu.RLock()
		same := f.set != nil && f.lastErr == nil && bytes.Equal(sum[:], f.sum[:])
		f.mu.RUnlock()
		if same {
			return nil
		}
		set, err = Parse(data, format)
		if err == nil {
			f.mu.Lock()
			f.set, f.sum, f.lastErr, f.source = set, sum, nil, f.name
			f.mu.Unlock()
		}
	}
	if err != nil {
		err = fmt.Errorf("recourse/policy: loading %s: %w", f.name, err)
		f.mu.Lock()
		first := f.set == nil
		f.lastErr = err
		f.source = fmt.Sprintf("%s (stale: last reload failed: %v)", f.name, err)
		f.mu.Unlock()
		if first {
			return err
		}
	}
	v := f.version.Add(1)
	if f.observer != nil {
		f.observer.OnPolicyReload(timeline.PolicyReload{Source: f.name, Version: v, Err: err})
	}
	return err
}

func (f *reloader) watch() {
	defer close(f.done)
	for {
		if clock.Sleep(stopContext{f.stop}, f.clock, f.interval) != nil {
			return
		}
		_ = f.Reload()
	}
}

// Close stops polling. The provider keeps serving its last good set.
func (f *reloader) Close() error {
	f.closed.Do(func() {
		if f.stop != nil {
			close(f.stop)
			<-f.done
		}
	})
	return nil
}

// stopContext is a context that is done when stop is closed.
type stopContext struct{ stop chan struct{} }

func (s stopContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (s stopContext) Done() <-chan struct{}       { return s.stop }
func (s stopContext) Value(any) any               { return nil }
func (s stopContext) Err() error {
	select {
	case <-s.stop:
		return context.Canceled
	default:
		return nil
	}
}
