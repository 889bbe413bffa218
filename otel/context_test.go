package rotel

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

type parentKey struct{}

// The context CallContext returns behaves as the caller's does: values,
// deadline, cancellation with its cause, reaching children at once and
// without a goroutine; and it carries the call's span.
func TestCallContextIsTheCallersContext(t *testing.T) {
	o := NewObserver(WithTracerProvider(noop.NewTracerProvider()))
	deadline := time.Now().Add(time.Hour)
	parent, cancelDeadline := context.WithDeadline(context.WithValue(context.Background(), parentKey{}, "v"), deadline)
	defer cancelDeadline()
	parent, cancel := context.WithCancelCause(parent)
	ctx := o.CallContext(parent, "a.B", time.Now())

	if ctx.Value(parentKey{}) != "v" {
		t.Error("the caller's value is lost")
	}
	if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("deadline %v %v, want %v", d, ok, deadline)
	}
	if o.state(ctx) == nil || o.state(ctx).key != "a.B" {
		t.Error("no call state in the context")
	}
	if other := NewObserver(); other.state(ctx) != nil {
		t.Error("another Observer finds this one's state")
	}
	if !trace.SpanFromContext(ctx).SpanContext().Equal(o.state(ctx).span.SpanContext()) {
		t.Error("the context's span is not the call's")
	}

	before := runtime.NumGoroutine()
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(fired) })
	defer stop()
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("deriving from the call's context started %d goroutines", n-before)
	}
	boom := errors.New("boom")
	cancel(boom)
	for name, c := range map[string]context.Context{"call": ctx, "child": child} {
		select {
		case <-c.Done():
		default:
			t.Errorf("%s context not done when the caller's cancel returned", name)
		}
		if !errors.Is(c.Err(), context.Canceled) || context.Cause(c) != boom {
			t.Errorf("%s context: Err %v, Cause %v; want Canceled and boom", name, c.Err(), context.Cause(c))
		}
	}
	select {
	case <-fired:
	case <-time.After(time.Second):
		t.Error("AfterFunc on the call's context never ran")
	}
	var nilCtx context.Context // a caller's mistake: no panic, no context made
	if o.CallContext(nilCtx, "a.B", time.Now()) != nil {
		t.Error("CallContext(nil) is not nil")
	}
	o.OnStart(nilCtx, "a.B", time.Now())
}
