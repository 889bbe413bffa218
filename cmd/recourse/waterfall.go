package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/recourse-go/recourse/timeline"
)

// textWidth is the number of columns of the text waterfall's time scale.
const textWidth = 60

// fmtMS formats milliseconds for people: "0.8ms", "20ms", "312.4ms", "2.35s".
func fmtMS(ms float64) string {
	switch {
	case ms >= 10000:
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	case ms >= 10:
		return strconv.FormatFloat(math.Round(ms*10)/10, 'f', -1, 64) + "ms"
	}
	return strconv.FormatFloat(math.Round(ms*100)/100, 'f', -1, 64) + "ms"
}

// clean makes s safe for a terminal: control characters (escape sequences
// in an error's text) are shown escaped, and it is cut to n runes.
func clean(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar || !unicode.IsPrint(r) && r != ' ' {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
		i++
	}
	return b.String()
}

// verdict is a try's outcome and reason as one word or two: "retryable
// (timeout)", "success", "abort (hedge_lost)".
func (t try) verdict() string {
	if t.reason != "" && t.reason != t.outcome {
		return clean(t.outcome, 40) + " (" + clean(t.reason, 40) + ")"
	}
	return clean(t.outcome, 40)
}

// laneLabel names a try's row: "#2" for a primary try, "#2 hedge 1"
// (indented) for a hedge.
func (t try) laneLabel() string {
	if t.hedge > 0 {
		return fmt.Sprintf("  #%d hedge %d", t.attempt, t.hedge)
	}
	return fmt.Sprintf("#%d", t.attempt)
}

// callTitle is a call's header: key, outcome, total time and tries.
func callTitle(c *call) string {
	tries := fmt.Sprintf("%d tries", c.attempts)
	if c.attempts == 1 {
		tries = "1 try"
	}
	if c.attempts != len(c.tries) {
		tries += fmt.Sprintf(", %d drawn", len(c.tries))
	}
	return fmt.Sprintf("%s  %s  %s  %s", clean(c.key, 120), clean(c.outcome, 40), fmtMS(c.total()), tries)
}

// writeText draws each call as a text waterfall.
func writeText(w io.Writer, calls []*call) {
	for i, c := range calls {
		if i > 0 {
			fmt.Fprintln(w)
		}
		writeCallText(w, c)
	}
}

func writeCallText(w io.Writer, c *call) {
	total := c.total()
	col := func(ms float64) int {
		if total <= 0 {
			return 0
		}
		return min(textWidth, max(0, int(math.Round(ms/total*textWidth))))
	}
	labelW := 4
	for _, t := range c.tries {
		labelW = max(labelW, len(t.laneLabel()))
	}
	fmt.Fprintf(w, "%s  (call %s)\n", callTitle(c), clean(c.id, 40))
	if c.errorMsg != "" {
		fmt.Fprintf(w, "  error: %s\n", clean(c.errorMsg, 200))
	}
	for _, t := range c.tries {
		row := []rune(strings.Repeat(" ", textWidth))
		from, to := col(t.start), col(t.end())
		if to <= from { // at least one column, so that every try shows
			if from == textWidth {
				from--
			}
			to = from + 1
		}
		bar := '█'
		if timeline.Refused(t.reason) {
			bar = '×' // refused before it ran (budget, open breaker, full bulkhead)
		}
		for i := from; i < to; i++ {
			row[i] = bar
		}
		if t.backoff > 0 {
			for i := to; i < max(to+1, col(t.end()+t.backoff)) && i < textWidth; i++ {
				row[i] = '·'
			}
		}
		label := t.verdict()
		if t.status != "" {
			label += " " + clean(t.status, 40)
		}
		label += " " + fmtMS(t.duration)
		if t.backoff > 0 {
			label += ", then waited " + fmtMS(t.backoff)
		}
		if t.errorMsg != "" {
			label += ": " + clean(t.errorMsg, 80)
		}
		fmt.Fprintf(w, "  %-*s |%s| %s\n", labelW, t.laneLabel(), string(row), label)
	}
	end := fmtMS(total)
	fmt.Fprintf(w, "  %-*s  %s%*s\n", labelW, "", "0", textWidth-1, end)
}
