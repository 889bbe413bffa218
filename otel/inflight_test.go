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
	"github.com/recourse-go/recourse/timeline"
)

// TestSpansPairedAndNested: every span CallContext starts is ended by
// OnFinish, once, with concurrent and nested calls, successful and failed
// ones; a call made inside a try is a child of the try's call.
func TestSpansPairedAndNested(t *testing.T) {
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
	// Outer calls: n/2 succeed at once, n/2 fail twice; each try runs one
	// inner call.
	ended := sr.Ended()
	if got, want := len(ended), n+n/2*2+n/2; got != want {
		t.Errorf("%d spans ended, want %d", got, want)
	}
	if got := len(sr.Started()); got != len(ended) {
		t.Errorf("%d spans started, %d ended", got, len(ended))
	}
	outer := map[[8]byte]bool{}
	for _, s := range ended {
		if s.Name() == "outer.Op" {
			outer[s.SpanContext().SpanID()] = true
		}
	}
	for _, s := range ended {
		if s.Name() == "inner.Op" && !outer[s.Parent().SpanID()] {
			t.Errorf("inner span's parent %v is not an outer call's span", s.Parent().SpanID())
		}
	}
}

// hidingObserver wraps an Observer without forwarding CallContext, as a
// user's wrapper written before timeline.ContextObserver would.
type hidingObserver struct{ timeline.Observer }

// TestNestedCallWithoutCallContext: a nested call whose observer hides
// CallContext finds the outer call's state in its context; it must make
// its own span (from its timeline) and leave the outer call's span to the
// outer call.
func TestNestedCallWithoutCallContext(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	o := NewObserver(WithTracerProvider(tp))
	outer := recourse.NewExecutor(recourse.WithObserver(o), recourse.WithPolicy("outer.Op", policy.MaxAttempts(1)))
	inner := recourse.NewExecutor(recourse.WithObserver(hidingObserver{o}), recourse.WithPolicy("outer.Op", policy.MaxAttempts(1)))
	var innerEnded int
	err := outer.Do(context.Background(), "outer.Op", func(ctx context.Context) error {
		// Same key, so only the context tells the two calls apart.
		if err := inner.Do(ctx, "outer.Op", func(context.Context) error { return nil }); err != nil {
			return err
		}
		innerEnded = len(sr.Ended())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if innerEnded != 1 {
		t.Fatalf("%d spans ended when the inner call returned, want 1 (the inner call's)", innerEnded)
	}
	spans := sr.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2", len(spans))
	}
	in, out := spans[0], spans[1]
	if in.Parent().SpanID() != out.SpanContext().SpanID() {
		t.Errorf("inner span's parent %v, want the outer call's span %v", in.Parent().SpanID(), out.SpanContext().SpanID())
	}
	if !out.EndTime().After(in.EndTime()) && !out.EndTime().Equal(in.EndTime()) {
		t.Errorf("outer span ended %v before the inner one %v", out.EndTime(), in.EndTime())
	}
}
