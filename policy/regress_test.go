package policy

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

const (
	goodDoc  = "policies:\n  a.b: {retry: {max_attempts: 2}}\n"
	goodDoc2 = "policies:\n  a.b: {retry: {max_attempts: 5}}\n"
)

// attemptsOf returns a.b's max_attempts as served by p, failing the test
// when p serves no policy for it.
func attemptsOf(t *testing.T, p Provider) int {
	t.Helper()
	pol, err := p.Policy(context.Background(), ParseKey("a.b"))
	if err != nil {
		t.Fatalf("a.b: %v", err)
	}
	return pol.Retry.MaxAttempts
}

// events returns a copy of the reload events seen so far.
func (r *reloads) events() []timeline.PolicyReload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]timeline.PolicyReload(nil), r.got...)
}

// noPanic runs f, turning a panic into a test failure.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked: %v", what, r)
		}
	}()
	f()
}

// Item 17: an empty or comment-only document is an error, never an empty set.
func TestRegressEmptyDocumentIsAnError(t *testing.T) {
	for _, c := range []struct {
		doc    string
		format Format
	}{
		{"", YAML}, {"   \n\n", YAML}, {"# nothing here yet\n# really\n", YAML}, {"~\n", YAML}, {"null", YAML},
		{"---\n", YAML}, {"{}\n", YAML}, {"policies:\n", YAML}, {"policies: {}\ndefault:\n", YAML},
		{"", JSON}, {" \n", JSON}, {"null", JSON}, {"{}", JSON}, {`{"policies": {}}`, JSON},
	} {
		set, err := Parse([]byte(c.doc), c.format)
		if err == nil || !strings.Contains(err.Error(), "no policies") {
			t.Errorf("Parse(%q, %v) = %+v, %v; want an error saying it has no policies", c.doc, c.format, set, err)
		}
	}
	// A default section alone is a usable set.
	if _, err := Parse([]byte("default: {retry: {max_attempts: 2}}\n"), YAML); err != nil {
		t.Fatal(err)
	}
}

// Item 17: a file emptied (truncated before a rewrite) or half-written
// while the provider reloads keeps the last good set.
func TestRegressEmptiedFileKeepsTheLastGoodSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	writeFile(t, path, goodDoc)
	obs := &reloads{}
	fp, err := NewFileProvider(path, WatchInterval(0), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	for _, mid := range []string{"", "# being rewritten\n", "policies:\n", "policies:\n  a.b: {retry: {max_att"} {
		writeFile(t, path, mid)
		if err := fp.Reload(); err == nil {
			t.Errorf("reload of %q succeeded", mid)
		}
		if got := attemptsOf(t, fp); got != 2 || fp.Err() == nil || !strings.Contains(fp.Source(), "stale") {
			t.Fatalf("after %q: attempts %d, err %v, source %q", mid, got, fp.Err(), fp.Source())
		}
	}
	writeFile(t, path, goodDoc2)
	if err := fp.Reload(); err != nil || attemptsOf(t, fp) != 5 {
		t.Fatalf("rewritten file: err %v", err)
	}
	evs := obs.events()
	if n := len(evs); n != 6 || evs[0].Err != nil || evs[5].Err != nil {
		t.Fatalf("events %+v", evs)
	}
	for _, ev := range evs[1:5] {
		if ev.Err == nil {
			t.Fatalf("a failed reload reported success: %+v", evs)
		}
	}
}

// Item 17: a writer that truncates then writes (os.WriteFile) racing the
// reloads never leaves the provider without a.b.
func TestRegressTruncateThenWriteRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies.yaml")
	writeFile(t, path, goodDoc)
	fp, err := NewFileProvider(path, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			doc := goodDoc
			if i%2 == 1 {
				doc = goodDoc2
			}
			_ = os.WriteFile(path, []byte(doc), 0o644)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 300; i++ {
		_ = fp.Reload()
		if n := attemptsOf(t, fp); n != 2 && n != 5 {
			t.Fatalf("reload %d: a.b has max_attempts %d", i, n)
		}
	}
}

// scripted is a loopback policy server whose answers a test scripts per
// request; it counts requests and records each If-None-Match it gets.
type scripted struct {
	mu     sync.Mutex
	answer func(w http.ResponseWriter, r *http.Request)
	inm    []string
	n      atomic.Int32
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.n.Add(1)
	s.mu.Lock()
	s.inm = append(s.inm, r.Header.Get("If-None-Match"))
	answer := s.answer
	s.mu.Unlock()
	answer(w, r)
}

func (s *scripted) set(f func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

func etagOf(doc string) string { return fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(doc))) }

// serveDoc answers doc with its ETag, or 304 when the request names it.
func serveDoc(doc string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		etag := etagOf(doc)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = io.WriteString(w, doc)
	}
}

func serveStatus(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "policy store says no", code) }
}

func newScripted(t *testing.T, answer func(http.ResponseWriter, *http.Request)) (*scripted, *httptest.Server) {
	t.Helper()
	s := &scripted{answer: answer}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

// Item 17: an empty or comment-only remote body is an error.
func TestRegressEmptyRemoteBodyKeepsTheLastGoodSet(t *testing.T) {
	s, srv := newScripted(t, serveDoc(goodDoc))
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	for _, body := range []string{"", "# maintenance\n"} {
		s.set(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
		if err := rp.Reload(); err == nil {
			t.Errorf("an empty body %q loaded", body)
		}
		if attemptsOf(t, rp) != 2 || !strings.Contains(rp.Source(), "stale") {
			t.Fatalf("body %q: source %q", body, rp.Source())
		}
	}
	if _, err := NewRemoteProvider(srv.URL, WatchInterval(0)); err == nil {
		t.Fatal("a provider was built from an empty body")
	}
}

// Item 18: a 304 (unchanged since the last good set) after failed polls
// clears the error, and observers hear of the recovery.
func TestRegress304AfterAFailureClearsTheError(t *testing.T) {
	s, srv := newScripted(t, serveDoc(goodDoc))
	obs := &reloads{}
	rp, err := NewRemoteProvider(srv.URL+"/p.yaml", WatchInterval(0), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	for _, bad := range []func(http.ResponseWriter, *http.Request){
		serveStatus(http.StatusServiceUnavailable),
		serveDoc("policies:\n  a.b: {retry: {jitter: sideways}}\n"), // a bad set with its own ETag
	} {
		s.set(bad)
		if err := rp.Reload(); err == nil || rp.Err() == nil {
			t.Fatal("a failed poll reported success")
		}
		s.set(serveDoc(goodDoc)) // back to the last good set: the server answers 304
		v := rp.Version()
		if err := rp.Reload(); err != nil || rp.Err() != nil || strings.Contains(rp.Source(), "stale") {
			t.Fatalf("after the 304: err %v, Err %v, source %q", err, rp.Err(), rp.Source())
		}
		if rp.Version() == v {
			t.Fatal("recovery did not change the version (timelines would keep saying stale)")
		}
		if evs := obs.events(); evs[len(evs)-1].Err != nil {
			t.Fatalf("recovery reported as %v", evs[len(evs)-1].Err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, inm := range s.inm[1:] {
		if inm != etagOf(goodDoc) {
			t.Fatalf("request %d sent If-None-Match %q, want the last good set's ETag", i+1, inm)
		}
	}
	if attemptsOf(t, rp) != 2 {
		t.Fatal("lost the set")
	}
}

// Item 19: a 304 on the first fetch (or to a request that named no ETag)
// is not a policy set.
func TestRegress304WithoutAGoodSet(t *testing.T) {
	_, srv := newScripted(t, serveStatus(http.StatusNotModified))
	var rp *RemoteProvider
	var err error
	noPanic(t, "NewRemoteProvider", func() { rp, err = NewRemoteProvider(srv.URL, WatchInterval(0)) })
	if err == nil {
		noPanic(t, "Policy", func() { _, _ = rp.Policy(context.Background(), ParseKey("a.b")) })
		rp.Close()
		t.Fatal("NewRemoteProvider accepted a 304 as its first set")
	}
	if !strings.Contains(err.Error(), "304") {
		t.Fatalf("err = %v, want it to name the 304", err)
	}

	// A server that sends no ETag and then answers 304 anyway: the set
	// it stands for is unknown, so it is an error.
	s, srv2 := newScripted(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, goodDoc) })
	rp, err = NewRemoteProvider(srv2.URL, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	s.set(serveStatus(http.StatusNotModified))
	if err := rp.Reload(); err == nil || !strings.Contains(err.Error(), "304") {
		t.Fatalf("unconditional 304: err %v", err)
	}
}

// Nil everywhere: the zero providers and a nil context give errors.
func TestRegressNilContextAndZeroProviders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, goodDoc)
	fp, err := NewFileProvider(path, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	var nilCtx context.Context // a nil context is the point
	for _, p := range []Provider{fp, NewStaticProvider(New("a.b")), &FileProvider{}, &RemoteProvider{}} {
		noPanic(t, fmt.Sprintf("%T.Policy(nil)", p), func() {
			_, err := p.Policy(nilCtx, ParseKey("a.b"))
			if err == nil || !strings.Contains(err.Error(), "nil context") {
				t.Errorf("%T.Policy(nil, a.b) err = %v", p, err)
			}
		})
	}
	for _, p := range []interface {
		Provider
		Reload() error
		Close() error
		Set() *PolicySet
		Source() string
	}{&FileProvider{}, &RemoteProvider{}} {
		noPanic(t, fmt.Sprintf("zero %T", p), func() {
			if _, err := p.Policy(context.Background(), ParseKey("a.b")); err == nil {
				t.Errorf("zero %T served a policy", p)
			}
			if err := p.Reload(); err == nil {
				t.Errorf("zero %T reloaded", p)
			}
			_ = p.Set()
			_ = p.Source()
			_ = p.Close()
		})
	}
	noPanic(t, "nil options", func() {
		p, err := NewFileProvider(path, nil, WatchInterval(0), WatchClock(nil), ReloadObserver(nil))
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
	})
}

// hangingBody answers the first request with goodDoc, then sends the
// headers and part of a body of later ones and hangs until the client
// goes away (or release is closed); hung receives each hang.
func hangingBody(release <-chan struct{}, hung chan<- struct{}) func(http.ResponseWriter, *http.Request) {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			_, _ = io.WriteString(w, goodDoc)
			return
		}
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "policies:\n")
		w.(http.Flusher).Flush()
		select {
		case hung <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

// Item 20: Close returns promptly while a poll is stuck in a slow body,
// even with a user client that has no timeout.
func TestRegressCloseWhileAPollHangs(t *testing.T) {
	release, hung := make(chan struct{}), make(chan struct{}, 1)
	defer close(release)
	_, srv := newScripted(t, hangingBody(release, hung))
	f := clock.NewFake(time.Unix(0, 0))
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(time.Second), WatchClock(f), WithHTTPClient(&http.Client{}))
	if err != nil {
		t.Fatal(err)
	}
	f.BlockUntil(1)
	f.Advance(time.Second)
	<-hung // the poll is stuck in the body
	closed := make(chan struct{})
	start := time.Now()
	go func() { rp.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		release <- struct{}{} // unstick it so the test can end
		<-closed
		t.Fatal("Close waited for a hung poll")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	// Close's cancellation is not a failure of the source.
	if rp.Err() != nil || attemptsOf(t, rp) != 2 {
		t.Fatalf("after Close: Err %v", rp.Err())
	}
	if err := rp.Reload(); err == nil {
		t.Fatal("Reload after Close fetched")
	}
}

// Item 20: every fetch has a timeout, whatever client the user passed.
func TestRegressFetchTimeout(t *testing.T) {
	release, hung := make(chan struct{}), make(chan struct{}, 1)
	defer close(release)
	_, srv := newScripted(t, hangingBody(release, hung))
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(0), WithHTTPClient(&http.Client{}), FetchTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	done := make(chan error, 1)
	go func() { done <- rp.Reload() }()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
	case <-time.After(3 * time.Second):
		release <- struct{}{}
		<-done
		t.Fatal("a fetch ran past its timeout")
	}
	if attemptsOf(t, rp) != 2 || !strings.Contains(rp.Source(), "stale") {
		t.Fatalf("source %q", rp.Source())
	}
}

// Item 21: no redirect to another host unless allowed; same-host ones are
// followed; the user's client is not modified and its CheckRedirect runs.
func TestRegressRedirects(t *testing.T) {
	_, other := newScripted(t, serveDoc(goodDoc))
	// Another host for the same loopback server: "localhost" for "127.0.0.1".
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	_, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/policies", http.StatusFound)
		case "/elsewhere":
			http.Redirect(w, r, otherURL+"/policies", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			serveDoc(goodDoc)(w, r)
		}
	})
	if _, err := NewRemoteProvider(srv.URL+"/elsewhere", WatchInterval(0)); err == nil || !strings.Contains(err.Error(), otherURL) {
		t.Fatalf("cross-host redirect: err %v, want it refused naming %s", err, otherURL)
	}
	var checked atomic.Int32
	userCheck := func(*http.Request, []*http.Request) error { checked.Add(1); return nil }
	client := &http.Client{CheckRedirect: userCheck}
	rp, err := NewRemoteProvider(srv.URL+"/elsewhere", WatchInterval(0), WithHTTPClient(client))
	if err == nil {
		rp.Close()
		t.Fatal("cross-host redirect followed with a user client")
	}
	rp, err = NewRemoteProvider(srv.URL+"/same", WatchInterval(0), WithHTTPClient(client))
	if err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
	rp.Close()
	if checked.Load() != 1 {
		t.Fatalf("the user's CheckRedirect ran %d times, want 1", checked.Load())
	}
	if fmt.Sprintf("%p", client.CheckRedirect) != fmt.Sprintf("%p", userCheck) || client.Timeout != 0 {
		t.Fatal("the user's client was modified")
	}
	rp, err = NewRemoteProvider(srv.URL+"/elsewhere", WatchInterval(0), AllowRedirectsToOtherHosts())
	if err != nil {
		t.Fatalf("allowed cross-host redirect: %v", err)
	}
	rp.Close()
	if _, err := NewRemoteProvider(srv.URL+"/loop", WatchInterval(0)); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("redirect loop: err %v", err)
	}
}

// Item 22: files have the remote provider's size cap, named in the error.
func TestRegressFileSizeCap(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	writeFile(t, big, goodDoc+"# "+strings.Repeat("x", DefaultMaxPolicyBytes)+"\n")
	size := strconv.Itoa(len(goodDoc) + 2 + DefaultMaxPolicyBytes + 1)
	if _, err := NewFileProvider(big, WatchInterval(0)); err == nil || !strings.Contains(err.Error(), size) || !strings.Contains(err.Error(), strconv.Itoa(DefaultMaxPolicyBytes)) {
		t.Fatalf("err = %v, want it to name the size %s and the cap", err, size)
	}
	small := filepath.Join(dir, "small.yaml")
	writeFile(t, small, goodDoc)
	fp, err := NewFileProvider(small, WatchInterval(0), MaxPolicyBytes(int64(len(goodDoc))))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	writeFile(t, small, goodDoc2+"# padding\n")
	if err := fp.Reload(); err == nil || !strings.Contains(err.Error(), strconv.Itoa(len(goodDoc))) {
		t.Fatalf("grown file: err %v", err)
	}
	if attemptsOf(t, fp) != 2 {
		t.Fatal("an oversized file replaced the set")
	}
}

// Item 22: remote bodies over the cap name their size when it is known.
func TestRegressRemoteSizeCapNamesTheSize(t *testing.T) {
	body := goodDoc + "# " + strings.Repeat("x", 5000) + "\n"
	s, srv := newScripted(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	})
	if _, err := NewRemoteProvider(srv.URL, WatchInterval(0), MaxPolicyBytes(1000)); err == nil ||
		!strings.Contains(err.Error(), strconv.Itoa(len(body))) || !strings.Contains(err.Error(), "1000") {
		t.Fatalf("err = %v", err)
	}
	// Chunked, the size is unknown: the error names the cap.
	s.set(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body[:800])
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, body[800:])
	})
	if _, err := NewRemoteProvider(srv.URL, WatchInterval(0), MaxPolicyBytes(1000)); err == nil || !strings.Contains(err.Error(), "more than 1000 bytes") {
		t.Fatalf("chunked: err = %v", err)
	}
}

// Item 22: duplicate JSON keys are rejected at any depth, as YAML's are.
func TestRegressDuplicateKeys(t *testing.T) {
	cases := []struct {
		doc    string
		format Format
		dup    string
	}{
		{`{"policies": {"a.b": {"retry": {"max_attempts": 2}}, "a.b": {"retry": {"max_attempts": 9}}}}`, JSON, `"a.b"`},
		{`{"policies": {"a.b": {"retry": {"max_attempts": 2, "max_attempts": 9}}}}`, JSON, `"max_attempts"`},
		{`{"policies": {"a.b": {}}, "policies": {"c.d": {}}}`, JSON, `"policies"`},
		{`{"default": {"retry": {}, "retry": {}}, "policies": {"a.b": {}}}`, JSON, `"retry"`},
		{`{"policies": {"a.b": {"id": "x", "unknown": {"k": 1, "k": 2}}}}`, JSON, `"k"`},
		{"policies:\n  a.b: {retry: {max_attempts: 2}}\n  a.b: {retry: {max_attempts: 9}}\n", YAML, `"a.b"`},
		{"policies:\n  a.b: {retry: {max_attempts: 2, max_attempts: 9}}\n", YAML, `"max_attempts"`},
		// Two spellings of one key: ParseKey("x") == ParseKey(".x").
		{"policies:\n  x: {}\n  .x: {}\n", YAML, `"x"`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc), c.format)
		if err == nil || !strings.Contains(err.Error(), c.dup) || !strings.Contains(strings.ToLower(err.Error()), "already") &&
			!strings.Contains(err.Error(), "duplicate") {
			t.Errorf("Parse(%s) err = %v, want it to name the duplicate %s", c.doc, err, c.dup)
		}
	}
}

// Hostile: a slow poll must not overwrite the result of a later reload.
func TestRegressConcurrentReloadsNeverGoBack(t *testing.T) {
	var n atomic.Int32
	release, slow, second := make(chan struct{}), make(chan struct{}), make(chan struct{})
	_, srv := newScripted(t, func(w http.ResponseWriter, _ *http.Request) {
		switch n.Add(1) {
		case 1:
			_, _ = io.WriteString(w, goodDoc)
		case 2: // the slow reload: it fetched the old set, and answers late
			close(slow)
			<-release
			_, _ = io.WriteString(w, "policies:\n  a.b: {retry: {max_attempts: 3}}\n")
		default: // the server has moved on
			_, _ = io.WriteString(w, goodDoc2)
		}
	})
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = rp.Reload() }()
	<-slow
	go func() { defer wg.Done(); _ = rp.Reload(); close(second) }()
	select {
	case <-second: // the second reload finished while the first was in flight
	case <-time.After(200 * time.Millisecond): // (were reloads serialized)
	}
	close(release)
	wg.Wait()
	if got := attemptsOf(t, rp); got != 5 {
		t.Fatalf("a.b has max_attempts %d, want 5 (the latest set)", got)
	}
}

// panicky panics on every reload event; calls counts them.
type panicky struct {
	timeline.BaseObserver
	calls atomic.Int32
}

func (p *panicky) OnPolicyReload(timeline.PolicyReload) {
	if p.calls.Add(1) > 1 { // the first event is the constructor's
		panic("observer bug")
	}
}

// Hostile: a panicking observer on the poller goroutine does not kill the
// process, and a direct Reload returns the panic.
func TestRegressObserverPanics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, goodDoc)
	f := clock.NewFake(time.Unix(0, 0))
	obs := &panicky{}
	fp, err := NewFileProvider(path, WatchInterval(time.Second), WatchClock(f), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	writeFile(t, path, goodDoc2)
	f.BlockUntil(1)
	f.Advance(time.Second)
	f.BlockUntil(1) // the poller survived and waits again
	if obs.calls.Load() != 2 || attemptsOf(t, fp) != 5 {
		t.Fatalf("calls %d", obs.calls.Load())
	}
	writeFile(t, path, goodDoc)
	err = fp.Reload()
	var pe *middleware.PanicError
	if !errors.As(err, &pe) || pe.Component != "observer" || fp.Err() != nil {
		t.Fatalf("Reload err %v, Err %v", err, fp.Err())
	}
}

// panicTransport panics on every request after the first.
type panicTransport struct{ n atomic.Int32 }

func (p *panicTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.n.Add(1) > 1 {
		panic("transport bug")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Hostile: a user's RoundTripper that panics during a poll fails the
// reload, visibly, instead of killing the process.
func TestRegressTransportPanics(t *testing.T) {
	_, srv := newScripted(t, serveDoc(goodDoc))
	f := clock.NewFake(time.Unix(0, 0))
	tr := &panicTransport{}
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(time.Second), WatchClock(f), WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	f.BlockUntil(1)
	f.Advance(time.Second)
	f.BlockUntil(1)
	var pe *middleware.PanicError
	if !errors.As(rp.Err(), &pe) || pe.Component != "provider" || !strings.Contains(rp.Source(), "stale") || attemptsOf(t, rp) != 2 {
		t.Fatalf("Err %v, source %q", rp.Err(), rp.Source())
	}
}

// Hostile: Set hands out a copy; changing it changes nothing served.
func TestRegressSetIsACopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, "default: {retry: {max_attempts: 4}}\n"+goodDoc)
	fp, err := NewFileProvider(path, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	s := fp.Set()
	delete(s.Policies, ParseKey("a.b"))
	s.Default.Retry.MaxAttempts = 9
	if attemptsOf(t, fp) != 2 {
		t.Fatal("deleting from Set() removed a served policy")
	}
	if p, _ := fp.Policy(context.Background(), ParseKey("x.y")); p.Retry.MaxAttempts != 4 {
		t.Fatalf("changing Set().Default changed the served default: %d", p.Retry.MaxAttempts)
	}
}

// Hostile: documents with more than they seem to hold: JSON with data
// after the document, YAML with several documents (all but the first were
// silently ignored).
func TestRegressTrailingDocuments(t *testing.T) {
	for _, c := range []struct {
		doc    string
		format Format
		want   string
	}{
		{`{"policies": {"a.b": {}}} {"policies": {"c.d": {}}}`, JSON, "after the document"},
		{`{"policies": {"a.b": {}}}]`, JSON, "invalid character"},
		{"policies: {a.b: {}}\n---\npolicies: {c.d: {retry: {max_attempts: x}}}\n", YAML, "more than one document"},
	} {
		if _, err := Parse([]byte(c.doc), c.format); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) err = %v, want %q", c.doc, err, c.want)
		}
	}
	// Comments and a lone leading or trailing separator are fine.
	for _, doc := range []string{"# policies\n---\n" + goodDoc, goodDoc + "---\n", goodDoc + "...\n"} {
		if _, err := Parse([]byte(doc), YAML); err != nil {
			t.Errorf("Parse(%q): %v", doc, err)
		}
	}
}

// Hostile: the same file in JSON and YAML means the same: a bare 0 is a
// zero duration in both.
func TestRegressJSONZeroDuration(t *testing.T) {
	y, err := Parse([]byte("policies: {a.b: {circuit: {cooldown: 0}, retry: {overall_timeout: 0}}}"), YAML)
	if err != nil {
		t.Fatal(err)
	}
	j, err := Parse([]byte(`{"policies": {"a.b": {"circuit": {"cooldown": 0}, "retry": {"overall_timeout": 0}}}}`), JSON)
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if y.Policies[ParseKey("a.b")] != j.Policies[ParseKey("a.b")] {
		t.Fatalf("YAML %+v\nJSON %+v", y.Policies, j.Policies)
	}
	if _, err := Parse([]byte(`{"policies": {"a.b": {"circuit": {"cooldown": 5}}}}`), JSON); err == nil {
		t.Fatal("a bare non-zero number was taken as a duration")
	}
}

// Hostile: an observer that calls back in — Policy, Source, Reload, even
// Close from the poller's own goroutine — neither deadlocks nor panics.
func TestRegressObserverCallsBackIn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, goodDoc)
	f := clock.NewFake(time.Unix(0, 0))
	var fp *FileProvider
	var calls atomic.Int32
	closed := make(chan struct{})
	obs := &callback{f: func(ev timeline.PolicyReload) {
		if calls.Add(1) == 1 {
			return // the constructor's load: fp is not set yet
		}
		_, _ = fp.Policy(context.Background(), ParseKey("a.b"))
		_ = fp.Source()
		_ = fp.Reload()
		_ = fp.Close()
		close(closed)
	}}
	fp, err := NewFileProvider(path, WatchInterval(time.Second), WatchClock(f), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	writeFile(t, path, goodDoc2)
	f.BlockUntil(1)
	f.Advance(time.Second)
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("an observer calling Close from the poller deadlocked")
	}
}

type callback struct {
	timeline.BaseObserver
	f func(timeline.PolicyReload)
}

func (c *callback) OnPolicyReload(ev timeline.PolicyReload) { c.f(ev) }

// Hostile inputs that must stay errors: bombs, self-reference, deep
// nesting, values that are not numbers.
func TestRegressHostileDocuments(t *testing.T) {
	bomb := "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
		"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" +
		"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\n" +
		"policies: {a.b: {id: *i}}\n"
	for _, c := range []struct {
		doc    string
		format Format
	}{
		{bomb, YAML},
		{"policies: &p {a.b: *p}\n", YAML},
		{strings.Repeat("[", 100000), YAML},
		{`{"policies": {"a.b": {"id": ` + strings.Repeat("[", 100000) + `}}}`, JSON},
		{"policies: {a.b: {retry: {multiplier: .nan}}}", YAML},
		{"policies: {a.b: {retry: {multiplier: .inf}}}", YAML},
		{"policies: {a.b: {retry: {multiplier: 1e400}}}", YAML},
		{`{"policies": {"a.b": {"retry": {"multiplier": 1e400}}}}`, JSON},
		{"policies: {a.b: {hedge: {enabled: true, quantile: .nan}}}", YAML},
		{"policies: {a.b: {circuit: {failure_ratio: -.inf}}}", YAML},
		{"policies: {a.b: {retry: {max_attempts: 1e3}}}", YAML},
		{`{"policies": {"a.b": {"retry": {"max_attempts": 3.0}}}}`, JSON},
		{"policies: {a.b: {retry: {max_backoff: 300000000h}}}", YAML},
		{"policies: {a.b: {budget_cost: -1}}", YAML},
		{"policies: {a.b: {retry: {max_attempts: -3}}}", YAML},
		{"<html><body>502 Bad Gateway</body></html>", YAML},
		{"\x00\x01\x02\xff", YAML},
		{"policies: {a.b: {}}\n\tbad", YAML},
	} {
		start := time.Now()
		if set, err := Parse([]byte(c.doc), c.format); err == nil {
			t.Errorf("Parse(%.60q) = %+v, want an error", c.doc, set)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Parse(%.60q) took %v", c.doc, d)
		}
	}
}

// Hostile: the host comparison behind the redirect policy: default ports,
// case, https upgrades and downgrades.
func TestRegressRedirectHostComparison(t *testing.T) {
	check := checkRedirect(nil, false)
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"http://policy.example/p", "http://policy.example/q", true},
		{"http://policy.example/p", "http://POLICY.example:80/q", true},
		{"https://policy.example/p", "https://policy.example:443/q", true},
		{"http://policy.example/p", "https://policy.example/q", true},  // upgrade
		{"https://policy.example/p", "http://policy.example/q", false}, // downgrade
		{"http://policy.example:8080/p", "https://policy.example/q", false},
		{"http://policy.example/p", "http://policy.example:8080/q", false},
		{"http://policy.example/p", "http://evil.example/q", false},
		{"http://policy.example/p", "http://policy.example.evil.example/q", false},
		{"http://127.0.0.1:1/p", "http://localhost:1/q", false},
	} {
		from, _ := http.NewRequest(http.MethodGet, c.from, nil)
		to, _ := http.NewRequest(http.MethodGet, c.to, nil)
		err := check(to, []*http.Request{from})
		if (err == nil) != c.ok || err != nil && !strings.Contains(err.Error(), c.to) {
			t.Errorf("%s → %s: err %v, want ok=%v", c.from, c.to, err, c.ok)
		}
	}
	// A user's CheckRedirect that stops at the redirect: its answer (the
	// 3xx) is not a policy set.
	_, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/policies", http.StatusMovedPermanently)
			return
		}
		serveDoc(goodDoc)(w, r)
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if _, err := NewRemoteProvider(srv.URL+"/moved", WatchInterval(0), WithHTTPClient(client)); err == nil || !strings.Contains(err.Error(), "301") {
		t.Fatalf("err %v", err)
	}
}

// Hostile: a TLS policy server redirecting to plain http on its own host.
func TestRegressRedirectDowngradeRefused(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.Host+"/policies", http.StatusFound)
	}))
	defer srv.Close()
	if _, err := NewRemoteProvider(srv.URL, WatchInterval(0), WithHTTPClient(srv.Client())); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("err %v", err)
	}
}

// Hostile: servers that reset mid-body, answer gzip bombs or flap between
// good and bad: every poll's event tells the truth, the set is the last
// good one, and the next good answer is served.
func TestRegressFlappingServer(t *testing.T) {
	s, srv := newScripted(t, serveDoc(goodDoc))
	obs := &reloads{}
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(0), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	reset := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "policies:\n")
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	bomb := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, goodDoc+"#")
		chunk := []byte(strings.Repeat("x", 1<<16))
		for i := 0; i < 72; i++ { // 4.5 MiB unzipped
			_, _ = zw.Write(chunk)
		}
		_ = zw.Close()
	}
	garbage := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte{0, 0xff, 0xfe, '{', '['}) }
	steps := []struct {
		answer   func(http.ResponseWriter, *http.Request)
		ok       bool
		attempts int
	}{
		{reset, false, 2},
		{serveDoc(goodDoc2), true, 5},
		{bomb, false, 5},
		{garbage, false, 5},
		{serveDoc(goodDoc2), true, 5}, // a 304: recovered
		{serveStatus(http.StatusInternalServerError), false, 5},
		{serveDoc(goodDoc), true, 2},
		{serveDoc(goodDoc), true, 2}, // unchanged, healthy: no event
	}
	for i, st := range steps {
		s.set(st.answer)
		err := rp.Reload()
		if (err == nil) != st.ok || (rp.Err() == nil) != st.ok || strings.Contains(rp.Source(), "stale") == st.ok {
			t.Fatalf("step %d: err %v, Err %v, source %q", i, err, rp.Err(), rp.Source())
		}
		if got := attemptsOf(t, rp); got != st.attempts {
			t.Fatalf("step %d: attempts %d, want %d", i, got, st.attempts)
		}
	}
	evs := obs.events()
	if len(evs) != 1+len(steps)-1 {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(steps), evs)
	}
	for i, st := range steps[:len(steps)-1] {
		if ev := evs[i+1]; (ev.Err == nil) != st.ok || ev.Version <= evs[i].Version {
			t.Fatalf("event %d = %+v, want ok=%v", i+1, ev, st.ok)
		}
	}
}

// Hostile: a Kubernetes-style ConfigMap update (a symlink swapped to a
// new directory) is picked up; a deleted file fails and recovers.
func TestRegressSymlinkSwapAndDeletedFile(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{"v1": goodDoc, "v2": goodDoc2} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "p.yaml"), doc)
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Skip(err)
	}
	path := filepath.Join(dir, "p.yaml")
	if err := os.Symlink(filepath.Join("..data", "p.yaml"), path); err != nil {
		t.Fatal(err)
	}
	fp, err := NewFileProvider(path, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	if err := os.Symlink("v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := fp.Reload(); err != nil || attemptsOf(t, fp) != 5 {
		t.Fatalf("after the swap: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "v2", "p.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := fp.Reload(); err == nil || attemptsOf(t, fp) != 5 {
		t.Fatalf("deleted file: %v", err)
	}
	writeFile(t, filepath.Join(dir, "v2", "p.yaml"), goodDoc)
	if err := fp.Reload(); err != nil || attemptsOf(t, fp) != 2 || fp.Err() != nil {
		t.Fatalf("re-created file: %v", err)
	}
}

// Hostile: a user's Reload does not wait for a poll stuck on a hung
// server, and the stuck poll's eventual failure does not undo it.
func TestRegressReloadDoesNotWaitForAStuckPoll(t *testing.T) {
	var n atomic.Int32
	hung := make(chan struct{})
	_, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			_, _ = io.WriteString(w, goodDoc)
		case 2:
			close(hung)
			<-r.Context().Done()
		default:
			_, _ = io.WriteString(w, goodDoc2)
		}
	})
	f := clock.NewFake(time.Unix(0, 0))
	obs := &reloads{}
	rp, err := NewRemoteProvider(srv.URL, WatchInterval(time.Second), WatchClock(f), ReloadObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	f.BlockUntil(1)
	f.Advance(time.Second)
	<-hung
	done := make(chan error, 1)
	go func() { done <- rp.Reload() }()
	select {
	case err := <-done:
		if err != nil || attemptsOf(t, rp) != 5 {
			t.Fatalf("Reload: %v", err)
		}
	case <-time.After(2 * time.Second):
		rp.Close()
		<-done
		t.Fatal("Reload waited for a stuck poll")
	}
	rp.Close()
	if rp.Err() != nil || attemptsOf(t, rp) != 5 || len(obs.events()) != 2 {
		t.Fatalf("after Close: Err %v, events %+v", rp.Err(), obs.events())
	}
}

// Hostile: a URL with credentials does not put the password in Source
// (a timeline attribute), errors or events.
func TestRegressRemoteURLPasswordRedacted(t *testing.T) {
	s, srv := newScripted(t, serveDoc(goodDoc))
	obs := &reloads{}
	u := strings.Replace(srv.URL, "http://", "http://policy-reader:hunter2@", 1)
	rp, err := NewRemoteProvider(u, WatchInterval(0), ReloadObserver(obs), WithHTTPClient(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	s.set(serveStatus(http.StatusBadGateway))
	err = rp.Reload()
	for _, text := range []string{rp.Source(), err.Error(), obs.events()[1].Source, obs.events()[1].Err.Error()} {
		if strings.Contains(text, "hunter2") || !strings.Contains(text, "policy-reader") {
			t.Fatalf("%q shows the password, or not whose it is", text)
		}
	}
}

// Hostile: a JSON file saved with a byte-order mark (as some editors do)
// loads, as a YAML one does.
func TestRegressJSONByteOrderMark(t *testing.T) {
	for _, format := range []Format{JSON, YAML} {
		if _, err := Parse([]byte("\ufeff"+`{"policies": {"a.b": {}}}`), format); err != nil {
			t.Errorf("format %v: %v", format, err)
		}
	}
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Hostile: a program that replaced http.DefaultTransport with its own
// RoundTripper (for tracing, say) can still build a RemoteProvider.
func TestRegressReplacedDefaultTransport(t *testing.T) {
	_, srv := newScripted(t, serveDoc(goodDoc))
	saved := http.DefaultTransport
	defer func() { http.DefaultTransport = saved }()
	var used atomic.Int32
	http.DefaultTransport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used.Add(1)
		return saved.RoundTrip(r)
	})
	var rp *RemoteProvider
	var err error
	noPanic(t, "NewRemoteProvider", func() { rp, err = NewRemoteProvider(srv.URL, WatchInterval(0)) })
	if err != nil {
		t.Fatal(err)
	}
	rp.Close()
	if used.Load() != 1 {
		t.Fatalf("the replaced DefaultTransport served %d requests", used.Load())
	}
}

// Hostile: readers on many goroutines while the poller and direct
// reloads flip the file between sets (run with -race): every read sees
// one whole set.
func TestRegressReadersDuringReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, goodDoc)
	fp, err := NewFileProvider(path, WatchInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				p, err := fp.Policy(context.Background(), ParseKey("a.b"))
				if err != nil || p.Retry.MaxAttempts != 2 && p.Retry.MaxAttempts != 5 {
					t.Errorf("a.b: %+v, %v", p.Retry, err)
					return
				}
				if s := fp.Set(); s == nil || len(s.Policies) != 1 {
					t.Errorf("Set() = %+v", s)
					return
				}
				_, _, _ = fp.Source(), fp.Err(), fp.Version()
			}
		}()
	}
	for i := 0; i < 40; i++ {
		doc := goodDoc
		if i%2 == 1 {
			doc = goodDoc2
		}
		writeFile(t, path, doc)
		_ = fp.Reload()
	}
	close(stop)
	wg.Wait()
}

// Hostile: a file with thousands of broken keys does not put megabytes of
// errors into Source, which every call's timeline carries; Err has them
// all.
func TestRegressStaleSourceIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, goodDoc)
	fp, err := NewFileProvider(path, WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := 0; i < 400; i++ {
		fmt.Fprintf(&b, "  k%d.op: {retry: {max_attempts: many, jitter: %s}}\n", i, strings.Repeat("w", 100))
	}
	writeFile(t, path, b.String())
	if err := fp.Reload(); err == nil {
		t.Fatal("a broken file loaded")
	}
	src := fp.Source()
	if len(src) > 1024 || !strings.Contains(src, "stale") || !strings.Contains(src, "more; see Err") {
		t.Fatalf("Source is %d bytes: %.200q", len(src), src)
	}
	if n := strings.Count(fp.Err().Error(), "\n") + 1; n != 800 {
		t.Fatalf("Err holds %d errors, want 800", n)
	}
	if attemptsOf(t, fp) != 2 {
		t.Fatal("lost the set")
	}
}

// A file with a huge number of problems gets an error of bounded size: the
// first problems one per line, then how many more there are.
func TestRegressParseBoundsTheProblemsItReports(t *testing.T) {
	var b strings.Builder
	b.WriteString("policies:\n  a.b: {retry: {")
	for i := range maxReported + 4900 {
		fmt.Fprintf(&b, "f%d: 1, ", i)
	}
	b.WriteString("}}\n")
	_, err := Parse([]byte(b.String()), YAML)
	if err == nil {
		t.Fatal("unknown fields accepted")
	}
	msg := err.Error()
	if n := strings.Count(msg, "\n") + 1; n != maxReported+1 {
		t.Errorf("%d lines reported, want %d", n, maxReported+1)
	}
	if !strings.Contains(msg, "and 4900 more problems") || !errors.Is(err, ErrInvalid) {
		t.Errorf("error does not say how many more, or is not ErrInvalid: ...%s", msg[len(msg)-200:])
	}
}

// Closing a provider gives up a parse in progress: parse with an ended
// context stops with its cause instead of reading a large file to the end.
func TestRegressParseGivesUpWhenItsContextEnds(t *testing.T) {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range 50000 {
		fmt.Fprintf(&b, "  k%d.x: {}\n", i)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("closed")
	cancel(cause)
	if _, err := parse(ctx, []byte(b.String()), YAML); !errors.Is(err, cause) {
		t.Errorf("err = %v, want the context's cause", err)
	}
}
