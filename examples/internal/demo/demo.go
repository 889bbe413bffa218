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
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse"
)

// Logger returns a zerolog logger writing readable lines to stdout (see
// NewLogger), or, when the environment variable RECOURSE_LOG_FORMAT is
// "json", the JSON lines timeline.NewZerologObserver documents, as a
// service would log them (what "recourse timeline" draws):
//
//	RECOURSE_LOG_FORMAT=json go run ./examples/basic | go run ./cmd/recourse timeline -
func Logger() zerolog.Logger {
	if os.Getenv("RECOURSE_LOG_FORMAT") == "json" {
		return zerolog.New(os.Stdout).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	}
	return NewLogger(os.Stdout)
}

// NewLogger returns a zerolog logger writing readable lines to w at info
// level and above, with millisecond timestamps. The lines are coloured only
// when w is a terminal and NO_COLOR is not set (see Colour): piped into a
// file or another program they hold no ANSI escapes. Each call's timeline
// is shortened to one "#attempt outcome … duration" phrase per try, and
// the fields a reader of the console needs least (event, call_id) are
// left out; NewZerologObserver documents them all.
func NewLogger(w io.Writer) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	cw := zerolog.ConsoleWriter{
		Out:        w,
		NoColor:    !Colour(w),
		TimeFormat: "15:04:05.000",
		FieldsOrder: []string{"error", "key", "from", "to", "attempt", "hedge_index", "outcome", "reason", "status",
			"budget", "allowed", "start_ms", "after_ms", "trigger", "duration_ms", "attempts", "timeline"},
		FieldsExclude: []string{"event", "call_id", "start", "at"},
		FormatPrepare: shortTimeline,
	}
	return zerolog.New(cw).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// Colour reports whether w should get ANSI colours: it is a terminal (a
// character device) and the NO_COLOR convention (https://no-color.org)
// does not turn colour off.
func Colour(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// shortTimeline replaces the "timeline" array of a call line by one phrase
// per try ("#2 retryable (timeout) 100.2ms, wait 15ms") and drops a
// primary try's hedge_index 0.
func shortTimeline(evt map[string]any) error {
	if h, ok := evt["hedge_index"]; ok && fmt.Sprint(h) == "0" {
		delete(evt, "hedge_index") // a primary try: say nothing
	}
	tries, ok := evt["timeline"].([]any)
	if !ok {
		return nil
	}
	var b strings.Builder
	for i, t := range tries {
		a, _ := t.(map[string]any)
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "#%v", a["attempt"])
		if h := fmt.Sprint(a["hedge_index"]); h != "0" {
			fmt.Fprintf(&b, " hedge %s", h)
		}
		fmt.Fprintf(&b, " %v", a["outcome"])
		if r, ok := a["reason"]; ok {
			fmt.Fprintf(&b, " (%v)", r)
		}
		if s, ok := a["status"]; ok {
			fmt.Fprintf(&b, " %v", s)
		}
		fmt.Fprintf(&b, " %vms", a["duration_ms"])
		if w, ok := a["backoff_ms"]; ok {
			fmt.Fprintf(&b, ", wait %vms", w)
		}
	}
	evt["timeline"] = b.String()
	return nil
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
