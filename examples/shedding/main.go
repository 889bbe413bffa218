// Command shedding shows a recourse client backing off from a recourse
// server that sheds load. The server (an embedded net/http server on
// loopback) runs its /quote route behind rhttp.Shedder with a bulkhead of
// 2: a third request at once gets 503 with Retry-After: 1 and never
// reaches the handler. Six clients call at once through rhttp.NewClient;
// the shed tries are retried after the second the server asked for, and
// every call succeeds without the server ever running more than two
// quotes at a time.
//
//	go run ./examples/shedding
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/examples/internal/demo"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

const clients = 6

func main() {
	var served, shed, running, peak atomic.Int32
	// Server side: one bulkhead of 2 per route key, no waiting.
	shedder := rhttp.NewShedder(
		middleware.PerKey(func(string) middleware.Limiter { return middleware.NewBulkhead(2, 0) }),
		rhttp.ShedRetryAfter(time.Second),
		rhttp.OnShed(func(*http.Request, string, error) { shed.Add(1) }),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /quote", shedder.Route("quotes.Get", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if !demo.Sleep(r.Context(), 100*time.Millisecond) { // pricing takes a while
			return
		}
		served.Add(1)
		fmt.Fprint(w, "EUR 42.00")
	})))
	base, stop := demo.Start(mux)
	defer stop()

	// Client side: up to 4 tries; Retry-After is honoured up to 10s.
	exec := recourse.NewExecutor(recourse.WithPolicy("quotes.Get", policy.HTTPDefaults(), policy.MaxAttempts(4)))
	client := rhttp.NewClient(exec, "quotes.Get")

	type outcome struct {
		body  string
		tries []string
		took  time.Duration
		err   error
	}
	results := make([]outcome, clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, capture := timeline.Record(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/quote", nil)
			resp, err := client.Do(req)
			o := outcome{err: err, took: time.Since(start)}
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				o.body = fmt.Sprintf("%d %s", resp.StatusCode, b)
			}
			if tl := capture.Timeline(); tl != nil {
				for _, a := range tl.Attempts {
					s := a.Status
					if a.Backoff > 0 {
						s += fmt.Sprintf(", waited %v", a.Backoff.Round(100*time.Millisecond))
					}
					o.tries = append(o.tries, s)
				}
			}
			results[i] = o
		}(i)
	}
	wg.Wait()

	sort.SliceStable(results, func(i, j int) bool { return len(results[i].tries) < len(results[j].tries) })
	ok := 0
	for _, o := range results {
		if o.err != nil {
			fmt.Printf("call failed: %v\n", o.err)
			continue
		}
		ok++
		fmt.Printf("%-14s after %d tries [%s]\n", o.body, len(o.tries), strings.Join(o.tries, " → "))
	}
	fmt.Printf("\n%d of %d calls succeeded; the server shed %d tries with 503 + Retry-After: 1, served %d, never more than %d at once\n",
		ok, clients, shed.Load(), served.Load(), peak.Load())
}
