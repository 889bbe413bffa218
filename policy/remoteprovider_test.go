package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// policyServer publishes a policy document with an ETag and honours
// If-None-Match; status, when set, overrides the answer.
type policyServer struct {
	mu          sync.Mutex
	doc         string
	contentType string
	status      int
	notModified int
}

func (s *policyServer) set(doc string) { s.mu.Lock(); s.doc, s.status = doc, 0; s.mu.Unlock() }

func (s *policyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 0 {
		http.Error(w, "policy store down", s.status)
		return
	}
	etag := fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(s.doc)))
	if r.Header.Get("If-None-Match") == etag {
		s.notModified++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	if s.contentType != "" {
		w.Header().Set("Content-Type", s.contentType)
	}
	fmt.Fprint(w, s.doc)
}

func TestRemoteProviderKeepsTheLastGoodSet(t *testing.T) {
	ps := &policyServer{doc: "policies:\n  a.b: {retry: {max_attempts: 2}}\n"}
	srv := httptest.NewServer(ps)
	defer srv.Close()
	rp, err := NewRemoteProvider(srv.URL+"/policies", WatchInterval(0), MaxPolicyBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	ctx := context.Background()
	attempts := func() int {
		p, err := rp.Policy(ctx, ParseKey("a.b"))
		if err != nil {
			t.Fatal(err)
		}
		return p.Retry.MaxAttempts
	}
	if attempts() != 2 || rp.Source() != "remote:"+srv.URL+"/policies" {
		t.Fatalf("initial: %d %q", attempts(), rp.Source())
	}

	// Unchanged: a 304, no new version.
	v := rp.Version()
	if err := rp.Reload(); err != nil || rp.Version() != v || ps.notModified != 1 {
		t.Fatalf("unchanged reload: err %v version %d→%d 304s %d", err, v, rp.Version(), ps.notModified)
	}

	// The store serves a broken set, then goes down: the last good set stays.
	ps.set("policies:\n  a.b: {retry: {jitter: sideways}}\n")
	if err := rp.Reload(); err == nil || !strings.Contains(err.Error(), `policy "a.b": retry.jitter = "sideways"`) {
		t.Fatalf("broken reload err %v", err)
	}
	if err := rp.Reload(); err == nil { // 304 for the same broken set: still stale
		t.Fatal("a 304 cleared the error of the set it stands for")
	}
	ps.mu.Lock()
	ps.status = http.StatusServiceUnavailable
	ps.mu.Unlock()
	if err := rp.Reload(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("down reload err %v", err)
	}
	if attempts() != 2 || !strings.Contains(rp.Source(), "stale") {
		t.Fatalf("after failures: %d %q", attempts(), rp.Source())
	}

	// Back, with a good set in JSON.
	ps.mu.Lock()
	ps.contentType = "application/json"
	ps.mu.Unlock()
	ps.set(`{"policies": {"a.b": {"retry": {"max_attempts": 4}}}}`)
	if err := rp.Reload(); err != nil || attempts() != 4 || strings.Contains(rp.Source(), "stale") {
		t.Fatalf("recovered reload: err %v attempts %d source %q", err, attempts(), rp.Source())
	}
}

func TestRemoteProviderFirstFetchMustSucceed(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if _, err := NewRemoteProvider(srv.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v", err)
	}
}

// A token in the URL's query never reaches Source, timelines or errors:
// not from a status, not from a connection failure, not from a refused
// redirect.
func TestRemoteProviderRedactsQueryTokens(t *testing.T) {
	const secret = "s3cr3t-token"
	var fail atomic.Bool
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Redirect(w, r, other.URL+"/x?token="+secret, http.StatusFound)
			return
		}
		fmt.Fprint(w, "policies:\n  a.b: {retry: {max_attempts: 2}}\n")
	}))
	p, err := NewRemoteProvider(srv.URL + "/p?token=" + secret + "&v=1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if src := p.Source(); strings.Contains(src, secret) || !strings.Contains(src, "token=xxxxx") {
		t.Errorf("Source = %q", src)
	}
	fail.Store(true)
	if err := p.Reload(); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("redirect: err = %v", err)
	}
	srv.Close() // connection refused from now on
	if err := p.Reload(); err == nil || strings.Contains(err.Error(), secret) || strings.Contains(p.Source(), secret) {
		t.Errorf("down: err = %v, Source %q", err, p.Source())
	}
}
