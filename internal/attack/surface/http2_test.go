package surfaceattack

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/policy"
)

// HEAD answered 404 with a Content-Length: net/http reports that length.
func TestHeadFinalFailureContentLength(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		w.WriteHeader(404)
	}))
	defer srv.Close()
	plain := &http.Transport{}
	defer plain.CloseIdleConnections()
	want, err := (&http.Client{Transport: plain}).Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want.Body.Close()
	c, _ := newClient(t, fastExec("k.head"), "k.head")
	resp, err := c.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ContentLength != want.ContentLength || len(b) != 0 {
		t.Fatalf("HEAD 404: ContentLength %d (net/http %d), body %d bytes", resp.ContentLength, want.ContentLength, len(b))
	}
}

// gzip-encoded final failure: transparent decompression as net/http does.
func TestGzipFinalFailure(t *testing.T) {
	text := strings.Repeat("not found here. ", 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.WriteHeader(404)
			_, _ = io.WriteString(w, text)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(404)
		gz := gzip.NewWriter(w)
		_, _ = io.WriteString(gz, text)
		gz.Close()
	}))
	defer srv.Close()
	for _, code := range []string{"k.gz"} {
		c, _ := newClient(t, fastExec(code), code)
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != text {
			t.Fatalf("gz 404 body: %d bytes (want %d), err %v", len(b), len(text), err)
		}
		if resp.ContentLength != -1 && resp.ContentLength != int64(len(text)) {
			t.Fatalf("ContentLength %d for %d decoded bytes", resp.ContentLength, len(text))
		}
	}
}

// Trailers on a final failure and on a success arrive after the body is read.
func TestTrailers(t *testing.T) {
	for _, code := range []int{200, 404, 503} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
		}))
		c, base := newClient(t, fastExec("k.trl"), "k.trl")
		resp, err := c.Get(srv.URL)
		if err != nil {
			srv.Close()
			t.Fatalf("%d: %v", code, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		base.CloseIdleConnections()
		srv.Close()
		if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
			t.Errorf("%d: body %q, trailer %v", code, b, resp.Trailer)
		}
	}
}

// Cancelling the request context after RoundTrip returned ends the body read,
// as with net/http.
func TestCancelAfterReturnEndsBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "head")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}))
	defer srv.Close()
	defer close(release)
	for _, key := range []string{"k.cancelbody", "k.cancelbodyhedge"} {
		exec := fastExec(key)
		if key == "k.cancelbodyhedge" {
			exec = fastExec(key, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Millisecond}))
		}
		c, _ := newClient(t, exec, key)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		_, _ = io.ReadFull(resp.Body, buf)
		var done atomic.Bool
		go func() { time.Sleep(30 * time.Millisecond); done.Store(true); cancel() }()
		start := time.Now()
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("%s: read after cancel: err %v after %v", key, err, time.Since(start))
		}
	}
}

// A hedged GET whose tries all get a final 404: the 404's whole body.
func TestHedgedFinalFailureBody(t *testing.T) {
	body := strings.Repeat("missing ", 40_000)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			time.Sleep(40 * time.Millisecond)
		}
		w.WriteHeader(404)
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	key := "k.h404"
	c, _ := newClient(t, fastExec(key, policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 5 * time.Millisecond, MaxHedges: 2})), key)
	for i := 0; i < 5; i++ {
		hits.Store(0)
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || string(b) != body || err != nil {
			t.Fatalf("hedged 404: status %d, %d of %d bytes, %v", resp.StatusCode, len(b), len(body), err)
		}
	}
}
