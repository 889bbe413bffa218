package middleware

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/timeline"
)

// scripted returns an endpoint that returns errs[i] on call i (nil after
// the list) and counts its calls.
func scripted(calls *atomic.Int32, errs ...error) endpoint.Endpoint {
	return func(ctx context.Context, _ any) (any, error) {
		i := int(calls.Add(1)) - 1
		if i < len(errs) && errs[i] != nil {
			return nil, errs[i]
		}
		return "ok", nil
	}
}

// chain builds observe → retry → classify around ep, as the compiler does.
func chain(ep endpoint.Endpoint, ropts ...Option) endpoint.Endpoint {
	return endpoint.Chain(Observe("test.Key"), Retry(ropts...), Classify(nil))(ep)
}

// drive runs call in a goroutine and, sleeps times, waits for the call to
// arm a fake timer and fires it. It returns the call's error.
func drive(t *testing.T, f *clock.Fake, sleeps int, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	for i := 0; i < sleeps; i++ {
		f.BlockUntil(1)
		f.Advance(time.Hour)
	}
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("call did not return")
		return nil
	}
}

func recordCall(ctx context.Context) (context.Context, *timeline.Capture) {
	return timeline.Record(ctx)
}
