package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// plot draws both simulations as one SVG: latency percentiles per hedging
// configuration (log scale), and tries reaching the dependency over time
// per outage strategy.
func plot(tails []tailResult, outages []outageResult) string {
	const W, H = 960, 450
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	tailPanel(&b, tails, 40, 40, 420, 320)
	outagePanel(&b, outages, 520, 40, 400, 320)
	b.WriteString("</svg>\n")
	return b.String()
}

var colors = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"}

func tailPanel(b *strings.Builder, rs []tailResult, x0, y0, w, h float64) {
	fmt.Fprintf(b, `<text x="%g" y="%g" font-size="14" font-weight="bold">Tail at Scale: call latency (ms, log scale)</text>`+"\n", x0, y0-16)
	lo, hi := math.Log10(0.5), math.Log10(200)
	y := func(d time.Duration) float64 {
		ms := math.Max(float64(d)/float64(time.Millisecond), 0.5)
		return y0 + h - (math.Log10(ms)-lo)/(hi-lo)*h
	}
	for _, tick := range []float64{1, 10, 100} {
		ty := y(time.Duration(tick * float64(time.Millisecond)))
		fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="end">%g</text>`+"\n", x0, x0+w, ty, ty, x0-4, ty+4, tick)
	}
	group := w / float64(len(rs))
	bar := group / 4
	for i, r := range rs {
		gx := x0 + float64(i)*group + bar/2
		for j, d := range []time.Duration{r.p50, r.p99, r.p999} {
			top := y(d)
			fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="%s"/>`+"\n", gx+float64(j)*bar, top, bar-2, y0+h-top, colors[j])
		}
		fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", gx+1.5*bar, y0+h+16, r.name)
		fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle" fill="#555">+%.1f%% tries</text>`+"\n", gx+1.5*bar, y0+h+30, 100*r.extra)
	}
	for j, name := range []string{"p50", "p99", "p99.9"} {
		fmt.Fprintf(b, `<rect x="%g" y="%g" width="10" height="10" fill="%s"/><text x="%g" y="%g">%s</text>`+"\n", x0+w-150+float64(j)*50, y0, colors[j], x0+w-136+float64(j)*50, y0+9, name)
	}
	fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="black"/>`+"\n", x0, x0+w, y0+h, y0+h)
}

func outagePanel(b *strings.Builder, rs []outageResult, x0, y0, w, h float64) {
	fmt.Fprintf(b, `<text x="%g" y="%g" font-size="14" font-weight="bold">Outage: tries reaching the dependency per %v</text>`+"\n", x0, y0-16, bucket)
	n := len(rs[0].perBucket) - 1
	peak := 1
	for _, r := range rs {
		for _, v := range r.perBucket[:n] {
			peak = max(peak, v)
		}
	}
	x := func(i int) float64 { return x0 + float64(i)/float64(n)*w }
	y := func(v int) float64 { return y0 + h - float64(v)/float64(peak)*h }
	ox0, ox1 := x(int(outageStart/bucket)), x(int(outageEnd/bucket))
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="#fbe3e3"/><text x="%g" y="%g" fill="#a33">dependency down</text>`+"\n", ox0, y0, ox1-ox0, h, ox0+4, y0+14)
	for _, frac := range []float64{0, 0.5, 1} {
		v := int(frac * float64(peak))
		fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="end">%d</text>`+"\n", x0, x0+w, y(v), y(v), x0-4, y(v)+4, v)
	}
	for i, r := range rs {
		var pts []string
		for k, v := range r.perBucket[:n] {
			pts = append(pts, fmt.Sprintf("%g,%g", x(k)+w/float64(n)/2, y(v)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[i], strings.Join(pts, " "))
		fmt.Fprintf(b, `<rect x="%g" y="%g" width="10" height="10" fill="%s"/><text x="%g" y="%g">%s</text>`+"\n", x0+8, y0+h+14+float64(i)*14-10, colors[i], x0+22, y0+h+14+float64(i)*14, r.name)
	}
	for s := 0; s <= int(outageRun/time.Second); s++ {
		xs := x(int(time.Duration(s) * time.Second / bucket))
		fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle" fill="#555">%ds</text>`+"\n", xs, y0+h-4, s)
	}
	fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="black"/>`+"\n", x0, x0+w, y0+h, y0+h)
}
