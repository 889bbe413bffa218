package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// timelineRun runs "recourse timeline args..." on stdin.
func timelineRun(t testing.TB, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runTimeline(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// golden compares got with testdata/timeline/name; UPDATE_GOLDEN=1 rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "timeline", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (UPDATE_GOLDEN=1 rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// A call retried twice, with waits between its tries: one bar per try on a
// common scale, each wait drawn as "·" up to the next try's start.
func TestTimelineTextRetriesWithBackoff(t *testing.T) {
	code, out, errs := timelineRun(t, "", "testdata/timeline/retries.jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	golden(t, "retries.golden", out)
	if errs != "" {
		t.Errorf("stderr: %q", errs) // the non-recourse JSON line is skipped silently
	}
	lines := strings.Split(out, "\n")
	// The wait after #1 reaches the column where #2 starts.
	bar1, bar2 := []rune(lines[1]), []rune(lines[2])
	endWait := lastIndex(bar1, '·')
	start2 := indexRune(bar2, '█')
	if endWait < 0 || start2 != endWait+1 {
		t.Errorf("wait after #1 does not lead to #2:\n%s\n%s", lines[1], lines[2])
	}
}

func lastIndex(rs []rune, r rune) int {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i] == r {
			return i
		}
	}
	return -1
}

func indexRune(rs []rune, r rune) int {
	for i, x := range rs {
		if x == r {
			return i
		}
	}
	return -1
}

// A hedge race: the hedge has its own lane, under its attempt's primary try
// and indented, whatever the order the tries ended in.
func TestTimelineTextHedgeRace(t *testing.T) {
	in, err := os.ReadFile("testdata/timeline/hedge.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := timelineRun(t, string(in), "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	golden(t, "hedge.golden", out)
	if !strings.Contains(errs, "1 of 5 lines are not JSON") {
		t.Errorf("the console line is not counted on stderr: %q", errs)
	}
}

// svgDoc is what the tests read back from the SVG.
type svgElem struct {
	Name  string
	Attrs map[string]string
	Text  string
}

func parseSVG(t testing.TB, b []byte) []svgElem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var out []svgElem
	var stack []int
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse as XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElem{Name: tok.Name.Local, Attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.Attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
			stack = append(stack, len(out)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				out[stack[len(stack)-1]].Text += string(tok)
			}
		}
	}
	return out
}

func TestTimelineSVG(t *testing.T) {
	a, _ := os.ReadFile("testdata/timeline/retries.jsonl")
	b, _ := os.ReadFile("testdata/timeline/hedge.jsonl")
	dir := t.TempDir()
	svgPath := filepath.Join(dir, "calls.svg")
	code, out, errs := timelineRun(t, string(a)+string(b), "-svg", svgPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "inventory.Get") || !strings.Contains(errs, "wrote 2 call(s) to "+svgPath) {
		t.Errorf("with -svg FILE the text still goes to stdout: %q %q", out, errs)
	}
	raw, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "@import", "href=", "url("} {
		if bytes.Contains(raw, []byte(bad)) {
			t.Errorf("SVG is not self-contained: has %q", bad)
		}
	}
	elems := parseSVG(t, raw)
	if elems[0].Name != "svg" || elems[0].Attrs["width"] == "" {
		t.Fatalf("root is %+v", elems[0])
	}
	type bar struct{ attempt, hedge, fill, class string }
	var bars []bar
	var titles, ticks, backoffs, labels []string
	for _, e := range elems {
		class := e.Attrs["class"]
		switch {
		case e.Name == "rect" && strings.HasPrefix(class, "try "):
			bars = append(bars, bar{e.Attrs["data-attempt"], e.Attrs["data-hedge"], e.Attrs["fill"], class})
		case class == "call-title":
			titles = append(titles, e.Text)
		case class == "tick-label":
			ticks = append(ticks, e.Text)
		case class == "backoff":
			backoffs = append(backoffs, e.Attrs["x1"])
		case class == "lane-label":
			labels = append(labels, e.Text)
		}
	}
	want := []bar{
		{"1", "0", "#f0a202", "try retryable"},
		{"2", "0", "#f0a202", "try retryable"},
		{"3", "0", "#2e9d4f", "try success"},
		{"1", "0", "#9e9e9e", "try hedge-lost"},
		{"1", "1", "#2e9d4f", "try success"},
	}
	if len(bars) != len(want) {
		t.Fatalf("bars %v, want one per try: %v", bars, want)
	}
	for i := range want {
		if bars[i] != want[i] {
			t.Errorf("bar %d = %v, want %v", i, bars[i], want[i])
		}
	}
	if len(backoffs) != 2 {
		t.Errorf("backoff gaps drawn: %d, want 2", len(backoffs))
	}
	if strings.Join(labels, ",") != "#1,#2,#3,#1,#1 hedge 1" {
		t.Errorf("lanes: %q", labels)
	}
	if len(titles) != 2 || !strings.HasPrefix(titles[0], "inventory.Get · success · 180ms") || !strings.HasPrefix(titles[1], "pricing.Get · success") {
		t.Errorf("titles: %q", titles)
	}
	// The first call's axis: 0 to 180ms in steps of 50, the second's in 5.
	if strings.Join(ticks, ",") != "0,50,100,150,0,5,10,15,20" {
		t.Errorf("ticks: %q", ticks)
	}
	for _, l := range legend {
		if !bytes.Contains(raw, []byte(l.colour)) {
			t.Errorf("legend lacks %s", l.label)
		}
	}
}

// Keys and errors are escaped in the SVG and cleaned on the terminal.
func TestTimelineEscapes(t *testing.T) {
	in := `{"event":"call","key":"a<b>&\"c'","call_id":"1","duration_ms":5,"outcome":"failure","attempts":1,"error":"x\u001b[31m</text><script>","timeline":[{"attempt":1,"hedge_index":0,"start_ms":0,"duration_ms":5,"outcome":"non_retryable","error":"bad\u0000<&>"}]}` + "\n"
	code, out, errs := timelineRun(t, in, "-svg", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	elems := parseSVG(t, []byte(out))
	found := false
	for _, e := range elems {
		if e.Attrs["class"] == "call-title" && strings.HasPrefix(e.Text, `a<b>&"c'`) {
			found = true
		}
		if e.Name == "script" {
			t.Error("an error's text became an element")
		}
	}
	if !found {
		t.Errorf("key not round-tripped through XML escaping:\n%s", out)
	}
	_, text, _ := timelineRun(t, in)
	if strings.ContainsRune(text, 0x1b) || strings.ContainsRune(text, 0) {
		t.Errorf("control characters reach the terminal: %q", text)
	}
}

func TestTimelineGarbage(t *testing.T) {
	okCall := `{"event":"call","key":"k","call_id":"c1","duration_ms":3,"outcome":"success","attempts":1,"timeline":[{"attempt":1,"start_ms":0,"duration_ms":3,"outcome":"success"}]}`
	for _, tc := range []struct {
		name, in string
		code     int
		stderr   string
	}{
		{"empty", "", 1, "no recourse calls to draw in 0 lines"},
		{"binary", "\x00\x01\xff\xfe{{{\x00\n\x89PNG\r\n", 1, "2 of 2 lines are not JSON"},
		{"truncated JSON", okCall[:40] + "\n", 1, "1 of 1 lines are not JSON"},
		{"other logs only", `{"level":"info","message":"hello"}` + "\n" + `{"event":"breaker","key":"k","from":"closed","to":"open"}`, 1, "no recourse calls"},
		{"call line without tries", `{"event":"call","key":"k","call_id":"c2","duration_ms":3,"outcome":"success","attempts":0}`, 1, "has no tries to draw"},
		{"negative and NaN-ish durations", `{"event":"call","key":"k","call_id":"c3","duration_ms":-5,"outcome":"success","attempts":1,"timeline":[{"attempt":1,"start_ms":-1,"duration_ms":"NaN","backoff_ms":1e308,"outcome":"success"}]}`, 0, "duration_ms is not a number"},
		{"missing fields", `{"event":"call","call_id":"c4","timeline":[{},{"attempt":1}]}`, 0, "without a valid attempt number"},
		{"timeline not an array", `{"event":"call","key":"k","call_id":"c5","timeline":{"attempt":1}}`, 1, "call line: json: cannot unmarshal"},
		{"wrong types", `{"event":"attempt","key":7,"call_id":"c6","attempt":"one","duration_ms":true}` + "\n" + `{"event":"attempt","call_id":["x"],"attempt":1}`, 1, "without a valid attempt number"},
		{"good call among garbage", "garbage\n\x00\x00\n" + okCall + "\n{\"event\":\n", 0, "3 of 4 lines are not JSON"},
		{"attempt lines without a call line", `{"event":"attempt","key":"k","call_id":"c7","attempt":1,"start_ms":0,"duration_ms":4,"outcome":"retryable"}`, 0, ""},
		{"huge line", `{"event":"call","key":"` + strings.Repeat("x", maxLine) + `"}` + "\n" + okCall, 0, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := timelineRun(t, tc.in)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out, errs)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q: %q", tc.stderr, errs)
			}
			if code == 0 && !strings.Contains(out, "|") {
				t.Errorf("nothing drawn: %q", out)
			}
		})
	}
}

// A 1 MiB call line (a call with thousands of tries) is read.
func TestTimelineLongLine(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"event":"call","key":"k","call_id":"big","duration_ms":10,"outcome":"failure","attempts":1,"error":"`)
	b.WriteString(strings.Repeat("e", 1<<20))
	b.WriteString(`","timeline":[{"attempt":1,"start_ms":0,"duration_ms":10,"outcome":"retryable"}]}`)
	code, out, errs := timelineRun(t, b.String())
	if code != 0 || !strings.Contains(out, "k  failure  10ms  1 try") {
		t.Fatalf("exit %d: %q %q", code, out[:min(len(out), 200)], errs)
	}
}

func TestTimelineUsage(t *testing.T) {
	for _, args := range [][]string{{"-svg"}, {"-nope"}, {"a", "b"}} {
		if code, _, errs := timelineRun(t, "", args...); code != 2 || !strings.Contains(errs, "usage: recourse timeline") {
			t.Errorf("%q: exit %d, %q", args, code, errs)
		}
	}
	if code, _, errs := timelineRun(t, "", "/no/such/file"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
	// -svg may follow FILE.
	svgPath := filepath.Join(t.TempDir(), "out.svg")
	if code, _, errs := timelineRun(t, "", "testdata/timeline/retries.jsonl", "-svg", svgPath); code != 0 {
		t.Errorf("FILE -svg OUT: exit %d, %q", code, errs)
	} else if _, err := os.Stat(svgPath); err != nil {
		t.Error(err)
	}
	// After "--", a name starting with "-" is a file.
	if code, _, errs := timelineRun(t, "", "--", "-svg"); code != 1 || !strings.Contains(errs, "open -svg") {
		t.Errorf("-- -svg: exit %d, %q", code, errs)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"timeline", "testdata/timeline/hedge.jsonl"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "#1 hedge 1") {
		t.Errorf("run timeline: exit %d, %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "recourse timeline [-svg OUT] [FILE|-]") {
		t.Errorf("usage does not name timeline: %q", errb.String())
	}
}

// FuzzTimeline: no input panics the reader or the drawing, and whatever is
// drawn as SVG parses as XML.
func FuzzTimeline(f *testing.F) {
	for _, name := range []string{"retries.jsonl", "hedge.jsonl"} {
		b, err := os.ReadFile(filepath.Join("testdata", "timeline", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"event":"call","call_id":"x","duration_ms":1e9,"timeline":[{"attempt":1,"duration_ms":0},{"attempt":2,"hedge_index":3,"start_ms":5e9}]}`))
	f.Add([]byte(`{"event":"attempt","call_id":"x","attempt":1e300,"duration_ms":-1}`))
	f.Add([]byte("\x00{\"event\":\"call\"\n\n{}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := parseTimeline(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		writeText(io.Discard, res.calls)
		var svg bytes.Buffer
		if err := writeSVG(&svg, res.calls); err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(&svg)
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("SVG does not parse: %v", err)
			}
		}
	})
}

// End to end: a real executor logs through NewZerologObserver, and the
// command draws what it logged.
func TestTimelineEndToEnd(t *testing.T) {
	var logs bytes.Buffer
	mu := &lockedWriter{w: &logs}
	exec := recourse.NewExecutor(
		recourse.WithObserver(timeline.NewZerologObserver(zerolog.New(mu))),
		recourse.WithPolicy("e2e.Retry", policy.MaxAttempts(3), policy.Backoff(5*time.Millisecond, 20*time.Millisecond, 2)),
		recourse.WithPolicy("e2e.Hedge", policy.MaxAttempts(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 5 * time.Millisecond, MaxHedges: 1})),
	)
	var n atomic.Int32
	err := exec.Do(context.Background(), "e2e.Retry", func(ctx context.Context) error {
		if n.Add(1) < 3 {
			return errors.New("flaky")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var h atomic.Int32
	err = exec.Do(context.Background(), "e2e.Hedge", func(ctx context.Context) error {
		if h.Add(1) == 1 { // the primary stalls until the hedge wins
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := timelineRun(t, "not json\n"+logs.String())
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, logs.String())
	}
	for _, want := range []string{
		"e2e.Retry  success", "3 tries", "#1 ", "#2 ", "#3 ", "retryable", "then waited", "·", "success",
		"e2e.Hedge  success", "#1 hedge 1", "(hedge_lost)", "(hedge_won)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "1 of ") {
		t.Errorf("the non-JSON line is not reported: %q", errs)
	}
	code, svg, errs := timelineRun(t, logs.String(), "-svg", "-")
	if code != 0 {
		t.Fatalf("svg: exit %d: %s", code, errs)
	}
	tries := 0
	for _, e := range parseSVG(t, []byte(svg)) {
		if e.Name == "rect" && strings.HasPrefix(e.Attrs["class"], "try ") {
			tries++
		}
	}
	if tries != 5 {
		t.Errorf("SVG has %d bars, want 5 (3 tries, a primary and its hedge)", tries)
	}
}

// lockedWriter serializes a hedge goroutine's log lines with the caller's.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A try refused before it ran (budget, open breaker) is drawn as "×" on
// the terminal and purple in the SVG.
func TestTimelineRefusedTry(t *testing.T) {
	in := `{"event":"call","key":"k","call_id":"r1","duration_ms":12,"outcome":"failure","attempts":2,"error":"recourse: budget exhausted",` +
		`"timeline":[{"attempt":1,"start_ms":0,"duration_ms":2,"outcome":"retryable","status":"UNAVAILABLE","backoff_ms":10},` +
		`{"attempt":2,"start_ms":12,"duration_ms":0,"outcome":"abort","reason":"budget_denied","error":"recourse: budget exhausted"}]}`
	code, out, errs := timelineRun(t, in)
	if code != 0 || !strings.Contains(out, "×| abort (budget_denied) 0ms") || !strings.Contains(out, "error: recourse: budget exhausted") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	_, svg, _ := timelineRun(t, in, "-svg", "-")
	var fills []string
	for _, e := range parseSVG(t, []byte(svg)) {
		if strings.HasPrefix(e.Attrs["class"], "try ") {
			fills = append(fills, e.Attrs["fill"])
		}
	}
	if strings.Join(fills, ",") != "#f0a202,#7b2cbf" {
		t.Errorf("fills %q", fills)
	}
}
