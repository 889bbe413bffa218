package rhttp

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
)

// A body read to its end and never closed holds nothing past its end, as
// net/http's does: the try's context ends, and the deadlines it adopted
// are released — for a success as for a final failed status.
func TestBodyReadToEOFReleasesTheTry(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		var tryCtx context.Context
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			tryCtx = req.Context()
			tryCtx.Done() // watched, as every real transport does
			return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{},
				Body: io.NopCloser(strings.NewReader("hello")), ContentLength: 5, Request: req}, nil
		})
		exec := recourse.NewExecutor(recourse.WithPolicy("k", policy.MaxAttempts(1), policy.TimeoutPerAttempt(time.Hour), policy.OverallTimeout(time.Hour)))
		rt := NewTransport(exec, "k", base)
		req, _ := http.NewRequest("GET", "http://example.invalid/", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if tryCtx.Err() != nil {
			t.Fatalf("%d: the try's context ended before its body was read", status)
		}
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "hello" {
			t.Fatalf("%d: body %q, %v", status, b, err)
		}
		if tryCtx.Err() == nil {
			t.Errorf("%d: the try's context is still live after its body was read to the end (and never closed)", status)
		}
		if err := resp.Body.Close(); err != nil {
			t.Errorf("%d: Close after the end: %v", status, err)
		}
	}
}
