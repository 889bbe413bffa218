package main

import (
	"bytes"
	"fmt"
	"time"
)

// Colours of the plot's series.
var colours = []string{"#e15759", "#f28e2b", "#4e79a7", "#59a14f", "#b07aa1"}

// panel maps data coordinates to a rectangle of the SVG.
type panel struct {
	x, y, w, h     float64 // pixels
	x0, x1, y0, y1 float64 // data
}

func (p panel) px(x float64) float64 { return p.x + (x-p.x0)/(p.x1-p.x0)*p.w }
func (p panel) py(y float64) float64 {
	y = min(max(y, p.y0), p.y1)
	return p.y + p.h - (y-p.y0)/(p.y1-p.y0)*p.h
}

// frame draws the panel's title, grid lines at yticks and x ticks every
// xstep.
func (p panel) frame(b *bytes.Buffer, title, xlabel string, yticks []float64, xstep float64, yfmt string) {
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-size="14" font-weight="bold">%s</text>`+"\n", p.x, p.y-12, title)
	for _, t := range yticks {
		fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">`+yfmt+"</text>\n",
			p.x, p.x+p.w, p.py(t), p.py(t), p.x-4, p.py(t)+4, t)
	}
	for t := p.x0; t <= p.x1+1e-9; t += xstep {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%g</text>`+"\n", p.px(t), p.y+p.h+14, t)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", p.x+p.w, p.y+p.h+28, xlabel)
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", p.x, p.y, p.w, p.h)
}

// shade draws a band over data x in [a, b) with a label.
func (p panel) shade(b *bytes.Buffer, a, c float64, fill, label string) {
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" opacity="0.35"/>`+"\n", p.px(a), p.y, p.px(c)-p.px(a), p.h, fill)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#555" font-size="11">%s</text>`+"\n", p.px(a)+3, p.y+12, label)
}

// line draws a polyline of ys at xs.
func (p panel) line(b *bytes.Buffer, xs, ys []float64, colour string) {
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="`, colour)
	for i := range xs {
		fmt.Fprintf(b, "%.1f,%.1f ", p.px(xs[i]), p.py(ys[i]))
	}
	b.WriteString("\"/>\n")
}

// legend writes labelled colour swatches in a row under the x axis.
func (p panel) legend(b *bytes.Buffer, labels, cols []string) {
	x := p.x + 8
	for i, l := range labels {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n",
			x, p.y+p.h+34, cols[i], x+14, p.y+p.h+43, l)
		x += 14 + 6.5*float64(len(l)) + 16
	}
}

// perSecond folds bucket counts into whole seconds from the start.
func perSecond(v []int) []float64 {
	per := int(time.Second / bucket)
	out := make([]float64, (len(v)+per-1)/per)
	for i, x := range v {
		out[i/per] += float64(x)
	}
	return out
}

// plot draws the three panels: tries per call over time, the Redis-kill
// run's decisions by source, and when each replica's breaker opened.
func plot(results []result) []byte {
	var b bytes.Buffer
	const width, height = 960.0, 940.0
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")

	// Panel 1: tries per call reaching the dependency, per second.
	k := results[5]
	secs := (k.sc.healthy + k.sc.outage + k.sc.after).Seconds()
	p1 := panel{x: 60, y: 40, w: 860, h: 220, x0: 0, x1: secs, y0: 0.9, y1: 1.8}
	p1.frame(&b, "Tries per call reaching the dependency (per second; naive retries: 3.00, off the scale)", "seconds from the start of the run",
		[]float64{1, 1.1, 1.2, 1.4, 1.6, 1.8}, 2, "%.1f")
	o := results[2].sc.healthy.Seconds()
	p1.shade(&b, o, o+results[2].sc.outage.Seconds(), "#fde2e2", "dependency 100% down (runs b, c)")
	p1.shade(&b, o+results[2].sc.outage.Seconds(), o+k.sc.outage.Seconds(), "#fdf0e2", "still down (Redis-kill run)")
	p1.shade(&b, (k.sc.healthy + k.sc.killAt).Seconds(), (k.sc.healthy + k.sc.restartAt).Seconds(), "#ddd", "Redis killed")
	var labels, cols []string
	for i, r := range []result{results[1], results[2], k} {
		f, x := perSecond(r.firsts), perSecond(r.retries)
		var xs, ys []float64
		for s := range f {
			if f[s] > 0 && float64(s) < (r.sc.healthy+r.sc.outage+r.sc.after).Seconds() {
				xs = append(xs, float64(s)+0.5)
				ys = append(ys, (f[s]+x[s])/f[s])
			}
		}
		p1.line(&b, xs, ys, colours[i+1])
		labels = append(labels, r.sc.name)
		cols = append(cols, colours[i+1])
	}
	p1.legend(&b, labels, cols)

	// Panel 2: the Redis-kill run's retry decisions by source, per second.
	fleet, fall := make([]int, len(k.firsts)), make([]int, len(k.firsts))
	for _, rep := range k.replicas {
		for i := range fleet {
			if d := rep.Decisions["fleet"]; i < len(d) {
				fleet[i] += d[i]
			}
			if d := rep.Decisions["fallback"]; i < len(d) {
				fall[i] += d[i]
			}
		}
	}
	fs, fb := perSecond(fleet), perSecond(fall)
	top := 10.0
	for i := range fs {
		top = max(top, fs[i]+fb[i])
	}
	p2 := panel{x: 60, y: 345, w: 860, h: 200, x0: 0, x1: secs, y0: 0, y1: top * 1.15}
	p2.frame(&b, "Redis-kill run: retry decisions per second, by who decided", "seconds from the start of the run",
		[]float64{0, float64(int(top / 2)), float64(int(top))}, 2, "%.0f")
	p2.shade(&b, (k.sc.healthy + k.sc.killAt).Seconds(), (k.sc.healthy + k.sc.restartAt).Seconds(), "#ddd", "Redis killed")
	bw := p2.w / secs * 0.8
	for s := range fs {
		if float64(s) >= secs {
			break
		}
		x := p2.px(float64(s) + 0.1)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, p2.py(fs[s]), bw, p2.py(0)-p2.py(fs[s]), colours[2])
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, p2.py(fs[s]+fb[s]), bw, p2.py(fs[s])-p2.py(fs[s]+fb[s]), colours[1])
	}
	p2.legend(&b, []string{"fleet budget (Redis or lease)", "fallback (local ratio budget)"}, []string{colours[2], colours[1]})

	// Panel 3: when each replica's breaker opened, with and without the signal.
	var worst float64 = 1
	for _, r := range results[3:5] {
		for _, rep := range r.replicas {
			worst = max(worst, rep.FirstOpen.Seconds())
		}
	}
	n := len(results[3].replicas)
	p3 := panel{x: 60, y: 630, w: 860, h: 240, x0: 0, x1: float64(n), y0: 0, y1: worst * 1.15}
	p3.frame(&b, "Seconds from the outage's start until each replica's breaker opened", "", []float64{0, worst / 2, worst}, float64(n+1), "%.1f")
	gw := p3.w / float64(n)
	for i := range n {
		for j, r := range results[3:5] {
			if i >= len(r.replicas) {
				continue
			}
			v := r.replicas[i].FirstOpen.Seconds()
			if v < 0 {
				v = worst
			}
			x := p3.x + float64(i)*gw + gw*0.15 + float64(j)*gw*0.35
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, p3.py(v), gw*0.33, p3.py(0)-p3.py(v), colours[3+j])
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%g/s</text>`+"\n", p3.x+float64(i)*gw+gw/2, p3.y+p3.h+14, rate(i))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">replica (its calls per second)</text>`+"\n", p3.x+p3.w, p3.y+p3.h+28)
	p3.legend(&b, []string{results[3].sc.name, results[4].sc.name}, []string{colours[3], colours[4]})
	b.WriteString("</svg>\n")
	return b.Bytes()
}
