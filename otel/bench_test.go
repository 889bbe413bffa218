package rotel_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	rotel "github.com/recourse-go/recourse/otel"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

// fullChain is bench/overhead_test.go's full chain: the same envelope,
// retries, breaker, hedge, budget and both timeouts, none of which fires
// on an operation that succeeds at once.
var fullChain = []policy.Option{policy.MaxAttempts(3),
	policy.OverallTimeout(5 * time.Second),
	policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1 << 20}),
	policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: time.Second}),
	policy.WithBudget("retries"),
	policy.TimeoutPerAttempt(time.Second)}

func fullExec(obs timeline.Observer) *recourse.Executor {
	return recourse.NewExecutor(recourse.WithObserver(obs),
		recourse.WithBudget("retries", middleware.NewTokenBucketBudget(1000, 100)),
		recourse.WithPolicy("bench.Op", fullChain...))
}

func ok(context.Context) error { return nil }

// BenchmarkFullChainOTel is the success path of the full chain four ways,
// in one run: with no observer, with the timeline captured
// (timeline.Record), with the OTel observer on SDK providers (every span
// sampled and recorded, metrics aggregated by a reader, exemplars taken
// from the sampled call spans as the SDK does by default), and the same
// with exemplars off.
func BenchmarkFullChainOTel(b *testing.B) {
	run := func(b *testing.B, e *recourse.Executor, capture bool) {
		ctx := context.Background()
		_ = e.Do(ctx, "bench.Op", ok) // compile the key's chain outside the loop
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c := ctx
			if capture {
				c, _ = timeline.Record(ctx)
			}
			_ = e.Do(c, "bench.Op", ok)
		}
	}
	b.Run("observer_off", func(b *testing.B) { run(b, fullExec(nil), false) })
	b.Run("timeline_captured", func(b *testing.B) { run(b, fullExec(nil), true) })
	otelRun := func(b *testing.B, opts ...sdkmetric.Option) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		mp := sdkmetric.NewMeterProvider(append(opts, sdkmetric.WithReader(sdkmetric.NewManualReader()))...)
		defer func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		}()
		run(b, fullExec(rotel.NewObserver(rotel.WithTracerProvider(tp), rotel.WithMeterProvider(mp))), false)
	}
	b.Run("otel", func(b *testing.B) { otelRun(b) })
	b.Run("otel_no_exemplars", func(b *testing.B) { otelRun(b, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter)) })
}
