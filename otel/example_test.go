package rotel_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/recourse-go/recourse"
	rotel "github.com/recourse-go/recourse/otel"
	"github.com/recourse-go/recourse/policy"
)

// An executor reporting to OpenTelemetry: a call that fails once and then
// succeeds is one span with an event per try, and its duration, tries and
// retries are recorded. In production, leave out the options to use the
// global providers your OTel setup installed.
func ExampleNewObserver() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()

	exec := recourse.NewExecutor(
		recourse.WithObserver(rotel.NewObserver(rotel.WithTracerProvider(tp), rotel.WithMeterProvider(mp))),
		recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3),
			policy.Backoff(time.Millisecond, time.Millisecond, 1), policy.WithID("payments-v3")))

	var tries atomic.Int32
	err := exec.Do(context.Background(), "payments.Charge", func(context.Context) error {
		if tries.Add(1) == 1 {
			return errors.New("connection reset")
		}
		return nil
	})
	fmt.Println("err:", err)

	s := spans.Ended()[0]
	fmt.Println("span:", s.Name(), s.SpanKind())
	for _, kv := range s.Attributes() {
		fmt.Printf("  %s=%s\n", kv.Key, kv.Value.Emit())
	}
	for _, ev := range s.Events() {
		fmt.Println("  event:", ev.Name)
	}

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	var metrics []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		metrics = append(metrics, fmt.Sprintf("%s (%s)", m.Name, m.Unit))
	}
	sort.Strings(metrics)
	for _, m := range metrics {
		fmt.Println("metric:", m)
	}
	// Output:
	// err: <nil>
	// span: payments.Charge internal
	//   recourse.key=payments.Charge
	//   recourse.attempts=2
	//   recourse.policy.id=payments-v3
	//   event: retryable
	//   event: success
	// metric: recourse.attempt.duration (s)
	// metric: recourse.call.duration (s)
	// metric: recourse.call.hedges ({hedge})
	// metric: recourse.call.retries ({retry})
}
