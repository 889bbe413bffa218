// Command basic shows recourse's facade against a flaky dependency it
// starts itself: an HTTP server on loopback that fails two requests out of
// three, stalls now and then, and rejects bad input. Each call's timeline
// is logged through zerolog, one line per attempt and one per call.
//
//	go run ./examples/basic
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

func main() {
	base, stop := startFlakyServer()
	defer stop()

	zerolog.TimeFieldFormat = time.RFC3339Nano
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stdout, TimeFormat: "15:04:05.000"}).With().Timestamp().Logger()
	exec := recourse.NewExecutor(
		recourse.WithObserver(timeline.NewZerologObserver(log)),
		recourse.WithPolicy("inventory.Get",
			policy.MaxAttempts(3),
			policy.Backoff(20*time.Millisecond, 200*time.Millisecond, 2),
			policy.Jitter(policy.JitterEqual)),
		recourse.WithPolicy("inventory.Slow",
			policy.MaxAttempts(3),
			policy.Backoff(10*time.Millisecond, 50*time.Millisecond, 2),
			policy.TimeoutPerAttempt(100*time.Millisecond),
			policy.OverallTimeout(time.Second)),
		recourse.WithPolicy("inventory.Bad", policy.MaxAttempts(5)),
	)
	recourse.SetDefault(exec)

	ctx := context.Background()
	for _, call := range []struct{ key, path string }{
		{"inventory.Get", "/flaky"},     // 503, 503, then 200
		{"inventory.Slow", "/slow"},     // first try stalls past its 100ms deadline
		{"inventory.Bad", "/bad"},       // 400: not worth retrying
		{"inventory.Unknown", "/flaky"}, // no policy: runs under the fallback
	} {
		body, tl, err := recourse.DoValueWithTimeline(ctx, call.key, func(ctx context.Context) (string, error) {
			return get(ctx, base+call.path)
		})
		fmt.Printf("\n== %s → %q, err=%v\n%s\n\n", call.key, body, err, tl)
	}
}

// get fetches url; 5xx is retryable, 4xx is permanent.
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", recourse.Permanent(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode >= 500:
		return "", fmt.Errorf("server error: %s", resp.Status)
	case resp.StatusCode >= 400:
		return "", recourse.Permanent(fmt.Errorf("client error: %s", resp.Status))
	}
	return string(b), nil
}

// startFlakyServer serves the dependency on a loopback port.
func startFlakyServer() (base string, stop func()) {
	var flaky, slow atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if flaky.Add(1)%3 != 0 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "42 in stock")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		if slow.Add(1) == 1 {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "7 in stock")
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such item", http.StatusBadRequest)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }
}
