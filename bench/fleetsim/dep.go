package main

import (
	"net/http"
	"sync"
	"time"
)

// dependency is the service every replica calls: healthy (200) except
// during its outage (503 for everything). It counts first tries and
// retries per bucket, as received: the load the fleet puts on it.
type dependency struct {
	mu       sync.Mutex
	start    time.Time
	from, to time.Time // the outage
	firsts   []int
	retries  []int
}

// reset starts counting a new run at start, down between from and to.
func (d *dependency) reset(start, from, to time.Time, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.start, d.from, d.to = start, from, to
	d.firsts, d.retries = make([]int, n), make([]int, n)
}

// ServeHTTP counts the try and answers it.
func (d *dependency) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	d.mu.Lock()
	i := int(now.Sub(d.start) / bucket)
	if i >= 0 && i < len(d.firsts) {
		if r.Header.Get("X-Try") == "first" {
			d.firsts[i]++
		} else {
			d.retries[i]++
		}
	}
	down := !now.Before(d.from) && now.Before(d.to)
	d.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// counts returns copies of the per-bucket counts.
func (d *dependency) counts() (firsts, retries []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int(nil), d.firsts...), append([]int(nil), d.retries...)
}
