package rhttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/recourse-go/recourse/middleware"
)

func TestRetryAfterSecondsBounds(t *testing.T) {
	for _, tc := range []struct {
		d             time.Duration
		spread, round float64
		want          int64
	}{
		{time.Second, 0, 0.99, 1},                // exactly 1s: nothing to round
		{time.Second, 0.999, 0.0, 2},             // 1.25s, rounded up (0 < 0.25)
		{time.Second, 0.999, 0.5, 1},             // 1.25s, rounded down
		{500 * time.Millisecond, 0.999, 0.99, 1}, // never below d rounded up
		{1500 * time.Millisecond, 0, 0.99, 2},
		{10 * time.Second, 0.999, 0.0, 13}, // 12.5s up
		{10 * time.Second, 0.999, 0.9, 12}, // 12.5s down
	} {
		if got := retryAfterSeconds(tc.d, tc.spread, tc.round); got != tc.want {
			t.Errorf("retryAfterSeconds(%v, %g, %g) = %d, want %d", tc.d, tc.spread, tc.round, got, tc.want)
		}
	}
}

// TestShedderSpreadsRetryAfter: clients shed together are told different
// delays, within [d, 1.25 d] in whole seconds, averaging about 1.125 d.
func TestShedderSpreadsRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d        time.Duration
		lo, hi   int64
		mlo, mhi float64
	}{
		{time.Second, 1, 2, 1.05, 1.2},
		{10 * time.Second, 10, 13, 10.9, 11.6},
	} {
		b := middleware.NewBulkhead(1, 0)
		hold, _ := b.Acquire(context.Background())
		h := NewShedder(func(string) middleware.Limiter { return b }, ShedRetryAfter(tc.d)).
			Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		seen := map[int64]int{}
		var sum int64
		const n = 600
		for range n {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			v, err := strconv.ParseInt(rec.Header().Get("Retry-After"), 10, 64)
			if err != nil || v < tc.lo || v > tc.hi {
				t.Fatalf("d %v: Retry-After %q, want whole seconds in [%d, %d]", tc.d, rec.Header().Get("Retry-After"), tc.lo, tc.hi)
			}
			seen[v]++
			sum += v
		}
		hold(false)
		if len(seen) < 2 {
			t.Errorf("d %v: every shed request told the same delay: %v", tc.d, seen)
		}
		if m := float64(sum) / n; m < tc.mlo || m > tc.mhi {
			t.Errorf("d %v: mean Retry-After %.3fs, want in [%g, %g] (%v)", tc.d, m, tc.mlo, tc.mhi, seen)
		}
	}
}
