package config_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// policyServer serves whatever its handler func says, switchable at run time.
type policyServer struct {
	*httptest.Server
	mu   sync.Mutex
	h    http.HandlerFunc
	hits atomic.Int64
	inm  []string
}

func newPolicyServer(t *testing.T, h http.HandlerFunc) *policyServer {
	ps := &policyServer{h: h}
	ps.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.hits.Add(1)
		ps.mu.Lock()
		h := ps.h
		ps.inm = append(ps.inm, r.Header.Get("If-None-Match"))
		ps.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(ps.Close)
	return ps
}

func (ps *policyServer) set(h http.HandlerFunc) {
	ps.mu.Lock()
	ps.h = h
	ps.mu.Unlock()
}

func serveYAML(body, etag string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if etag != "" {
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
		}
		w.Header().Set("Content-Type", "application/yaml")
		fmt.Fprint(w, body)
	}
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func newRP(t *testing.T, url string, opts ...policy.FileOption) *policy.RemoteProvider {
	t.Helper()
	rp, err := policy.NewRemoteProvider(url, append([]policy.FileOption{policy.WatchInterval(0)}, opts...)...)
	if err != nil {
		t.Fatalf("NewRemoteProvider: %v", err)
	}
	t.Cleanup(func() { rp.Close() })
	return rp
}

// The first fetch must succeed: error statuses, empty bodies, 304 and garbage are errors.
func TestRemoteFirstFetchMustSucceed(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"500":         status(500),
		"429":         status(429),
		"404":         status(404),
		"304":         status(304),
		"204":         status(204),
		"empty 200":   func(w http.ResponseWriter, r *http.Request) {},
		"garbage 200": func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>oops</html>\x00\x01") },
		"html as yaml": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html><body>login</body></html>")
		},
		"json lies": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, goodV1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newPolicyServer(t, h)
			rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(0))
			if err == nil {
				rp.Close()
				t.Fatalf("NewRemoteProvider accepted %s", name)
			}
		})
	}
}

// Content type picks the format: JSON by content type, YAML otherwise; a .json path means JSON.
func TestRemoteFormatSelection(t *testing.T) {
	js := `{"policies": {"svc.A": {"id": "j"}}}`
	srv := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, js)
	})
	if pol(t, newRP(t, srv.URL+"/p"), "svc.A").ID != "j" {
		t.Error("json by content type")
	}
	// A .json path with a YAML-only body must be parsed as JSON and fail.
	srv2 := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "policies:\n  svc.A: {id: y}\n") })
	if rp, err := policy.NewRemoteProvider(srv2.URL+"/p.json", policy.WatchInterval(0)); err == nil {
		rp.Close()
		t.Error(".json path parsed YAML")
	}
	// application/problem+json and vendor +json types are JSON too.
	srv3 := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.policies+json")
		fmt.Fprint(w, js)
	})
	if pol(t, newRP(t, srv3.URL+"/p"), "svc.A").ID != "j" {
		t.Error("+json content type")
	}
}

// 500 / 429 / garbage after a good set keep the set, go stale, and a 304
// afterwards clears the staleness. Uses If-None-Match with the good ETag.
func TestRemoteFlapsAndRecoversWith304(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, `"v1"`))
	r := &rec{}
	rp := newRP(t, srv.URL+"/p", policy.ReloadObserver(r))
	for _, bad := range []http.HandlerFunc{status(500), status(429), func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "retry: [") }, func(w http.ResponseWriter, r *http.Request) {}} {
		srv.set(bad)
		if err := rp.Reload(); err == nil {
			t.Error("bad response accepted")
		}
		if !strings.Contains(rp.Source(), "stale") || pol(t, rp, "svc.A").ID != "a-v1" {
			t.Errorf("source %q id %q", rp.Source(), pol(t, rp, "svc.A").ID)
		}
	}
	srv.set(serveYAML(goodV1, `"v1"`))
	if err := rp.Reload(); err != nil {
		t.Fatalf("304 reload: %v", err)
	}
	if rp.Err() != nil || strings.Contains(rp.Source(), "stale") {
		t.Errorf("after 304: Err %v source %q", rp.Err(), rp.Source())
	}
	srv.mu.Lock()
	last := srv.inm[len(srv.inm)-1]
	srv.mu.Unlock()
	if last != `"v1"` {
		t.Errorf("If-None-Match %q", last)
	}
	rl := r.Reloads()
	if len(rl) == 0 || rl[len(rl)-1].Err != nil {
		t.Errorf("no recovery event %+v", rl)
	}
}

// A 304 when the last good set came without an ETag (no If-None-Match sent)
// is not a valid answer: it must not clear an error nor be taken as a set.
func TestRemote304WithoutETagAfterFailure(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p")
	srv.set(status(500))
	rp.Reload()
	srv.set(status(304))
	rp.Reload()
	srv.mu.Lock()
	last := srv.inm[len(srv.inm)-1]
	srv.mu.Unlock()
	if last == "" && rp.Err() == nil {
		t.Error("an unsolicited 304 (no If-None-Match sent) cleared the error")
	}
}

// A hanging server: the fetch is cut at FetchTimeout, the set stays.
func TestRemoteHangingServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p", policy.FetchTimeout(100*time.Millisecond))
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	start := time.Now()
	err := rp.Reload()
	if err == nil {
		t.Fatal("hang accepted")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("FetchTimeout 100ms took %v", el)
	}
	if pol(t, rp, "svc.A").ID != "a-v1" {
		t.Error("set lost")
	}
}

// A slow drip (headers fast, body one byte at a time forever) is cut at FetchTimeout too.
func TestRemoteSlowDripTimesOut(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p", policy.FetchTimeout(150*time.Millisecond))
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			if _, err := w.Write([]byte("#")); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	if err := rp.Reload(); err == nil {
		t.Fatal("drip accepted")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("drip took %v", el)
	}
}

// A huge body is refused at the cap, naming size (or at least the cap), without reading it all.
func TestRemoteHugeBody(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p", policy.MaxPolicyBytes(8192))
	var wrote atomic.Int64
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte("# " + strings.Repeat("x", 1021) + "\n")
		for i := 0; i < 64*1024; i++ { // 64 MiB
			n, err := w.Write(chunk)
			wrote.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	start := time.Now()
	err := rp.Reload()
	if err == nil {
		t.Fatal("huge body accepted")
	}
	mustContainAll(t, "cap", err.Error(), "8192")
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v", el)
	}
	if pol(t, rp, "svc.A").ID != "a-v1" {
		t.Error("set lost")
	}
}

// A Content-Length over the cap is refused (and named) before reading.
func TestRemoteContentLengthOverCap(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p", policy.MaxPolicyBytes(4096))
	body := goodV2 + "# " + strings.Repeat("q", 10000) + "\n"
	srv.set(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })
	err := rp.Reload()
	if err == nil {
		t.Fatal("accepted")
	}
	mustContainAll(t, "cap", err.Error(), "4096")
}

// Redirects to another host are refused and name the target; within the host they are followed.
func TestRemoteRedirects(t *testing.T) {
	other := newPolicyServer(t, serveYAML(goodV2, ""))
	// 127.0.0.1 vs localhost are different hosts.
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	srv := newPolicyServer(t, nil)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/here":
			http.Redirect(w, r, "/there", http.StatusFound)
		case "/there":
			serveYAML(goodV1, "")(w, r)
		case "/away":
			http.Redirect(w, r, otherURL+"/p", http.StatusTemporaryRedirect)
		case "/away-scheme":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		}
	})
	if pol(t, newRP(t, srv.URL+"/here"), "svc.A").ID != "a-v1" {
		t.Error("same-host redirect not followed")
	}
	_, err := policy.NewRemoteProvider(srv.URL+"/away", policy.WatchInterval(0))
	if err == nil || !strings.Contains(err.Error(), "localhost") {
		t.Errorf("other-host redirect: %v", err)
	}
	if other.hits.Load() != 0 {
		t.Errorf("the other host was contacted %d times", other.hits.Load())
	}
	rp, err := policy.NewRemoteProvider(srv.URL+"/away", policy.WatchInterval(0), policy.AllowRedirectsToOtherHosts())
	if err != nil {
		t.Errorf("allowed redirect: %v", err)
	} else {
		rp.Close()
	}
	if rp, err := policy.NewRemoteProvider(srv.URL+"/away-scheme", policy.WatchInterval(0), policy.AllowRedirectsToOtherHosts()); err == nil {
		rp.Close()
		t.Error("redirect to file:// accepted")
	}
}

// A redirect to the same host on another port is another host (origin), and must be refused.
func TestRemoteRedirectSameHostOtherPort(t *testing.T) {
	other := newPolicyServer(t, serveYAML(goodV2, ""))
	srv := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/p", http.StatusFound)
	})
	rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(0))
	if err == nil {
		rp.Close()
	}
	if other.hits.Load() != 0 {
		t.Errorf("redirect to another port (%s -> %s) followed: a different server was fetched from", srv.URL, other.URL)
	}
}

// WithHTTPClient: the copy still refuses other-host redirects, even if the
// client's own CheckRedirect allows everything.
func TestRemoteCustomClientStillGuardsRedirects(t *testing.T) {
	other := newPolicyServer(t, serveYAML(goodV2, ""))
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	srv := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherURL+"/p", http.StatusFound)
	})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(0), policy.WithHTTPClient(c))
	if err == nil {
		rp.Close()
		t.Error("custom client followed an other-host redirect")
	}
	if c.CheckRedirect == nil {
		t.Error("caller's client was modified")
	}
}

// Close while a fetch hangs ends it promptly; no goroutine stays behind.
func TestRemoteCloseDuringHangingPoll(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(time.Second), policy.WatchClock(fc), policy.FetchTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, 1)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})
	fc.BlockUntil(1)
	fc.Advance(time.Second)
	select {
	case <-entered:
	case <-time.After(2 * time.Second):
		t.Fatal("poll did not start")
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { rp.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close blocked behind a hanging fetch")
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Close took %v", el)
	}
	if pol(t, rp, "svc.A").ID != "a-v1" {
		t.Error("closed provider stopped serving")
	}
	if rp.Reload() == nil {
		t.Error("Reload after Close returned nil")
	}
}

// Close during a hanging manual Reload ends that Reload too.
func TestRemoteCloseEndsManualReload(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(0), policy.FetchTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, 1)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})
	done := make(chan error, 1)
	go func() { done <- rp.Reload() }()
	<-entered
	rp.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("interrupted Reload returned nil")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a hanging Reload")
	}
}

// Through an executor: a policy server that goes down leaves calls on the last
// good policy, marked remote:URL (stale: …).
func TestRemoteStaleInTimeline(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, `"e1"`))
	rp := newRP(t, srv.URL+"/p")
	e := recourse.NewExecutor(recourse.WithProvider(rp))
	srv.set(status(503))
	rp.Reload()
	n := 0
	tl, _ := e.DoWithTimeline(context.Background(), "svc.A", failing(&n))
	if n != 4 || tl.PolicyID != "a-v1" {
		t.Errorf("tries %d id %q", n, tl.PolicyID)
	}
	src := tl.Attributes[timeline.AttrPolicySource]
	if !strings.HasPrefix(src, "remote:"+srv.URL+"/p (stale: ") {
		t.Errorf("source %q", src)
	}
}

// The budgets a remote set declares are served and kept across unchanged reloads.
func TestRemoteBudgetsKeptAcrossReload(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p")
	b1, ok := rp.Budget("bucket")
	if !ok {
		t.Fatal("no budget")
	}
	srv.set(serveYAML(goodV2, ""))
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	b2, _ := rp.Budget("bucket")
	if b1 != b2 {
		t.Error("unchanged declaration rebuilt")
	}
	srv.set(status(500))
	rp.Reload()
	b3, ok := rp.Budget("bucket")
	if !ok || b3 != b1 {
		t.Error("failed reload changed the budget")
	}
}

// After Close, no goroutine of the provider stays (goleak at TestMain checks too).
func TestRemoteNoGoroutinesAfterClose(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	for i := 0; i < 5; i++ {
		rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		rp.Close()
	}
}

// The executor's provider timeout bounds a provider; WithProviderErrorBackoff
// gates how often a failing provider is asked again, on the executor clock.
type countingProvider struct {
	calls atomic.Int64
	fail  atomic.Bool
	block chan struct{}
	ver   atomic.Uint64
}

func (c *countingProvider) Policy(ctx context.Context, k policy.Key) (policy.Policy, error) {
	c.calls.Add(1)
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return policy.Policy{}, ctx.Err()
		}
	}
	if c.fail.Load() {
		return policy.Policy{}, errors.New("store down")
	}
	return policy.New(k.String(), policy.WithID("cp"), policy.MaxAttempts(1)), nil
}

func (c *countingProvider) Version() uint64 { return c.ver.Load() }

func TestProviderErrorBackoffOnFakeClock(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	cp := &countingProvider{}
	cp.fail.Store(true)
	e := recourse.NewExecutor(recourse.WithProvider(cp), recourse.WithClock(fc), recourse.WithProviderErrorBackoff(time.Minute), recourse.WithMissingPolicyMode(recourse.FailureAllow))
	ok := func(context.Context) error { return nil }
	for i := 0; i < 5; i++ {
		e.Do(context.Background(), "k.x", ok)
	}
	if n := cp.calls.Load(); n != 1 {
		t.Errorf("failing provider asked %d times within the backoff, want 1", n)
	}
	fc.Advance(time.Minute + time.Millisecond)
	cp.fail.Store(false)
	tl, _ := e.DoWithTimeline(context.Background(), "k.x", ok)
	if tl.PolicyID != "cp" {
		t.Errorf("after the backoff the provider was not asked again: id %q calls %d", tl.PolicyID, cp.calls.Load())
	}
}

// A hanging provider is bounded by WithProviderTimeout, and the caller's own
// context ends its wait.
func TestProviderTimeoutHangingProvider(t *testing.T) {
	cp := &countingProvider{block: make(chan struct{})}
	defer close(cp.block)
	e := recourse.NewExecutor(recourse.WithProvider(cp), recourse.WithProviderTimeout(50*time.Millisecond), recourse.WithMissingPolicyMode(recourse.FailureDeny))
	start := time.Now()
	err := e.Do(context.Background(), "k.h", func(context.Context) error { return nil })
	if el := time.Since(start); el > time.Second {
		t.Errorf("hanging provider held the call %v", el)
	}
	if !errors.Is(err, recourse.ErrNoPolicy) {
		t.Errorf("err %v, want ErrNoPolicy", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	e2 := recourse.NewExecutor(recourse.WithProvider(cp), recourse.WithProviderTimeout(time.Minute))
	start = time.Now()
	e2.Do(ctx, "k.h2", func(context.Context) error { return nil })
	if el := time.Since(start); el > time.Second {
		t.Errorf("caller's deadline did not end the wait: %v", el)
	}
}

// A bad set served with its own ETag: the next poll must send the ETag of the
// last GOOD set, so a 304 from a server still serving the bad set (matching
// its own ETag) cannot clear the staleness.
func TestRemoteBadSetETagNotReused(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, `"good"`))
	rp := newRP(t, srv.URL+"/p")
	srv.set(serveYAML("policies: {svc.A: {retry: {max_attempts: -1}}}\n", `"bad"`))
	if rp.Reload() == nil {
		t.Fatal("bad set accepted")
	}
	rp.Reload() // the server still serves the bad set
	srv.mu.Lock()
	last := srv.inm[len(srv.inm)-1]
	srv.mu.Unlock()
	if last != `"good"` {
		t.Errorf("If-None-Match after a bad set: %q, want the last good ETag", last)
	}
	if rp.Err() == nil || !strings.Contains(rp.Source(), "stale") {
		t.Errorf("a bad set still served looks healthy: Err %v Source %q", rp.Err(), rp.Source())
	}
}

// Weak ETags are echoed verbatim.
func TestRemoteWeakETag(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, `W/"w1"`))
	rp := newRP(t, srv.URL+"/p")
	hits := srv.hits.Load()
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	last := srv.inm[len(srv.inm)-1]
	srv.mu.Unlock()
	if last != `W/"w1"` || srv.hits.Load() != hits+1 {
		t.Errorf("If-None-Match %q", last)
	}
}

// The first fetch is bounded by FetchTimeout too.
func TestRemoteFirstFetchHangBounded(t *testing.T) {
	srv := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	start := time.Now()
	rp, err := policy.NewRemoteProvider(srv.URL+"/p", policy.WatchInterval(0), policy.FetchTimeout(80*time.Millisecond))
	if err == nil {
		rp.Close()
		t.Fatal("hang accepted")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("first fetch took %v", el)
	}
}
