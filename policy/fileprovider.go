package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// DefaultMaxPolicyBytes is the largest policy set a FileProvider reads or
// a RemoteProvider fetches unless MaxPolicyBytes says otherwise (4 MiB).
const DefaultMaxPolicyBytes = 4 << 20

// errClosed is returned (wrapped) by Reload once the provider is closed,
// and by a reload that Close interrupted.
var errClosed = errors.New("recourse/policy: provider closed")

// errNilContext is returned by the providers' Policy for a nil context.
var errNilContext = errors.New("recourse/policy: Policy called with a nil context (use context.Background())")

// FileProvider serves policies from a YAML or JSON file (by extension:
// ".json" is JSON, anything else YAML) and reloads it when it changes.
//
// Changes are found by polling: every interval the file is read and its
// content hashed. Polling needs no extra dependency, sees a change however
// it was made — an edit in place, an atomic rename, a Kubernetes ConfigMap
// swapping a symlink, which file-event watchers handle poorly — and costs
// one small read per interval.
//
// A reload that fails (unreadable file, bad syntax, an invalid field, a
// file that is empty, larger than MaxPolicyBytes or changing while it is
// read) changes nothing: the provider keeps serving the last good set,
// Err reports the failure, observers get OnPolicyReload with the error,
// and Source (the timeline attribute policy_source) says the set is stale
// until a good file is loaded. An editor that truncates the file and then
// writes it is caught mid-way as such a failure, never as an empty set.
//
// The budgets the file declares (its budgets section) are built by the
// provider and served by Budget, which makes it a BudgetSource: an
// executor over it uses them with nothing registered in code.
type FileProvider struct {
	reloader
}

// reloader serves a policy set loaded from a source and reloaded by
// polling, keeping the last good set when a reload fails. FileProvider
// and RemoteProvider differ only in how they fetch.
type reloader struct {
	// Set by the options, then read-only.
	name      string // "file:PATH", "remote:URL"
	interval  time.Duration
	clock     clock.Clock
	observer  timeline.Observer
	limit     int64
	timeout   time.Duration // RemoteProvider only
	client    *http.Client  // RemoteProvider only
	crossHost bool          // RemoteProvider only

	fetch  fetchFunc
	ctx    context.Context // ended by Close; every fetch runs under it
	cancel context.CancelFunc
	done   chan struct{} // closed when the poller exits; nil without one
	closed sync.Once

	started atomic.Uint64 // reloads started, numbering them

	mu      sync.RWMutex
	applied uint64 // the number of the last reload committed
	set     *PolicySet
	budgets map[string]builtBudget // built from set.Budgets
	sum     [sha256.Size]byte      // of set's source text
	tag     string                 // set's ETag, for conditional fetches
	lastErr error
	source  string

	version    atomic.Uint64
	inObserver atomic.Bool // the poller is calling the observer

	subsMu sync.Mutex
	subs   []*subscription // copy-on-write: notify reads a snapshot
}

// subscription is one observer added by SubscribeReloads.
type subscription struct{ o timeline.Observer }

// fetched is what a fetch found.
type fetched struct {
	data   []byte
	format Format
	// tag is the ETag of data, or of the set the source still holds.
	tag string
	// unchanged says the source still holds the set whose ETag the fetch
	// sent: the last good set.
	unchanged bool
}

// fetchFunc reads a source under ctx. tag is the ETag of the last good
// set ("" if none is known); a source that still holds it may answer
// unchanged.
type fetchFunc func(ctx context.Context, tag string) (fetched, error)

// FileOption configures a FileProvider or a RemoteProvider.
type FileOption func(*reloader)

// WatchInterval sets how often the source is checked for changes (default
// 5s); 0 turns polling off (call Reload yourself).
func WatchInterval(d time.Duration) FileOption { return func(r *reloader) { r.interval = d } }

// WatchClock sets the clock polling waits on (default clock.Real).
func WatchClock(c clock.Clock) FileOption { return func(r *reloader) { r.clock = clockx.Or(c) } }

// ReloadObserver reports every reload, good or failed, to o: a new set, a
// failure (the last good set stays), and the recovery of a source that
// failed and then again serves the set in use. A panic in o is recovered
// and returned by the Reload (or the constructor) that reported to it; on
// the poller, which has no caller, it is dropped. Events of overlapping
// reloads may arrive out of order: their Version orders them. A nil o, a
// nil pointer or any observer that does nothing (see timeline.IsNoop)
// means none.
func ReloadObserver(o timeline.Observer) FileOption {
	return func(r *reloader) {
		if timeline.IsNoop(o) {
			o = nil
		}
		r.observer = o
	}
}

// MaxPolicyBytes bounds the size of the policy set a FileProvider reads
// or a RemoteProvider fetches (default DefaultMaxPolicyBytes; n ≤ 0 means
// the default). A larger one is an error naming its size and the cap.
func MaxPolicyBytes(n int64) FileOption {
	return func(r *reloader) {
		if n <= 0 {
			n = DefaultMaxPolicyBytes
		}
		r.limit = n
	}
}

// NewFileProvider loads path and, unless WatchInterval(0) is given, starts
// polling it. The first load must succeed: its error names the key, the
// field and the value. Close stops the polling.
func NewFileProvider(path string, opts ...FileOption) (*FileProvider, error) {
	f := &FileProvider{}
	f.configure("file:"+path, opts)
	format, limit := formatOf(path), f.limit
	fetch := func(context.Context, string) (fetched, error) {
		data, err := readPolicyFile(path, limit)
		return fetched{data: data, format: format}, err
	}
	if err := f.start(fetch); err != nil {
		return nil, err
	}
	return f, nil
}

// readPolicyFile reads path: a regular file (not a FIFO or a device,
// whose reads could block or never end) of at most limit bytes, that did
// not change while it was read.
func readPolicyFile(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (mode %v)", path, info.Mode())
	}
	// Opened without blocking: a path swapped for a FIFO between the
	// Stat above and this open (a symlink flip) must not hang the reader;
	// the Stat of the open file below is the check that counts.
	file, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	before, err := file.Stat()
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (mode %v)", path, before.Mode())
	}
	if before.Size() > limit {
		return nil, tooLarge(path, before.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(file, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, -1, limit)
	}
	after, err := file.Stat()
	if err != nil {
		return nil, err
	}
	if after.Size() != before.Size() || after.Size() != int64(len(data)) || !after.ModTime().Equal(before.ModTime()) {
		return nil, fmt.Errorf("%s changed while it was read (%d bytes read, now %d bytes): being rewritten?", path, len(data), after.Size())
	}
	return data, nil
}

// tooLarge reports a policy set over the cap; size < 0 means unknown.
func tooLarge(what string, size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%s is more than %d bytes, over the cap (MaxPolicyBytes)", what, limit)
	}
	return fmt.Errorf("%s is %d bytes, over the cap of %d bytes (MaxPolicyBytes)", what, size, limit)
}

// configure sets r's name and defaults, then applies opts (nil ones are
// skipped).
func (r *reloader) configure(name string, opts []FileOption) {
	r.name, r.interval, r.clock = name, 5*time.Second, clock.Real{}
	r.limit, r.timeout = DefaultMaxPolicyBytes, defaultFetchTimeout
	for _, o := range opts {
		if o != nil {
			o(r)
		}
	}
}

// start loads r's source once (that must succeed) and starts polling.
func (r *reloader) start(fetch fetchFunc) error {
	r.fetch = fetch
	r.ctx, r.cancel = context.WithCancel(context.Background())
	err := r.Reload()
	r.mu.RLock()
	loaded := r.set != nil
	r.mu.RUnlock()
	if err == nil && !loaded { // not expected: a first Reload's nil means a set
		err = fmt.Errorf("recourse/policy: loading %s: no policy set", r.name)
	}
	if err != nil {
		r.cancel()
		return err
	}
	if r.interval > 0 {
		r.done = make(chan struct{})
		go r.watch()
	}
	return nil
}

// Policy returns key's policy, the default section's (with Key set) for a
// key the file does not name, or an error wrapping ErrNotFound. A nil ctx
// is an error.
func (f *reloader) Policy(ctx context.Context, key Key) (Policy, error) {
	if ctx == nil {
		return Policy{}, errNilContext
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.set == nil {
		return Policy{}, fmt.Errorf("%w %q: the provider has no policy set (build it with NewFileProvider or NewRemoteProvider)", ErrNotFound, key.String())
	}
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

// Set returns a copy of the policy set being served (nil before one is
// loaded).
func (f *reloader) Set() *PolicySet {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.set == nil {
		return nil
	}
	s := &PolicySet{Policies: maps.Clone(f.set.Policies), Budgets: maps.Clone(f.set.Budgets)}
	if f.set.Default != nil {
		d := *f.set.Default
		s.Default = &d
	}
	return s
}

// Budget returns the budget the set being served declares as name (its
// budgets section), built on the provider's clock (WatchClock): the same
// instance, with its state, across reloads that leave its declaration
// unchanged, a new one after a reload that changes it. A failed reload
// changes nothing. It implements BudgetSource.
func (f *reloader) Budget(name string) (middleware.Budget, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.budgets[name]
	return b.b, ok
}

// Version changes whenever a reload succeeds with new content, fails, or
// finds the source serving the set in use again after a failure.
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
// set is served; on failure the previous set stays. It returns the error
// (after Close, one saying the provider is closed), joined with that of
// an observer that panicked on the reload's event.
func (f *reloader) Reload() error {
	ev, err := f.reload()
	if ev != nil {
		if perr := f.notify(*ev); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}

// reload fetches and commits. Reloads may overlap (a user's Reload never
// waits for a stuck poll); each takes a sequence number when it starts,
// and one that finishes after a later-started reload has committed is
// dropped, so a slow fetch never overwrites what a later one found. It
// returns the event to report, if any.
func (f *reloader) reload() (*timeline.PolicyReload, error) {
	if f.fetch == nil {
		return nil, fmt.Errorf("recourse/policy: Reload of a provider not built with NewFileProvider or NewRemoteProvider")
	}
	if f.ctx.Err() != nil {
		return nil, fmt.Errorf("%w: not loading %s", errClosed, f.name)
	}
	f.mu.RLock()
	seq := f.started.Add(1)
	base := basis{loaded: f.set != nil, tag: f.tag, sum: f.sum}
	f.mu.RUnlock()
	res, set, err := f.fetchAndParse(base)
	if err != nil && f.ctx.Err() != nil {
		// Close interrupted the fetch: that says nothing of the source.
		return nil, fmt.Errorf("%w while loading %s: %v", errClosed, f.name, err)
	}
	if err != nil {
		err = fmt.Errorf("recourse/policy: loading %s: %w", f.name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		// Closed while reading or parsing: a closed provider's set stays
		// what it was when Close returned.
		return nil, fmt.Errorf("%w: not installing what was read from %s", errClosed, f.name)
	}
	unchanged := err == nil && set == nil
	moved := (f.set != nil) != base.loaded || f.sum != base.sum
	if seq < f.applied || unchanged && moved {
		// A later reload committed first, or this one found the source
		// unchanged from a set no longer served: the later result stands.
		if err != nil {
			return nil, fmt.Errorf("%w (superseded by a later reload)", err)
		}
		return nil, nil
	}
	f.applied = seq
	switch {
	case err != nil:
		first := f.set == nil
		f.lastErr = err
		f.source = fmt.Sprintf("%s (stale: last reload failed: %s)", f.name, brief(err))
		if first {
			return nil, err
		}
		return &timeline.PolicyReload{Source: f.name, Version: f.version.Add(1), Err: err}, err
	case set == nil: // the set in use, unchanged
		if f.tag = res.tag; f.lastErr == nil {
			return nil, nil
		}
		// The source failed before and serves the set in use again.
		f.lastErr, f.source = nil, f.name
	default:
		f.set, f.sum, f.tag, f.lastErr, f.source = set, sha256.Sum256(res.data), res.tag, nil, f.name
		f.budgets = rebuild(f.budgets, set.Budgets, f.clock)
	}
	return &timeline.PolicyReload{Source: f.name, Version: f.version.Add(1)}, nil
}

// maxNote bounds the error text Source carries: it goes into every
// call's timeline, and a broken file can hold thousands of field errors.
const maxNote = 512

// brief returns err's first line, cut to maxNote bytes (on a rune
// boundary), saying how much more Err holds.
func brief(err error) string {
	msg := err.Error()
	first, rest, more := strings.Cut(msg, "\n")
	if len(first) > maxNote {
		cut := maxNote
		for cut > 0 && !utf8.RuneStart(first[cut]) {
			cut--
		}
		first, more = first[:cut]+"…", true
	}
	if !more {
		return first
	}
	if n := strings.Count(rest, "\n") + 1; rest != "" {
		return fmt.Sprintf("%s (and %d more; see Err)", first, n)
	}
	return first + " (see Err)"
}

// basis is the set served when a reload started.
type basis struct {
	loaded bool
	tag    string
	sum    [sha256.Size]byte
}

// fetchAndParse fetches the source and parses what is new: set is nil
// when the source holds the set of base. A panic (in a user's
// http.RoundTripper, say) becomes a *middleware.PanicError.
func (f *reloader) fetchAndParse(base basis) (res fetched, set *PolicySet, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = middleware.NewPanicError("provider", f.name, r)
		}
	}()
	res, err = f.fetch(f.ctx, base.tag)
	switch {
	case err != nil:
		return res, nil, err
	case res.unchanged && !base.loaded:
		return res, nil, errors.New("the source answered 'not modified' but no set was ever loaded")
	case res.unchanged, base.loaded && sha256.Sum256(res.data) == base.sum:
		return res, nil, nil
	}
	set, err = parse(f.ctx, res.data, res.format)
	return res, set, err
}

// notify reports ev to the ReloadObserver and to every subscriber,
// turning their panics into errors (joined).
func (f *reloader) notify(ev timeline.PolicyReload) error {
	f.subsMu.Lock()
	subs := f.subs
	f.subsMu.Unlock()
	var errs []error
	if f.observer != nil {
		errs = append(errs, f.deliver(f.observer, ev))
	}
	for _, s := range subs {
		errs = append(errs, f.deliver(s.o, ev))
	}
	return errors.Join(errs...)
}

// deliver reports ev to o, turning a panic into an error.
func (f *reloader) deliver(o timeline.Observer, ev timeline.PolicyReload) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = middleware.NewPanicError("observer", f.name, r)
		}
	}()
	o.OnPolicyReload(ev)
	return nil
}

// SubscribeReloads adds o to the observers told of every later reload,
// good or failed, as the ReloadObserver is, and returns a func that
// removes it (safe to call more than once). A nil or no-op o (see
// timeline.IsNoop) is not added. A panic in o is handled as one in the
// ReloadObserver. It implements ReloadSubscriber.
func (f *reloader) SubscribeReloads(o timeline.Observer) (unsubscribe func()) {
	if timeline.IsNoop(o) {
		return func() {}
	}
	s := &subscription{o: o}
	f.subsMu.Lock()
	f.subs = append(slices.Clip(f.subs), s)
	f.subsMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.subsMu.Lock()
			f.subs = slices.DeleteFunc(slices.Clone(f.subs), func(x *subscription) bool { return x == s })
			f.subsMu.Unlock()
		})
	}
}

// watch polls until Close. Its observer errors (panics) have no caller to
// go to; the reload's own result is in Err and Source.
func (f *reloader) watch() {
	defer close(f.done)
	for {
		if clockx.Sleep(f.ctx, f.clock, f.interval) != nil {
			return
		}
		if ev, _ := f.reload(); ev != nil {
			f.inObserver.Store(true)
			_ = f.notify(*ev)
			f.inObserver.Store(false)
		}
	}
}

// Close stops polling, ending a fetch in progress, and waits for the
// poller to exit — unless the poller is delivering an event to the
// observer (which may be what called Close): it then exits as soon as the
// observer returns. The provider keeps serving its last good set; Reload
// returns an error saying so from then on.
func (f *reloader) Close() error {
	f.closed.Do(func() {
		if f.cancel != nil {
			f.cancel()
		}
		// An observer called by the poller may call Close: the poller
		// then exits as soon as the observer returns, without waiting.
		if f.done != nil && !f.inObserver.Load() {
			<-f.done
		}
	})
	return nil
}
