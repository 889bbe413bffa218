package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

func TestRegressNewSkipsNilOptions(t *testing.T) {
	var p Policy
	noPanic(t, "New with nil options", func() { p = New("a.b", nil, MaxAttempts(5), nil) })
	if p.Retry.MaxAttempts != 5 || p.Key.String() != "a.b" {
		t.Fatalf("got %+v", p)
	}
}

// runCompiledHedge compiles a one-attempt policy hedged after 1ms of a fake
// clock, runs op through it on its own goroutine, fires the hedge, and
// returns the call's error or the value it panicked with.
func runCompiledHedge(t *testing.T, noRecover bool, op endpoint.Endpoint) (panicked any, err error) {
	t.Helper()
	f := clock.NewFake(time.Unix(0, 0))
	c := &Compiler{Clock: f, NoRecover: noRecover}
	comp, err := c.Compile(New("a.b", MaxAttempts(1),
		WithHedge(HedgePolicy{Enabled: true, Delay: time.Millisecond, MaxHedges: 1})))
	if err != nil {
		t.Fatal(err)
	}
	ep := comp.Middleware(op)
	type result struct {
		err      error
		panicked any
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			r.panicked = recover()
			done <- r
		}()
		_, r.err = ep(context.Background(), nil)
	}()
	f.BlockUntil(1)
	f.Advance(time.Millisecond)
	select {
	case r := <-done:
		return r.panicked, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not return")
	}
	return nil, nil
}

// panicInHedge blocks its primary try until cancelled and panics in its
// hedge.
func panicInHedge(ctx context.Context, _ any) (any, error) {
	if info, _ := endpoint.AttemptFromContext(ctx); info.IsHedge() {
		panic("hedge boom")
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestRegressCompiledHedgeRecoversPanics(t *testing.T) {
	p, err := runCompiledHedge(t, false, panicInHedge)
	var pe *middleware.PanicError
	if p != nil || !errors.As(err, &pe) || pe.Value != "hedge boom" || pe.Key != "a.b" {
		t.Fatalf("err %v, panicked %v: a hedge's panic must become a *middleware.PanicError when recovery is on", err, p)
	}
}

func TestRegressCompiledHedgeNoRecoverRaisesPanics(t *testing.T) {
	p, err := runCompiledHedge(t, true, panicInHedge)
	if p != "hedge boom" {
		t.Fatalf("err %v, panicked %v: with NoRecover the hedge's panic must reach the caller", err, p)
	}
}

// nilReloadObserver dereferences its receiver.
type nilReloadObserver struct {
	timeline.BaseObserver
	n int
}

func (o *nilReloadObserver) OnPolicyReload(timeline.PolicyReload) { o.n++ }

// A typed-nil reload observer counts as none: the first load does not fail
// with the panic of calling it.
func TestRegressReloadObserverTypedNil(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(goodDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	var typedNil *nilReloadObserver
	fp, err := NewFileProvider(path, WatchInterval(0), ReloadObserver(typedNil))
	if err != nil {
		t.Fatalf("NewFileProvider with a typed-nil observer: %v", err)
	}
	defer fp.Close()
	if err := os.WriteFile(path, []byte(goodDoc2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fp.Reload(); err != nil || attemptsOf(t, fp) != 5 {
		t.Fatalf("Reload: %v", err)
	}
}
