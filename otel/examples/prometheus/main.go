// Command prometheus puts recourse's metrics on a Prometheus /metrics
// page. It starts a flaky dependency of its own on loopback, calls it
// through an executor whose observer is rotel's, and serves what the
// OpenTelemetry Prometheus exporter makes of the metrics:
//
//	cd otel && go run ./examples/prometheus
//	curl -s localhost:2112/metrics | grep '^recourse_'
//
// Three keys show the three things dashboards watch:
//
//   - inventory.Get: two requests in three fail with 503 and are retried;
//   - pricing.Quote: one request in four stalls, and a hedge sent 10ms
//     later wins;
//   - reviews.List: the dependency is down, and the key's breaker opens.
//
// The wiring is the part to copy: an OTel MeterProvider whose reader is
// the Prometheus exporter, registered in a registry that promhttp serves,
// and rotel.NewObserver on that provider given to the executor.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/recourse-go/recourse"
	rotel "github.com/recourse-go/recourse/otel"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2112", "address to serve /metrics on")
	calls := flag.Int("calls", 30, "calls to make per key")
	once := flag.Bool("once", false, "exit after the calls instead of serving /metrics until interrupted")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *calls, *once, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run builds the demo, makes calls calls per key, serves /metrics on addr
// and, unless once, keeps serving until ctx ends.
func run(ctx context.Context, addr string, calls int, once bool, out io.Writer) error {
	d, err := newDemo()
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for /metrics: %w", err)
	}
	srv := &http.Server{Handler: d.Metrics, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		<-served
	}()

	for _, key := range Keys {
		failed := d.CallN(ctx, key, calls)
		fmt.Fprintf(out, "%-14s %d calls, %d failed\n", key, calls, failed)
	}
	fmt.Fprintf(out, "metrics: http://%s/metrics\n", ln.Addr())
	if once {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-served:
		return err
	}
}

// Keys are the demo's keys, in the order run calls them.
var Keys = []string{"inventory.Get", "pricing.Quote", "reviews.List"}

// demo is a flaky dependency, an executor reporting to rotel, and the
// /metrics handler showing what it reported.
type demo struct {
	// Metrics serves the Prometheus exposition of the executor's metrics.
	Metrics http.Handler

	client *http.Client
	base   string // the flaky dependency's URL
	deps   *http.Server
	mp     *sdkmetric.MeterProvider
}

// newDemo starts the flaky dependency and wires recourse, rotel and the
// Prometheus exporter together.
func newDemo() (*demo, error) {
	// Metrics: an OTel MeterProvider whose reader is the Prometheus
	// exporter, registered in a registry of our own that promhttp serves.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))

	// Traces go to the global TracerProvider (a no-op one unless the
	// program sets one); only the metrics matter here.
	exec := recourse.NewExecutor(
		recourse.WithObserver(rotel.NewObserver(rotel.WithMeterProvider(mp))),
		recourse.WithPolicy("inventory.Get",
			policy.MaxAttempts(3), policy.Backoff(time.Millisecond, 5*time.Millisecond, 2)),
		recourse.WithPolicy("pricing.Quote",
			policy.MaxAttempts(1), policy.OverallTimeout(time.Second),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 10 * time.Millisecond, MaxHedges: 1})),
		recourse.WithPolicy("reviews.List",
			policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 4, Cooldown: time.Minute})),
	)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = mp.Shutdown(context.Background())
		return nil, fmt.Errorf("starting the flaky dependency: %w", err)
	}
	deps := &http.Server{Handler: flakyDependency(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = deps.Serve(ln) }()

	// rhttp's transport runs each request under its key's policy; the
	// key comes from the request's path ("/inventory.Get").
	transport := rhttp.NewTransport(exec, "inventory.Get", http.DefaultTransport,
		rhttp.WithKeyFunc(func(r *http.Request) string { return r.URL.Path[1:] }))
	return &demo{
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		client:  &http.Client{Transport: transport},
		base:    "http://" + ln.Addr().String(),
		deps:    deps,
		mp:      mp,
	}, nil
}

// flakyDependency answers /inventory.Get with 503 two times in three,
// /pricing.Quote slowly (200ms) one time in four, and /reviews.List with
// 500 always.
func flakyDependency() http.Handler {
	var inventory, pricing atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/inventory.Get", func(w http.ResponseWriter, _ *http.Request) {
		if inventory.Add(1)%3 != 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "42 in stock")
	})
	mux.HandleFunc("/pricing.Quote", func(w http.ResponseWriter, r *http.Request) {
		if pricing.Add(1)%4 == 1 {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "9.99")
	})
	mux.HandleFunc("/reviews.List", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	return mux
}

// CallN calls key n times and returns how many calls failed.
func (d *demo) CallN(ctx context.Context, key string, n int) (failed int) {
	for i := 0; i < n; i++ {
		if err := d.get(ctx, key); err != nil {
			failed++
		}
	}
	return failed
}

// get makes one request for key and reads its answer.
func (d *demo) get(ctx context.Context, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/"+key, nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return errors.New(resp.Status)
	}
	return nil
}

// Close stops the flaky dependency and the meter provider.
func (d *demo) Close() {
	_ = d.deps.Close()
	d.client.CloseIdleConnections()
	_ = d.mp.Shutdown(context.Background())
}
