package config_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// New asks the provider for no key's policy and compiles nothing.
func TestNewValidationLeavesNothing(t *testing.T) {
	cp := &countingProvider{}
	fp := newFP(t, tempPolicy(t, "p.yaml", goodV1))
	e, err := recourse.New(recourse.WithProvider(fp), recourse.WithPolicy("x.y", policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true})))
	if err != nil {
		t.Fatal(err)
	}
	if ks := e.Keys(); len(ks) != 0 {
		t.Errorf("New compiled keys %v", ks)
	}
	if _, err := recourse.New(recourse.WithProvider(cp)); err != nil {
		t.Fatal(err)
	}
	if cp.calls.Load() != 0 {
		t.Errorf("New asked the provider %d times", cp.calls.Load())
	}
}

// FailureAllow for a missing budget: retries run, and the attribute and the
// problem event say which budgets and which mode.
func TestMissingBudgetAllowNamesEveryBudget(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  a.b: {budget: gb1, retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}, hedge: {enabled: true, delay: 50ms, budget: gb2}}\n"))
	r := &rec{}
	e := recourse.NewExecutor(recourse.WithProvider(fp), recourse.WithObserver(r), recourse.WithMissingBudgetMode(recourse.FailureAllow))
	n := 0
	tl, _ := e.DoWithTimeline(context.Background(), "a.b", failing(&n))
	if n != 3 {
		t.Errorf("tries %d, want 3 (allow)", n)
	}
	be := tl.Attributes[timeline.AttrBudgetError]
	mustContainAll(t, "budget_error", be, "gb1", "gb2", "allow")
	modes := map[string]string{}
	for _, p := range r.Problems() {
		modes[p.Name] = p.Mode
	}
	if modes["gb1"] != "allow" || modes["gb2"] != "allow" {
		t.Errorf("problem modes %v", modes)
	}
}

// Deny: both budgets named in budget_error.
func TestMissingBudgetDenyNamesEveryBudget(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", "policies:\n  a.b: {budget: gb1, retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}, hedge: {enabled: true, delay: 50ms, budget: gb2}}\n"))
	e := recourse.NewExecutor(recourse.WithProvider(fp))
	n := 0
	tl, _ := e.DoWithTimeline(context.Background(), "a.b", failing(&n))
	if n != 1 {
		t.Errorf("tries %d, want 1 (deny)", n)
	}
	mustContainAll(t, "budget_error", tl.Attributes[timeline.AttrBudgetError], "gb1", "gb2", "deny")
}

// A redirect loop within the host ends with an error, not a hang.
func TestRemoteRedirectLoop(t *testing.T) {
	srv := newPolicyServer(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, r.URL.Path, http.StatusFound) })
	start := time.Now()
	rp, err := policy.NewRemoteProvider(srv.URL+"/loop", policy.WatchInterval(0), policy.FetchTimeout(2*time.Second))
	if err == nil {
		rp.Close()
		t.Fatal("redirect loop accepted")
	}
	if time.Since(start) > time.Second {
		t.Errorf("loop took %v", time.Since(start))
	}
}

// A gzip bomb: a small compressed body that expands past the cap is refused at the cap.
func TestRemoteGzipBomb(t *testing.T) {
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestSpeed)
	zw.Write([]byte(goodV2))
	chunk := bytes.Repeat([]byte("#"), 1<<20)
	for i := 0; i < 16; i++ { // 16 MiB of comments
		zw.Write(chunk)
	}
	zw.Close()
	bomb := zb.Bytes()
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p", policy.MaxPolicyBytes(1<<16))
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(bomb)
	})
	start := time.Now()
	err := rp.Reload()
	if err == nil {
		t.Fatal("gzip bomb accepted")
	}
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Errorf("took %v for a cap of 64 KiB", el)
	}
	if pol(t, rp, "svc.A").ID != "a-v1" {
		t.Error("set lost")
	}
}

// Same content under a new ETag is not a change: Version stays.
func TestRemoteSameContentNewETag(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, `"e1"`))
	rp := newRP(t, srv.URL+"/p")
	v := rp.Version()
	srv.set(serveYAML(goodV1, `"e2"`))
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	if rp.Version() != v {
		t.Errorf("Version moved %d -> %d for identical content", v, rp.Version())
	}
	// and the new ETag is what is sent next.
	rp.Reload()
	srv.mu.Lock()
	last := srv.inm[len(srv.inm)-1]
	srv.mu.Unlock()
	if last != `"e2"` {
		t.Errorf("If-None-Match %q, want the latest ETag", last)
	}
}

// A failed poll then a 200 with the set in use: staleness clears.
func TestRemoteFailedThenSameContent200(t *testing.T) {
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p")
	srv.set(status(502))
	rp.Reload()
	srv.set(serveYAML(goodV1, ""))
	if err := rp.Reload(); err != nil {
		t.Fatal(err)
	}
	if rp.Err() != nil || strings.Contains(rp.Source(), "stale") {
		t.Errorf("Err %v Source %q", rp.Err(), rp.Source())
	}
}

// Flip between valid and invalid sets on every poll (fake clock): the good
// set's budget state survives, no torn set is ever served.
func TestRemoteFlipFlopPolls(t *testing.T) {
	var i int
	srv := newPolicyServer(t, serveYAML(goodV1, ""))
	rp := newRP(t, srv.URL+"/p")
	b0, _ := rp.Budget("bucket")
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		i++
		if i%2 == 0 {
			fmt.Fprint(w, goodV1)
		} else {
			fmt.Fprint(w, "policies: {svc.A: {retry: {max_attempts: -9}}}")
		}
	})
	for k := 0; k < 20; k++ {
		rp.Reload()
		if id := pol(t, rp, "svc.A").ID; id != "a-v1" {
			t.Fatalf("served %q", id)
		}
		if b, _ := rp.Budget("bucket"); b != b0 {
			t.Fatal("budget rebuilt by flip-flopping")
		}
	}
}

// A sparse 1 TiB file is refused from its size, at once.
func TestFileSparseHugeFile(t *testing.T) {
	path := tempPolicy(t, "p.yaml", goodV1)
	fp := newFP(t, path)
	if err := os.Truncate(path, 1<<40); err != nil {
		t.Skip(err)
	}
	start := time.Now()
	err := fp.Reload()
	if err == nil {
		t.Fatal("accepted")
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Errorf("took %v", time.Since(start))
	}
	mustContainAll(t, "size", err.Error(), fmt.Sprint(int64(1)<<40))
}

// A file exactly at the cap is accepted; one byte more is not.
func TestFileCapBoundary(t *testing.T) {
	base := "policies:\n  a.b: {id: x}\n"
	const capN = 512
	at := base + "#" + strings.Repeat("p", capN-len(base)-2) + "\n"
	if len(at) != capN {
		t.Fatalf("len %d", len(at))
	}
	path := tempPolicy(t, "p.yaml", at)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0), policy.MaxPolicyBytes(capN))
	if err != nil {
		t.Fatalf("file of exactly the cap refused: %v", err)
	}
	defer fp.Close()
	writeFile(t, path, at+"#")
	if err := fp.Reload(); err == nil {
		t.Error("cap+1 accepted")
	}
}

// Errors from a JSON file name key, field and value too.
func TestFileJSONErrorsNameKeyFieldValue(t *testing.T) {
	path := tempPolicy(t, "p.json", `{"policies": {"pay.Charge": {"retry": {"initial_backoff": "soon"}}}}`)
	_, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err == nil {
		t.Fatal("accepted")
	}
	mustContainAll(t, "json", err.Error(), "pay.Charge", "retry.initial_backoff", "soon")
	if !errors.Is(err, policy.ErrInvalid) {
		t.Error("not ErrInvalid")
	}
}

// Policy returns a copy: mutating what one caller got does not change what the next gets.
func TestProviderReturnsCopies(t *testing.T) {
	fp := newFP(t, tempPolicy(t, "p.yaml", goodV1))
	s := fp.Set()
	for k, p := range s.Policies {
		p.ID = "mutated"
		s.Policies[k] = p
	}
	delete(s.Budgets, "bucket")
	if pol(t, fp, "svc.A").ID != "a-v1" {
		t.Error("Set() shares its map with the provider")
	}
	if _, ok := fp.Budget("bucket"); !ok {
		t.Error("Set() shares budgets")
	}
	if s2 := fp.Set(); s2.Default != nil {
		s2.Default.Retry.MaxAttempts = 9
		if pol(t, fp, "zz.unknown").Retry.MaxAttempts == 9 {
			t.Error("Set().Default aliases the provider's default")
		}
	}
}
