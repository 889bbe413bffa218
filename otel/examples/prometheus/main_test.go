package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scrape GETs /metrics from srv over loopback and returns its lines.
func scrape(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// sample returns the value of the first sample of name whose labels
// include every one of labels (`k="v"`), and whether there is one.
func sample(lines []string, name string, labels ...string) (float64, bool) {
next:
	for _, l := range lines {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		end := strings.LastIndexByte(l, '}')
		if end < 0 {
			continue
		}
		for _, want := range labels {
			if !strings.Contains(l[:end], want) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(l[end+1:]), 64)
		return v, err == nil
	}
	return 0, false
}

// The demo's metrics reach Prometheus through the OTel exporter: a scrape
// over loopback finds the call-duration histogram of each key, retries,
// a winning hedge and an open breaker.
func TestScrapeOverLoopback(t *testing.T) {
	d, err := newDemo()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	const n = 12
	for _, key := range Keys {
		d.CallN(ctx, key, n)
	}
	srv := httptest.NewServer(d.Metrics) // 127.0.0.1
	defer srv.Close()
	lines := scrape(t, srv.URL)

	for _, key := range Keys {
		k := `recourse_key="` + key + `"`
		if _, ok := sample(lines, "recourse_call_duration_seconds_bucket", k, `le="+Inf"`); !ok {
			t.Errorf("no recourse_call_duration_seconds_bucket for %s", key)
		}
		if v, _ := sample(lines, "recourse_call_duration_seconds_count", k); v != n {
			want := float64(n)
			t.Errorf("recourse_call_duration_seconds_count{%s} = %v, want %v", key, v, want)
		}
	}
	checks := []struct {
		what   string
		name   string
		labels []string
		min    float64
	}{
		{"inventory.Get retries", "recourse_attempt_duration_seconds_count",
			[]string{`recourse_key="inventory.Get"`, `recourse_attempt_kind="retry"`, `recourse_reason="success"`}, 1},
		{"pricing.Quote winning hedges", "recourse_attempt_duration_seconds_count",
			[]string{`recourse_key="pricing.Quote"`, `recourse_attempt_kind="hedge"`, `recourse_reason="hedge_won"`}, 1},
		{"reviews.List breaker opened", "recourse_circuit_breaker_transitions_total",
			[]string{`recourse_key="reviews.List"`, `recourse_from="closed"`, `recourse_to="open"`}, 1},
		{"reviews.List breaker open now", "recourse_circuit_breaker_open",
			[]string{`recourse_key="reviews.List"`}, 1},
		{"reviews.List refused tries", "recourse_attempt_duration_seconds_count",
			[]string{`recourse_key="reviews.List"`, `recourse_reason="circuit_open"`}, 1},
		{"retries per call", "recourse_call_retries_sum", []string{`recourse_key="inventory.Get"`}, 1},
	}
	for _, c := range checks {
		if v, ok := sample(lines, c.name, c.labels...); !ok || v < c.min {
			t.Errorf("%s: %s%v = %v (found %v), want ≥ %v", c.what, c.name, c.labels, v, ok, c.min)
		}
	}
	if t.Failed() {
		t.Logf("scraped:\n%s", strings.Join(grep(lines, "recourse_"), "\n"))
	}
}

func grep(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// run makes its calls, reports them and, with once, returns.
func TestRunOnce(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), "127.0.0.1:0", 2, true, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(Keys, "metrics: http://127.0.0.1:") {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
