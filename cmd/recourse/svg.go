package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/recourse-go/recourse/timeline"
)

// The SVG's layout, in pixels.
const (
	svgWidth   = 960
	svgLabelW  = 110 // lane labels, left of the chart
	svgChartW  = 560 // the time scale
	svgLaneH   = 20
	svgBarH    = 14
	svgTitleH  = 26
	svgAxisH   = 30
	svgGap     = 18
	svgLegendH = 46
)

// colour classes, by what a try's outcome and reason say.
var legend = []struct{ class, colour, label string }{
	{"success", "#2e9d4f", "success"},
	{"retryable", "#f0a202", "retryable (timeout, 503, …)"},
	{"failed", "#d62828", "non_retryable / abort"},
	{"hedge-lost", "#9e9e9e", "hedge_lost (cut short)"},
	{"refused", "#7b2cbf", "refused: budget_denied, circuit_open, bulkhead_full, …"},
	{"unknown", "#607d8b", "unknown"},
}

// colourClass is the legend class of a try.
func colourClass(t try) string {
	switch t.reason {
	case "hedge_lost":
		return "hedge-lost"
	}
	if timeline.Refused(t.reason) {
		return "refused"
	}
	switch t.outcome {
	case "success":
		return "success"
	case "retryable":
		return "retryable"
	case "non_retryable", "abort":
		return "failed"
	}
	return "unknown"
}

func colourOf(class string) string {
	for _, l := range legend {
		if l.class == class {
			return l.colour
		}
	}
	return "#607d8b"
}

// esc XML-escapes s (invalid XML characters become U+FFFD).
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// niceStep is a tick interval of 1, 2 or 5 times a power of ten giving at
// most about 8 ticks over total.
func niceStep(total float64) float64 {
	if total <= 0 || math.IsNaN(total) || math.IsInf(total, 0) {
		return 1
	}
	raw := total / 8
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// writeSVG draws every call as a waterfall in one self-contained SVG.
func writeSVG(out io.Writer, calls []*call) error {
	height := svgLegendH
	for _, c := range calls {
		height += svgTitleH + len(c.tries)*svgLaneH + svgAxisH + svgGap
	}
	w := bufio.NewWriter(out)
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="monospace" font-size="11">`+"\n",
		svgWidth, height, svgWidth, height)
	p(`<title>recourse timeline: %d call(s)</title>`+"\n", len(calls))
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	// Legend.
	p(`<g class="legend" transform="translate(10,8)">` + "\n")
	x := 0
	for i, l := range legend {
		if i == 4 {
			x = 0
		}
		y := 0
		if i >= 4 {
			y = 16
		}
		p(`<rect x="%d" y="%d" width="12" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", x, y, l.colour, x+16, y+9, esc(l.label))
		x += 16 + 7*len([]rune(l.label)) + 18
	}
	p(`<line x1="%d" y1="21" x2="%d" y2="21" stroke="#555" stroke-dasharray="2,2"/><text x="%d" y="25">backoff (wait before the next try)</text>`+"\n", 560, 590, 596)
	p("</g>\n")
	y := svgLegendH
	for i, c := range calls {
		writeCallSVG(p, c, i, y)
		y += svgTitleH + len(c.tries)*svgLaneH + svgAxisH + svgGap
	}
	p("</svg>\n")
	return w.Flush()
}

func writeCallSVG(p func(string, ...any), c *call, idx, y0 int) {
	total := c.total()
	scale := 0.0
	if total > 0 {
		scale = svgChartW / total
	}
	x0 := float64(svgLabelW)
	xOf := func(ms float64) float64 { return x0 + ms*scale }
	p(`<g class="call" id="call-%d" data-key="%s" data-outcome="%s">`+"\n", idx, esc(c.key), esc(c.outcome))
	title := strings.ReplaceAll(callTitle(c), "  ", " · ")
	p(`<text class="call-title" x="10" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", y0+16, esc(title))
	if c.errorMsg != "" {
		p(`<title>%s</title>`+"\n", esc(c.errorMsg))
	}
	lanesTop := y0 + svgTitleH
	for i, t := range c.tries {
		ly := lanesTop + i*svgLaneH
		if i%2 == 0 {
			p(`<rect class="lane-bg" x="%g" y="%d" width="%d" height="%d" fill="#f4f4f4"/>`+"\n", x0, ly, svgChartW, svgLaneH)
		}
		lx := 10
		if t.hedge > 0 {
			lx = 24
		}
		p(`<text class="lane-label" x="%d" y="%d">%s</text>`+"\n", lx, ly+14, esc(strings.TrimSpace(t.laneLabel())))
		class := colourClass(t)
		bx, bw := xOf(t.start), t.duration*scale
		if bw < 2 {
			bw = 2 // every try shows, refused ones too
		}
		if bx+bw > x0+svgChartW {
			bx = x0 + svgChartW - bw
		}
		tip := fmt.Sprintf("#%d hedge %d: %s %s start %s, ran %s", t.attempt, t.hedge, t.verdict(), t.status, fmtMS(t.start), fmtMS(t.duration))
		if t.errorMsg != "" {
			tip += ": " + t.errorMsg
		}
		p(`<rect class="try %s" data-attempt="%d" data-hedge="%d" data-outcome="%s" data-reason="%s" x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			class, t.attempt, t.hedge, esc(t.outcome), esc(t.reason), bx, ly+(svgLaneH-svgBarH)/2, bw, svgBarH, colourOf(class), esc(tip))
		if t.backoff > 0 {
			ex := math.Min(xOf(t.end()+t.backoff), x0+svgChartW)
			p(`<line class="backoff" x1="%.2f" y1="%d" x2="%.2f" y2="%d" stroke="#555" stroke-dasharray="2,2"><title>waited %s</title></line>`+"\n",
				bx+bw, ly+svgLaneH/2, ex, ly+svgLaneH/2, esc(fmtMS(t.backoff)))
		}
		label := t.verdict()
		if t.status != "" {
			label += " " + clean(t.status, 40)
		}
		label += " " + fmtMS(t.duration)
		if t.backoff > 0 {
			label += " +wait " + fmtMS(t.backoff)
		}
		p(`<text class="try-label" x="%d" y="%d">%s</text>`+"\n", svgLabelW+svgChartW+8, ly+14, esc(label))
	}
	// Time axis.
	ay := lanesTop + len(c.tries)*svgLaneH + 2
	p(`<g class="axis">` + "\n")
	p(`<line x1="%g" y1="%d" x2="%g" y2="%d" stroke="#333"/>`+"\n", x0, ay, x0+svgChartW, ay)
	step := niceStep(total)
	for i := 0; i <= 100; i++ {
		ms := float64(i) * step
		if ms > total*1.0001 && i > 0 {
			break
		}
		tx := xOf(ms)
		p(`<line class="tick" x1="%.2f" y1="%d" x2="%.2f" y2="%d" stroke="#333"/><text class="tick-label" x="%.2f" y="%d" text-anchor="middle">%s</text>`+"\n",
			tx, ay, tx, ay+4, tx, ay+15, esc(trimMS(ms)))
	}
	p(`<text x="%g" y="%d">ms</text>`+"\n", x0+svgChartW+8, ay+15)
	p("</g>\n</g>\n")
}

// trimMS formats a tick: "0", "20", "2.5".
func trimMS(ms float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", ms), "0"), ".")
}
