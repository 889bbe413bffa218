// Package demo holds what the examples share: starting their embedded,
// misbehaving dependencies (plain HTTP servers on loopback whose handlers
// fail, stall or recover on purpose), calling them, and a console logger
// for the timelines.
package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse"
)

// Logger returns a zerolog logger writing readable lines to stdout, with
// millisecond timestamps.
func Logger() zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stdout, TimeFormat: "15:04:05.000"}).With().Timestamp().Logger()
}

// Start serves mux on a free loopback port and returns its base URL and a
// function that stops it.
func Start(mux *http.ServeMux) (base string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }
}

// Get fetches url and returns its body. 5xx and transport errors are
// returned as plain (retryable) errors; 4xx is marked permanent.
func Get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", recourse.Permanent(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	switch {
	case resp.StatusCode >= 500:
		return "", fmt.Errorf("server error: %s", resp.Status)
	case resp.StatusCode >= 400:
		return "", recourse.Permanent(fmt.Errorf("client error: %s", resp.Status))
	}
	return string(b), nil
}

// Sleep waits d or until ctx is done, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
