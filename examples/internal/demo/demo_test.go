package demo

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// logSome writes a warn line with an error, as failed attempts are logged.
func logSome(l zerolog.Logger) {
	l.Warn().Str("event", "attempt").Str("key", "inventory.Get").Int("attempt", 1).Int("hedge_index", 0).
		RawJSON("duration_ms", []byte("1.5")).Err(errors.New("server error: 503")).Msg("recourse attempt")
}

func TestNoColourIntoAPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if Colour(w) {
		t.Fatal("a pipe is not a terminal")
	}
	logSome(NewLogger(w))
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(out, 0x1b) >= 0 {
		t.Fatalf("ANSI escape in piped output: %q", out)
	}
	if !strings.Contains(string(out), `WRN recourse attempt error="server error: 503" key=inventory.Get attempt=1 duration_ms=1.5`) {
		t.Fatalf("unexpected line: %q", out)
	}
}

func TestNoColourIntoAFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if Colour(f) {
		t.Fatal("a regular file is not a terminal")
	}
	logSome(NewLogger(f))
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 || bytes.IndexByte(out, 0x1b) >= 0 {
		t.Fatalf("output %q", out)
	}
}

func TestColourOnlyOnCharacterDevicesWithoutNoColor(t *testing.T) {
	if Colour(&bytes.Buffer{}) {
		t.Fatal("a buffer is not a terminal")
	}
	tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0) // a character device, as a terminal is
	if err != nil {
		t.Skip(err)
	}
	defer tty.Close()
	t.Setenv("NO_COLOR", "")
	if !Colour(tty) {
		t.Fatalf("%s is a character device: colour expected", os.DevNull)
	}
	t.Setenv("NO_COLOR", "1")
	if Colour(tty) {
		t.Fatal("NO_COLOR set: no colour expected")
	}
}

// The switch matters: the same writer with colour on does write escapes.
func TestConsoleWriterColoursUnlessTold(t *testing.T) {
	var buf bytes.Buffer
	logSome(zerolog.New(zerolog.ConsoleWriter{Out: &buf}))
	if bytes.IndexByte(buf.Bytes(), 0x1b) < 0 {
		t.Fatalf("expected colour: %q", buf.String())
	}
}

func TestShortTimeline(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf)
	l.Info().Str("event", "call").Str("key", "k.Op").
		RawJSON("timeline", []byte(`[{"attempt":1,"hedge_index":0,"duration_ms":0.5,"outcome":"retryable","status":"503","backoff_ms":20},`+
			`{"attempt":2,"hedge_index":1,"duration_ms":3,"outcome":"success","reason":"hedge_won"}]`)).Msg("recourse call")
	want := `INF recourse call key=k.Op timeline="#1 retryable 503 0.5ms, wait 20ms; #2 hedge 1 success (hedge_won) 3ms"`
	if !strings.Contains(buf.String(), want) {
		t.Fatalf("got %q\nwant %q", buf.String(), want)
	}
}
