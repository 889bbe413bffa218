package surfaceattack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
)

const goodYAML = `default:
  retry: {max_attempts: 2}
policies:
  pay.Charge:
    id: charge-v1
    retry: {max_attempts: 4, initial_backoff: 5ms, max_backoff: 50ms}
  pay.Refund:
    id: refund-v1
    retry: {max_attempts: 5}
`

const goodJSON = `{"default": {"retry": {"max_attempts": 2}},
 "policies": {"pay.Charge": {"id": "charge-v1", "retry": {"max_attempts": 4}},
              "pay.Refund": {"id": "refund-v1", "retry": {"max_attempts": 5}}}}`

func checkGood(t *testing.T, label string, p policy.Provider) {
	t.Helper()
	pol, err := p.Policy(context.Background(), policy.ParseKey("pay.Charge"))
	if err != nil || pol.ID != "charge-v1" || pol.Retry.MaxAttempts != 4 {
		t.Errorf("%s: pay.Charge now %+v, %v (want charge-v1, 4 attempts)", label, pol.Retry, err)
	}
	pol, err = p.Policy(context.Background(), policy.ParseKey("pay.Refund"))
	if err != nil || pol.ID != "refund-v1" {
		t.Errorf("%s: pay.Refund now id %q, %v", label, pol.ID, err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileBadDocumentsKeepLastGood(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"yaml", "json"} {
		path := filepath.Join(dir, "p."+format)
		good := goodYAML
		if format == "json" {
			good = goodJSON
		}
		writeFile(t, path, good)
		fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		bad := []string{"", " ", "\n\n", "# only a comment\n# another\n", "---\n", "---\n...\n", "null", "~", "{}", "[]",
			"policies: {}", "policies:", "policies: null", "default: null", "default:\npolicies:\n",
			"\xef\xbb\xbf", "policies:\n  pay.Charge:\n    retry: {max_att", good[:len(good)/2], "{\"policies\": {", "{\"policies\": {}}",
			"{\"policies\": null, \"default\": null}", "\x00\x00\x00",
		}
		for _, b := range bad {
			writeFile(t, path, b)
			rerr := fp.Reload()
			label := fmt.Sprintf("%s %q", format, b)
			if rerr == nil {
				t.Errorf("%s: reload accepted", label)
			} else if fp.Err() == nil {
				t.Errorf("%s: Err() nil after failed reload", label)
			} else if !strings.Contains(fp.Source(), "stale") {
				t.Errorf("%s: Source %q not stale", label, fp.Source())
			}
			checkGood(t, label, fp)
			if s := fp.Set(); s == nil || len(s.Policies) != 2 {
				t.Errorf("%s: Set now %+v", label, s)
			}
			writeFile(t, path, good)
			if err := fp.Reload(); err != nil || fp.Err() != nil {
				t.Errorf("%s: restoring good: %v / %v", label, err, fp.Err())
			}
		}
		_ = fp.Close()
	}
}

// A key whose section is null/empty (a file cut right after the key line, or
// an explicit null) must not silently reset that key to the defaults and
// drop every key after it.
func TestFileKeyWithNullSection(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, ext, doc string }{
		{"yaml-cut-after-key", "yaml", goodYAML[:strings.Index(goodYAML, "    id: charge-v1")]},
		{"yaml-cut-after-retry", "yaml", goodYAML[:strings.Index(goodYAML, " {max_attempts: 2}")] + "\n"},
		{"json-null-key", "json", `{"policies": {"pay.Charge": null, "pay.Refund": {"id": "refund-v1"}}}`},
		{"json-null-retry", "json", `{"policies": {"pay.Charge": {"id": "charge-v1", "retry": null}, "pay.Refund": {"id": "refund-v1"}}}`},
	} {
		path := filepath.Join(dir, "p."+tc.ext)
		good := goodYAML
		if tc.ext == "json" {
			good = goodJSON
		}
		writeFile(t, path, good)
		fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, tc.doc)
		rerr := fp.Reload()
		pol, _ := fp.Policy(context.Background(), policy.ParseKey("pay.Charge"))
		if rerr == nil {
			t.Errorf("%s: %q accepted; pay.Charge now %d attempts, id %q; keys %v", tc.name, tc.doc, pol.Retry.MaxAttempts, pol.ID, fp.Set().Keys())
		}
		fp.Close()
	}
}

func TestJSONDuplicatesAndCase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.json")
	writeFile(t, path, goodJSON)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	docs := map[string]string{
		"dup-policy-key":  `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}}, "pay.Charge": {"retry": {"max_attempts": 1}}}}`,
		"dup-top":         `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}}}, "policies": {"x.y": {}}}`,
		"dup-field":       `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4, "max_attempts": 1}}}}`,
		"dup-section":     `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}, "retry": {"max_attempts": 1}}}}`,
		"dup-default":     `{"default": {"retry": {"max_attempts": 4}}, "default": {}}`,
		"case-dup-field":  `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4, "MAX_ATTEMPTS": 1}}}}`,
		"case-dup-sect":   `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}, "Retry": {"max_attempts": 1}}}}`,
		"case-dup-top":    `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}}}, "Policies": {"x.y": {}}}`,
		"case-unknown":    `{"policies": {"pay.Charge": {"RETRY": {"Max_Attempts": 1}}}}`,
		"trailing-value":  `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}}}} {"policies": {}}`,
		"trailing-junk":   `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}}}} garbage`,
		"escaped-dup-key": `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4}}, "pay\u002eCharge": {"retry": {"max_attempts": 1}}}}`,
		"escaped-dup-fld": `{"policies": {"pay.Charge": {"retry": {"max_attempts": 4, "max\u005fattempts": 1}}}}`,
	}
	for name, doc := range docs {
		writeFile(t, path, doc)
		rerr := fp.Reload()
		pol, _ := fp.Policy(context.Background(), policy.ParseKey("pay.Charge"))
		if rerr == nil {
			t.Errorf("%s: accepted; pay.Charge now %d attempts", name, pol.Retry.MaxAttempts)
		}
		writeFile(t, path, goodJSON)
		if err := fp.Reload(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestYAMLDuplicatesAndOddities(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	writeFile(t, path, goodYAML)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	docs := map[string]string{
		"dup-key":       "policies:\n  a.b: {retry: {max_attempts: 2}}\n  a.b: {retry: {max_attempts: 3}}\n",
		"dup-field":     "policies:\n  a.b: {retry: {max_attempts: 2, max_attempts: 3}}\n",
		"case-field":    "policies:\n  a.b: {Retry: {max_attempts: 2}}\n",
		"two-docs":      "policies:\n  a.b: {retry: {max_attempts: 2}}\n---\npolicies:\n  c.d: {}\n",
		"second-bad":    "policies:\n  a.b: {retry: {max_attempts: 2}}\n---\n{[[[\n",
		"merge-dup":     "base: &b {retry: {max_attempts: 2}}\npolicies:\n  a.b: *b\n",
		"quoted-dup":    "policies:\n  a.b: {}\n  \"a.b\": {retry: {max_attempts: 9}}\n",
		"bomb":          "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\npolicies: {}\n",
		"nan-mult":      "policies:\n  a.b: {retry: {multiplier: .nan}}\n",
		"inf-quantile":  "policies:\n  a.b: {hedge: {enabled: true, quantile: .inf}}\n",
		"nan-ratio":     "policies:\n  a.b: {circuit: {enabled: true, failure_ratio: .nan}}\n",
		"neg-attempts":  "policies:\n  a.b: {retry: {max_attempts: -1}}\n",
		"huge-attempts": "policies:\n  a.b: {retry: {max_attempts: 99999999999999999999}}\n",
		"dur-overflow":  "policies:\n  a.b: {retry: {overall_timeout: 9999999999h}}\n",
		"empty-key":     "policies:\n  \"\": {retry: {max_attempts: 2}}\n",
	}
	for name, doc := range docs {
		writeFile(t, path, doc)
		start := time.Now()
		rerr := fp.Reload()
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s: reload took %v", name, time.Since(start))
		}
		if rerr == nil {
			s := fp.Set()
			t.Errorf("%s: accepted (keys %v)", name, s.Keys())
		} else {
			checkGood(t, name, fp)
		}
		writeFile(t, path, goodYAML)
		if err := fp.Reload(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFileSizeCapAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	writeFile(t, path, goodYAML)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0), policy.MaxPolicyBytes(int64(len(goodYAML))))
	if err != nil {
		t.Fatalf("file of exactly the cap refused: %v", err)
	}
	defer fp.Close()
	writeFile(t, path, goodYAML+"# one more byte\n")
	if err := fp.Reload(); err == nil {
		t.Error("file over the cap accepted")
	}
	checkGood(t, "over cap", fp)
	for _, special := range []string{"/dev/zero", "/dev/urandom", dir} {
		done := make(chan error, 1)
		go func() {
			p, err := policy.NewFileProvider(special, policy.WatchInterval(0))
			if p != nil {
				p.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s accepted", special)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: constructor hangs", special)
		}
	}
	// A symlink swapped to a FIFO after a good load: reload must not hang.
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err == nil {
		link := filepath.Join(dir, "link.yaml")
		_ = os.Symlink(path, link)
		writeFile(t, path, goodYAML)
		fp2, err := policy.NewFileProvider(link, policy.WatchInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(link)
		_ = os.Symlink(fifo, link)
		done := make(chan error, 1)
		go func() { done <- fp2.Reload() }()
		select {
		case err := <-done:
			if err == nil {
				t.Error("FIFO accepted")
			}
		case <-time.After(3 * time.Second):
			// unblock: open the FIFO for writing
			f, _ := os.OpenFile(fifo, os.O_WRONLY, 0)
			if f != nil {
				f.Close()
			}
			<-done
			t.Error("Reload hangs on a FIFO swapped in behind a symlink")
		}
		checkGood(t, "fifo", fp2)
		fp2.Close()
	}
}

// A file rewritten in place while it is reloaded: the served set is always one
// of the two good versions, never empty or partial.
func TestFileRewrittenWhileRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	v2 := strings.ReplaceAll(strings.ReplaceAll(goodYAML, "charge-v1", "charge-v2"), "refund-v1", "refund-v2")
	// pad so that reads and writes overlap more often
	pad := "\n" + strings.Repeat("# padding line to make the file longer than one read\n", 400)
	writeFile(t, path, goodYAML+pad)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(time.Millisecond))
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
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return
			}
			doc := goodYAML + pad
			if i%2 == 1 {
				doc = v2 + pad
			}
			for j := 0; j < len(doc); j += 512 {
				_, _ = f.WriteString(doc[j:min(j+512, len(doc))])
			}
			f.Close()
		}
	}()
	deadline := time.Now().Add(1500 * time.Millisecond)
	var bad atomic.Int32
	for time.Now().Before(deadline) {
		_ = fp.Reload()
		for _, k := range []string{"pay.Charge", "pay.Refund"} {
			pol, err := fp.Policy(context.Background(), policy.ParseKey(k))
			if err != nil || !(strings.HasSuffix(pol.ID, "-v1") || strings.HasSuffix(pol.ID, "-v2")) {
				if bad.Add(1) < 5 {
					t.Errorf("%s served %q (%v) mid-rewrite", k, pol.ID, err)
				}
			}
		}
	}
	close(stop)
	wg.Wait()
}

// ---- remote ----

type remoteScript struct {
	mu      sync.Mutex
	handler func(w http.ResponseWriter, r *http.Request)
	hits    atomic.Int32
}

func (s *remoteScript) set(h func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

func (s *remoteScript) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	h := s.handler
	s.mu.Unlock()
	h(w, r)
}

func serveGood(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("ETag", `"v1"`)
	if r.Header.Get("If-None-Match") == `"v1"` {
		w.WriteHeader(304)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, goodJSON)
}

func TestRemoteFirst304IsError(t *testing.T) {
	for _, h := range []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) },
		func(w http.ResponseWriter, r *http.Request) { w.Header().Set("ETag", `"x"`); w.WriteHeader(304) },
		func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) },
		func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) },
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "{}")
		},
		func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(302) },
	} {
		srv := httptest.NewServer(h)
		p, err := policy.NewRemoteProvider(srv.URL+"/p.json", policy.WatchInterval(0), policy.FetchTimeout(time.Second))
		if err == nil {
			t.Errorf("constructor accepted a first answer without a policy set; Set=%+v", p.Set())
			p.Close()
		}
		srv.Close()
	}
}

func TestRemote304AfterFailureClearsErr(t *testing.T) {
	s := &remoteScript{handler: serveGood}
	srv := httptest.NewServer(s)
	defer srv.Close()
	p, err := policy.NewRemoteProvider(srv.URL+"/p.json", policy.WatchInterval(0), policy.FetchTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	failures := map[string]func(w http.ResponseWriter, r *http.Request){
		"500":       func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) },
		"empty-200": func(w http.ResponseWriter, r *http.Request) { w.Header().Set("ETag", `"v2"`) },
		"comment": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v3"`)
			w.Header().Set("Content-Type", "text/yaml")
			_, _ = io.WriteString(w, "# nothing\n")
		},
		"truncated": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v4"`)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, goodJSON[:len(goodJSON)/2])
		},
		"declared-longer": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(goodJSON)+100))
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, goodJSON)
		},
		"empty-304-etagless": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) },
	}
	for name, f := range failures {
		s.set(f)
		if err := p.Reload(); err == nil {
			t.Errorf("%s: reload accepted", name)
		}
		if p.Err() == nil {
			t.Errorf("%s: Err nil", name)
		}
		checkGood(t, name, p)
		s.set(serveGood)
		if err := p.Reload(); err != nil {
			t.Errorf("%s: 304 after failure: %v", name, err)
		}
		if p.Err() != nil || strings.Contains(p.Source(), "stale") {
			t.Errorf("%s: 304 after failure left Err=%v Source=%q", name, p.Err(), p.Source())
		}
	}
}

func TestRemoteCloseWhileHanging(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	s := &remoteScript{handler: serveGood}
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer once.Do(func() { close(release) })
	for _, withClient := range []bool{false, true} {
		opts := []policy.FileOption{policy.WatchInterval(5 * time.Millisecond), policy.FetchTimeout(time.Minute)}
		if withClient {
			opts = append(opts, policy.WithHTTPClient(&http.Client{}))
		}
		s.set(serveGood)
		p, err := policy.NewRemoteProvider(srv.URL+"/p.json", opts...)
		if err != nil {
			t.Fatal(err)
		}
		s.set(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, `{"policies": {`)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		// let the poller get stuck; also a manual Reload stuck
		time.Sleep(50 * time.Millisecond)
		reloadDone := make(chan error, 1)
		go func() { reloadDone <- p.Reload() }()
		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		closed := make(chan struct{})
		go func() { p.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			t.Errorf("client=%v: Close blocked by a hanging fetch", withClient)
			once.Do(func() { close(release) })
			<-closed
		}
		select {
		case <-reloadDone:
		case <-time.After(2 * time.Second):
			t.Errorf("client=%v: Reload still hanging after Close", withClient)
			once.Do(func() { close(release) })
			<-reloadDone
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("client=%v: Close took %v", withClient, el)
		}
		checkGood(t, "after close", p)
		if err := p.Reload(); err == nil {
			t.Error("Reload after Close succeeded")
		}
		srv.CloseClientConnections()
	}
}

func TestRemoteRedirects(t *testing.T) {
	good := httptest.NewServer(http.HandlerFunc(serveGood))
	defer good.Close()
	_, goodPort, _ := net.SplitHostPort(good.Listener.Addr().String())
	var target string
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/local.json" {
			serveGood(w, r)
			return
		}
		http.Redirect(w, r, target, http.StatusFound)
	}))
	defer redir.Close()
	_, redirPort, _ := net.SplitHostPort(redir.Listener.Addr().String())
	cases := []struct {
		name, target string
		client       *http.Client
		wantOK       bool
	}{
		{"same-host-path", "/local.json", nil, true},
		{"other-hostname", "http://localhost:" + goodPort + "/p.json", nil, false},
		{"other-hostname-allowall-client", "http://localhost:" + goodPort + "/p.json",
			&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}, false},
		{"same-name-other-port", "http://127.0.0.1:" + goodPort + "/p.json", nil, false},
		{"userinfo-trick", "http://127.0.0.1:" + redirPort + "@localhost:" + goodPort + "/p.json", nil, false},
		{"scheme-relative-other", "//localhost:" + goodPort + "/p.json", nil, false},
		{"uppercase-same", "http://127.0.0.1:" + redirPort + "/local.json", nil, true},
	}
	for _, tc := range cases {
		target = tc.target
		opts := []policy.FileOption{policy.WatchInterval(0), policy.FetchTimeout(time.Second)}
		if tc.client != nil {
			opts = append(opts, policy.WithHTTPClient(tc.client))
		}
		p, err := policy.NewRemoteProvider(redir.URL+"/p.json", opts...)
		if p != nil {
			p.Close()
		}
		if tc.wantOK && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.wantOK && err == nil {
			t.Errorf("%s: redirect to %s followed", tc.name, tc.target)
		}
	}
	target = "http://localhost:" + goodPort + "/p.json"
	p, err := policy.NewRemoteProvider(redir.URL+"/p.json", policy.WatchInterval(0), policy.AllowRedirectsToOtherHosts())
	if err != nil {
		t.Errorf("AllowRedirectsToOtherHosts: %v", err)
	} else {
		p.Close()
	}
}

func TestRemoteSizeCap(t *testing.T) {
	big := `{"policies": {"pay.Charge": {"id": "charge-v1", "retry": {"max_attempts": 4}}, "pay.Refund": {"id": "refund-v1"}}, "default": {"id": "` + strings.Repeat("x", 3000) + `"}}`
	for _, chunked := range []bool{false, true} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if !chunked {
				w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			}
			for i := 0; i < len(big); i += 100 {
				_, _ = io.WriteString(w, big[i:min(i+100, len(big))])
				if chunked {
					w.(http.Flusher).Flush()
				}
			}
		}))
		p, err := policy.NewRemoteProvider(srv.URL, policy.WatchInterval(0), policy.MaxPolicyBytes(1000))
		if err == nil {
			t.Errorf("chunked=%v: %d-byte body accepted under a 1000-byte cap", chunked, len(big))
			p.Close()
		}
		srv.Close()
	}
}

func TestRemoteTrickleBoundedByFetchTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := 0; i < 200; i++ {
			_, _ = io.WriteString(w, " ")
			w.(http.Flusher).Flush()
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	defer close(stop)
	start := time.Now()
	p, err := policy.NewRemoteProvider(srv.URL, policy.WatchInterval(0), policy.FetchTimeout(150*time.Millisecond))
	if err == nil {
		p.Close()
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("trickling server held the constructor %v with FetchTimeout 150ms", el)
	}
}

func TestProviderNilContext(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	writeFile(t, path, goodYAML)
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("Policy(nil ctx) panicked: %v", r)
			}
		}()
		//lint:ignore SA1012 deliberately nil
		_, err := fp.Policy(nil, policy.ParseKey("pay.Charge"))
		if err == nil {
			t.Error("nil ctx accepted")
		}
	}()
	_ = errors.New
}

// An honest server answers 304 only to the ETag it currently serves. After it
// published a bad set, polls must keep failing (If-None-Match names the last
// GOOD set), not be cleared by a 304 for the bad set's ETag.
func TestRemoteBadSetETagNotTrusted(t *testing.T) {
	var mu sync.Mutex
	body, etag := goodJSON, `"v1"`
	var lastINM atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, e := body, etag
		mu.Unlock()
		lastINM.Store(r.Header.Get("If-None-Match"))
		w.Header().Set("ETag", e)
		if r.Header.Get("If-None-Match") == e {
			w.WriteHeader(304)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, b)
	}))
	defer srv.Close()
	p, err := policy.NewRemoteProvider(srv.URL, policy.WatchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mu.Lock()
	body, etag = `{"policies": {"pay.Charge": {"retry": {"max_attempts": -3}}}}`, `"v2"`
	mu.Unlock()
	for i := 0; i < 3; i++ {
		if err := p.Reload(); err == nil || p.Err() == nil {
			t.Fatalf("poll %d against a bad set: err %v, Err() %v (sent If-None-Match %v)", i, err, p.Err(), lastINM.Load())
		}
		checkGood(t, "bad etag", p)
	}
	mu.Lock()
	body, etag = goodJSON, `"v1"`
	mu.Unlock()
	if err := p.Reload(); err != nil || p.Err() != nil {
		t.Fatalf("back to the good set: %v / %v", err, p.Err())
	}
}
