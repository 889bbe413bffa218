package rotel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
)

// TestSpansPairedAndReleased checks what the Observer relies on: the
// executor passes OnStart and OnFinish the same context, so every span
// started in OnStart is ended by OnFinish and forgotten, with concurrent
// and nested calls, successful and failed ones.
func TestSpansPairedAndReleased(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	o := NewObserver(WithTracerProvider(tp))
	exec := recourse.NewExecutor(recourse.WithObserver(o),
		recourse.WithPolicy("outer.Op", policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)),
		recourse.WithPolicy("inner.Op", policy.MaxAttempts(2), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	errDown := errors.New("down")
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_ = exec.Do(context.Background(), "outer.Op", func(ctx context.Context) error {
				_ = exec.Do(ctx, "inner.Op", func(context.Context) error { return nil })
				if i%2 == 0 {
					return errDown
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	inFlight := 0
	o.spans.Range(func(any, any) bool { inFlight++; return true })
	if inFlight != 0 {
		t.Errorf("%d spans left in flight after every call returned", inFlight)
	}
	// Outer calls: n/2 succeed at once, n/2 fail twice; each try runs one
	// inner call.
	if got, want := len(sr.Ended()), n+n/2*2+n/2; got != want {
		t.Errorf("%d spans ended, want %d", got, want)
	}
	if got := len(sr.Started()); got != len(sr.Ended()) {
		t.Errorf("%d spans started, %d ended", got, len(sr.Ended()))
	}
}
