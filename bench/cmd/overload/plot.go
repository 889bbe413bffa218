package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// plot draws the run as one SVG: each configuration's p99 latency per
// bucket (log scale, beside the unloaded p99), and its goodput per bucket
// as a share of the capacity of the moment, with the adaptive limit.
func plot(rs []result, unloaded result) string {
	const W, H = 960, 470
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	latencyPanel(&b, rs, unloaded, 50, 40, 400, 320)
	goodputPanel(&b, rs, 540, 40, 380, 320)
	for i, r := range rs {
		x := 50 + float64(i)*200
		fmt.Fprintf(&b, `<rect x="%g" y="%d" width="10" height="10" fill="%s"/><text x="%g" y="%d">%s</text>`+"\n", x, H-30, colors[i], x+14, H-21, r.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

var colors = []string{"#e15759", "#f28e2b", "#76b7b2", "#4e79a7"}

// frame draws the degraded third, the time axis and the title.
func frame(b *strings.Builder, title string, n int, x0, y0, w, h float64) func(i int) float64 {
	x := func(i int) float64 { return x0 + float64(i)/float64(n)*w }
	d0, d1 := x(int(runFor/3/bucket)), x(int(2*runFor/3/bucket))
	fmt.Fprintf(b, `<text x="%g" y="%g" font-size="14" font-weight="bold">%s</text>`+"\n", x0, y0-16, title)
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="#fbe3e3"/><text x="%g" y="%g" fill="#a33">%d of %d servers</text>`+"\n",
		d0, y0, d1-d0, h, d0+4, y0+14, degraded, servers)
	for s := 0; s <= int(runFor/time.Second); s += 5 {
		xs := x(int(time.Duration(s) * time.Second / bucket))
		fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle" fill="#555">%ds</text>`+"\n", xs, y0+h+14, s)
	}
	fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="black"/>`+"\n", x0, x0+w, y0+h, y0+h)
	return x
}

func latencyPanel(b *strings.Builder, rs []result, unloaded result, x0, y0, w, h float64) {
	n := len(rs[0].perBucket)
	x := frame(b, "p99 latency per 0.5s (ms, log scale)", n, x0, y0, w, h)
	lo, hi := math.Log10(5), math.Log10(float64(deadline/time.Millisecond)*1.2)
	y := func(d time.Duration) float64 {
		v := math.Min(math.Max(float64(d)/float64(time.Millisecond), 5), math.Pow(10, hi))
		return y0 + h - (math.Log10(v)-lo)/(hi-lo)*h
	}
	for _, tick := range []float64{10, 30, 100, 250} {
		ty := y(time.Duration(tick * float64(time.Millisecond)))
		fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="end">%g</text>`+"\n", x0, x0+w, ty, ty, x0-4, ty+4, tick)
	}
	uy := y(unloaded.p99)
	fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="black" stroke-dasharray="4 3"/><text x="%g" y="%g" text-anchor="end">unloaded p99</text>`+"\n", x0, x0+w, uy, uy, x0+w, uy+14)
	for i, r := range rs {
		var pts []string
		for k, bs := range r.perBucket {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(k)+w/float64(n)/2, y(bs.p99)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[i], strings.Join(pts, " "))
	}
}

func goodputPanel(b *strings.Builder, rs []result, x0, y0, w, h float64) {
	n := len(rs[0].perBucket)
	x := frame(b, "goodput per 0.5s (% of capacity); adaptive limit", n, x0, y0, w, h)
	y := func(v float64) float64 { return y0 + h - math.Min(math.Max(v, 0), 1.2)/1.2*h }
	for _, v := range []float64{0, 0.5, 0.9, 1} {
		fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="end">%.0f%%</text>`+"\n", x0, x0+w, y(v), y(v), x0-4, y(v)+4, 100*v)
	}
	for i, r := range rs {
		var pts []string
		for k, bs := range r.perBucket {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(k)+w/float64(n)/2, y(bs.good)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[i], strings.Join(pts, " "))
	}
	// The adaptive limit, on its own scale (right axis: tries in flight).
	ad := rs[len(rs)-1]
	ly := func(v int) float64 { return y0 + h - math.Min(float64(v), 60)/60*h }
	var pts []string
	for k, bs := range ad.perBucket {
		if bs.lim > 0 {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(k)+w/float64(n)/2, ly(bs.lim)))
		}
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1" stroke-dasharray="3 2" points="%s"/>`+"\n", colors[len(rs)-1], strings.Join(pts, " "))
	for _, v := range []int{0, 20, 40, 60} {
		fmt.Fprintf(b, `<text x="%g" y="%g" fill="%s">%d</text>`+"\n", x0+w+4, ly(v)+4, colors[len(rs)-1], v)
	}
	fmt.Fprintf(b, `<text x="%g" y="%g" fill="%s" text-anchor="end">dashed: adaptive limit (right axis)</text>`+"\n", x0+w, y0+h+30, colors[len(rs)-1])
}
