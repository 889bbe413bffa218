package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// maxLine is the longest input line read; longer lines are skipped with a
// warning (a call line with thousands of tries stays well below it).
const maxLine = 8 << 20

// try is one attempt of a call, as a "call" line's timeline entry or an
// "attempt" line gives it. Times are milliseconds after the call started.
type try struct {
	attempt, hedge   int
	start, duration  float64
	backoff          float64
	hasStart         bool
	outcome, reason  string
	status, errorMsg string
}

// end is when the try ended, in ms after the call started.
func (t try) end() float64 { return t.start + t.duration }

// call is what the input tells of one call.
type call struct {
	id, key    string
	outcome    string // "success", "failure", or "incomplete" (no call line)
	start      string
	errorMsg   string
	duration   float64
	attempts   int
	tries      []try
	sawCall    bool
	lineTries  []try // from "attempt" lines, used when there is no call line
	firstLine  int
	callLineNo int
}

// total is the time the drawing spans: the call's duration, or the end of
// its last try (and wait) if that is later.
func (c *call) total() float64 {
	t := c.duration
	for _, x := range c.tries {
		t = math.Max(t, x.end()+x.backoff)
	}
	return t
}

// jsonTry is the shape of a try on an "attempt" line or in a "call" line's
// timeline. Numbers are decoded as json.Number so that a wrong type in one
// field spoils only that field.
type jsonTry struct {
	Attempt    json.RawMessage `json:"attempt"`
	HedgeIndex json.RawMessage `json:"hedge_index"`
	StartMS    json.RawMessage `json:"start_ms"`
	DurationMS json.RawMessage `json:"duration_ms"`
	BackoffMS  json.RawMessage `json:"backoff_ms"`
	Outcome    json.RawMessage `json:"outcome"`
	Reason     json.RawMessage `json:"reason"`
	Status     json.RawMessage `json:"status"`
	Error      json.RawMessage `json:"error"`
}

type jsonLine struct {
	jsonTry
	Event    json.RawMessage   `json:"event"`
	Key      json.RawMessage   `json:"key"`
	CallID   json.RawMessage   `json:"call_id"`
	Start    json.RawMessage   `json:"start"`
	Attempts json.RawMessage   `json:"attempts"`
	Timeline []json.RawMessage `json:"timeline"`
}

// parseResult is what the reader found.
type parseResult struct {
	calls    []*call
	lines    int      // lines read
	notJSON  int      // lines that are not JSON objects
	warnings []string // skipped or repaired input, by line
}

func (p *parseResult) warnf(line int, format string, args ...any) {
	const maxWarnings = 50
	if len(p.warnings) == maxWarnings {
		p.warnings = append(p.warnings, "… further warnings left out")
	}
	if len(p.warnings) > maxWarnings {
		return
	}
	p.warnings = append(p.warnings, fmt.Sprintf("line %d: %s", line, fmt.Sprintf(format, args...)))
}

// parseTimeline reads JSON lines written by timeline.NewZerologObserver
// (among other log lines) and groups them per call. Only a read error is
// returned as an error; bad lines are skipped with a warning.
func parseTimeline(r io.Reader) (*parseResult, error) {
	res := &parseResult{}
	byID := map[string]*call{}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, tooLong, err := readLine(br)
		if len(line) > 0 || tooLong || err == nil {
			res.lines++
			if tooLong {
				res.warnf(res.lines, "longer than %d bytes: skipped", maxLine)
			} else {
				res.parseLine(res.lines, line, byID)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, err
		}
	}
	// Calls without a call line (a log cut short, a call still running)
	// are drawn from their attempt lines.
	var out []*call
	for _, c := range res.calls {
		if !c.sawCall {
			c.outcome = "incomplete"
			c.tries = c.lineTries
			c.attempts = len(c.tries)
		}
		if len(c.tries) == 0 {
			res.warnf(c.callLineNo, "call %s (%s) has no tries to draw: skipped", c.id, c.key)
			continue
		}
		placeTries(c)
		out = append(out, c)
	}
	res.calls = out
	return res, nil
}

// readLine reads one line without its end; a line longer than maxLine is
// consumed and reported as tooLong.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > maxLine {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), tooLong, err
	}
}

func (res *parseResult) parseLine(n int, line []byte, byID map[string]*call) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	if line[0] != '{' || !json.Valid(line) {
		res.notJSON++
		return
	}
	var l jsonLine
	if err := json.Unmarshal(line, &l); err != nil {
		// A "timeline" that is not an array, and the like.
		if ev, _ := str(l.Event); ev == "call" || ev == "attempt" {
			res.warnf(n, "%s line: %v: skipped", ev, err)
		}
		return
	}
	ev, _ := str(l.Event)
	switch ev {
	case "call", "attempt":
	default:
		return // other recourse events, other programs' lines
	}
	key, _ := str(l.Key)
	id, _ := str(l.CallID)
	if id == "" {
		if ev == "attempt" {
			return // an attempt not reported by a recourse call: no call to put it in
		}
		id = fmt.Sprintf("line %d", n) // a call line alone is still a call
	}
	c := byID[id]
	if c == nil {
		c = &call{id: id, key: key, firstLine: n, callLineNo: n}
		byID[id] = c
		res.calls = append(res.calls, c)
	}
	if ev == "attempt" {
		t, ok := res.parseTry(n, l.jsonTry, false)
		if ok {
			c.lineTries = append(c.lineTries, t)
		}
		return
	}
	if c.sawCall {
		res.warnf(n, "a second call line for call %s: ignored", id)
		return
	}
	c.sawCall, c.callLineNo, c.key = true, n, key
	c.outcome, _ = str(l.Outcome)
	if c.outcome == "" {
		c.outcome = "unknown"
	}
	c.start, _ = str(l.Start)
	c.errorMsg, _ = str(l.Error)
	c.duration = res.num(n, "duration_ms", l.DurationMS, true)
	c.attempts = int(res.num(n, "attempts", l.Attempts, true))
	for i, raw := range l.Timeline {
		var jt jsonTry
		if err := json.Unmarshal(raw, &jt); err != nil {
			res.warnf(n, "timeline[%d]: %v: skipped", i, err)
			continue
		}
		if t, ok := res.parseTry(n, jt, true); ok {
			c.tries = append(c.tries, t)
		}
	}
	if len(c.tries) == 0 && len(l.Timeline) == 0 && len(c.lineTries) > 0 {
		c.tries = c.lineTries // a call line without its timeline: use the attempt lines
	}
}

// parseTry reads one try; a try without a usable attempt number or with a
// bad duration is skipped with a warning.
func (res *parseResult) parseTry(n int, jt jsonTry, inCall bool) (try, bool) {
	where := "attempt line"
	if inCall {
		where = "call line's timeline entry"
	}
	var t try
	a := res.num(n, "attempt", jt.Attempt, false)
	if a < 1 || a > 1e9 || a != math.Trunc(a) {
		res.warnf(n, "%s without a valid attempt number: skipped", where)
		return t, false
	}
	t.attempt = int(a)
	t.hedge = int(res.num(n, "hedge_index", jt.HedgeIndex, true))
	if t.hedge < 0 || t.hedge > 1e6 {
		res.warnf(n, "%s with hedge_index %d: drawn as the primary try", where, t.hedge)
		t.hedge = 0
	}
	t.hasStart = len(jt.StartMS) > 0
	t.start = res.num(n, "start_ms", jt.StartMS, true)
	t.duration = res.num(n, "duration_ms", jt.DurationMS, true)
	t.backoff = res.num(n, "backoff_ms", jt.BackoffMS, true)
	t.outcome, _ = str(jt.Outcome)
	if t.outcome == "" {
		t.outcome = "unknown"
	}
	t.reason, _ = str(jt.Reason)
	t.status, _ = str(jt.Status)
	t.errorMsg, _ = str(jt.Error)
	return t, true
}

// maxMS bounds every time read (about 115 days): beyond, the input is
// garbage and would only squash the picture.
const maxMS = 1e10

// num reads a JSON number; absent is 0. A value that is not a finite
// number in [0, maxMS] gives a warning and 0.
func (res *parseResult) num(n int, field string, raw json.RawMessage, nonNeg bool) float64 {
	if len(raw) == 0 {
		return 0
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		res.warnf(n, "%s is not a number (%.40s): taken as 0", field, raw)
		return 0
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || (nonNeg && f < 0) || f > maxMS || f < -maxMS {
		res.warnf(n, "%s out of range (%v): taken as 0", field, f)
		return 0
	}
	return f
}

// str reads a JSON string; absent or another type is "".
func str(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// placeTries orders a call's tries by attempt then hedge index (the lanes
// top to bottom) and places a try that lacks start_ms right after the
// previous attempt's end and wait.
func placeTries(c *call) {
	sort.SliceStable(c.tries, func(i, j int) bool {
		a, b := c.tries[i], c.tries[j]
		if a.attempt != b.attempt {
			return a.attempt < b.attempt
		}
		return a.hedge < b.hedge
	})
	next := 0.0
	for i := range c.tries {
		t := &c.tries[i]
		if !t.hasStart {
			t.start = next
		}
		next = math.Max(next, t.end()+t.backoff)
	}
}

const timelineUsage = `usage: recourse timeline [-svg OUT] [FILE|-]

Reads the JSON lines timeline.NewZerologObserver writes (from FILE, or stdin
when FILE is "-" or absent; other lines are skipped) and draws each call as a
waterfall: one bar per try on a common time scale, waits between tries as
"·", hedges on lanes of their own. With -svg OUT it also writes the
waterfalls as a self-contained SVG to OUT ("-": to stdout, instead of text).
`

// runTimeline is "recourse timeline".
func runTimeline(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("timeline", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	svgOut := fs.String("svg", "", "write an SVG to this file")
	// Flags may come before or after FILE ("recourse timeline log.json -svg out.svg").
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			fmt.Fprint(stderr, timelineUsage)
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		if len(rest) > fs.NArg() && rest[len(rest)-fs.NArg()-1] == "--" {
			pos = append(pos, fs.Args()...) // after "--", all are files
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) > 1 {
		fmt.Fprint(stderr, timelineUsage)
		return 2
	}
	name, in := "stdin", stdin
	if len(pos) == 1 && pos[0] != "-" {
		p := pos[0]
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintf(stderr, "recourse timeline: %v\n", err)
			return 1
		}
		defer f.Close()
		name, in = p, f
	}
	if in == nil {
		in = strings.NewReader("")
	}
	res, err := parseTimeline(in)
	for _, w := range res.warnings {
		fmt.Fprintf(stderr, "recourse timeline: %s: %s\n", name, w)
	}
	if res.notJSON > 0 {
		fmt.Fprintf(stderr, "recourse timeline: %s: %d of %d lines are not JSON: skipped\n", name, res.notJSON, res.lines)
	}
	if err != nil {
		fmt.Fprintf(stderr, "recourse timeline: reading %s: %v\n", name, err)
		if len(res.calls) == 0 {
			return 1
		}
	}
	if len(res.calls) == 0 {
		fmt.Fprintf(stderr, "recourse timeline: %s: no recourse calls to draw in %d lines (expected the JSON lines of timeline.NewZerologObserver: \"event\":\"call\" or \"attempt\" with a \"call_id\")\n", name, res.lines)
		return 1
	}
	if *svgOut == "-" {
		if err := writeSVG(stdout, res.calls); err != nil {
			fmt.Fprintf(stderr, "recourse timeline: %v\n", err)
			return 1
		}
		return 0
	}
	writeText(stdout, res.calls)
	if *svgOut != "" {
		if err := writeSVGFile(*svgOut, res.calls); err != nil {
			fmt.Fprintf(stderr, "recourse timeline: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "recourse timeline: wrote %d call(s) to %s\n", len(res.calls), *svgOut)
	}
	return 0
}

func writeSVGFile(path string, calls []*call) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeSVG(f, calls); err != nil {
		f.Close()
		return err
	}
	return errors.Join(f.Close())
}
