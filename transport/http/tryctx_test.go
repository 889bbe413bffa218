package rhttp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/lazyctx"
)

// The try's context stands in for the standard cancelable context a try
// used to get (context.WithCancelCause of the chain's context): these
// tests run the same events on a try and on that standard context, and
// require the same answers from Done, Err, context.Cause, Deadline and
// Value, and from the contexts derived from them — whether or not anyone
// waited on the try's context before the events (it arms when somebody
// does), and whatever kind of context the chain handed it.

var (
	errParentCause = errors.New("test: parent's cause")
	errDeadline    = errors.New("test: parent's deadline")
)

type tcKey struct{}

// foreign is a context the context package does not know: it hides the
// standard cancel context it wraps, so that contexts derived from it
// follow it through a goroutine (or AfterFunc's), as they would any
// third-party context.
type foreign struct{ context.Context }

func (f foreign) Value(k any) any {
	if lazyctx.IsCancelCtxKey(k) {
		return nil
	}
	return f.Context.Value(k)
}

// chainSetup builds a chain context (parent) and the caller's context
// under which a try starts; end ends parent with errParentCause (nil when
// parent cannot be ended by the test).
type chainSetup struct {
	name string
	make func(t *testing.T) (parent, caller context.Context, end func())
}

func withAttempt(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, tcKey{}, "v")
	return endpoint.WithAttempt(ctx, endpoint.AttemptInfo{Key: "k", Attempt: 1})
}

func chainSetups() []chainSetup {
	return []chainSetup{
		{"background", func(t *testing.T) (context.Context, context.Context, func()) {
			return withAttempt(context.Background()), context.Background(), nil
		}},
		{"caller's cancellation only", func(t *testing.T) (context.Context, context.Context, func()) {
			caller, cancel := context.WithCancelCause(context.Background())
			t.Cleanup(func() { cancel(nil) })
			return withAttempt(caller), caller, func() { cancel(errParentCause) }
		}},
		{"chain's own cancellation", func(t *testing.T) (context.Context, context.Context, func()) {
			caller, ccancel := context.WithCancel(context.Background())
			parent, cancel := context.WithCancelCause(caller)
			t.Cleanup(func() { cancel(nil); ccancel() })
			return withAttempt(parent), caller, func() { cancel(errParentCause) }
		}},
		{"caller's cancellation, foreign", func(t *testing.T) (context.Context, context.Context, func()) {
			c, cancel := context.WithCancelCause(context.Background())
			t.Cleanup(func() { cancel(nil) })
			caller := foreign{c}
			return withAttempt(caller), caller, func() { cancel(errParentCause) }
		}},
		{"chain's own cancellation, foreign", func(t *testing.T) (context.Context, context.Context, func()) {
			p, cancel := context.WithCancelCause(context.Background())
			t.Cleanup(func() { cancel(nil) })
			return withAttempt(foreign{p}), context.Background(), func() { cancel(errParentCause) }
		}},
		{"per-attempt timeout (lazy)", func(t *testing.T) (context.Context, context.Context, func()) {
			caller, ccancel := context.WithCancelCause(context.Background())
			l := lazyctx.WithTimeout(caller, time.Hour, errDeadline)
			t.Cleanup(func() { l.Cancel(); ccancel(nil) })
			return withAttempt(l), caller, func() { ccancel(errParentCause) }
		}},
	}
}

// how a test looks at the try's context before the events.
var watchers = []struct {
	name  string
	watch func(ctx context.Context) (derived context.Context, stop func())
}{
	{"nobody", func(context.Context) (context.Context, func()) { return nil, func() {} }},
	{"Done", func(ctx context.Context) (context.Context, func()) { _ = ctx.Done(); return nil, func() {} }},
	{"Cause", func(ctx context.Context) (context.Context, func()) { _ = context.Cause(ctx); return nil, func() {} }},
	{"derived", func(ctx context.Context) (context.Context, func()) {
		d, cancel := context.WithCancel(ctx)
		return d, cancel
	}},
	{"derived with timeout", func(ctx context.Context) (context.Context, func()) {
		d, cancel := context.WithTimeout(ctx, time.Hour)
		return d, cancel
	}},
}

// the events a try's context can see, applied to the try and to the
// standard context it stands for.
type event struct {
	name  string
	apply func(tr *try, refCancel context.CancelCauseFunc, endParent func())
}

var events = map[string]event{
	"parent": {"parent ends", func(_ *try, _ context.CancelCauseFunc, endParent func()) { endParent() }},
	"cut": {"drain cut", func(tr *try, ref context.CancelCauseFunc, _ func()) {
		tr.end(context.Canceled, errDiscarded)
		ref(errDiscarded)
	}},
	"release": {"released", func(tr *try, ref context.CancelCauseFunc, _ func()) {
		tr.release()
		ref(context.Canceled)
	}},
}

var sequences = [][]string{
	{},
	{"release"},
	{"cut"},
	{"parent"},
	{"parent", "release"},
	{"release", "parent"},
	{"cut", "parent", "release"},
	{"parent", "cut", "release"},
}

// sameEnd compares how two contexts have ended: Err and Cause.
func sameEnd(got, want context.Context) error {
	if g, w := got.Err(), want.Err(); g != w {
		return fmt.Errorf("Err %v, want %v", g, w)
	}
	if g, w := context.Cause(got), context.Cause(want); g != w {
		return fmt.Errorf("Cause %v, want %v", g, w)
	}
	return nil
}

// closed waits briefly for ctx's Done channel when it should be closed
// (propagation through AfterFunc is asynchronous) and reports whether it
// is.
func closed(ctx context.Context, wait bool) bool {
	if !wait {
		select {
		case <-ctx.Done():
			return true
		default:
			return false
		}
	}
	select {
	case <-ctx.Done():
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func TestTryContextAnswersAsTheStandardContext(t *testing.T) {
	for _, cs := range chainSetups() {
		for _, w := range watchers {
			for _, seq := range sequences {
				name := fmt.Sprintf("%s/%s/%v", cs.name, w.name, seq)
				t.Run(name, func(t *testing.T) {
					parent, _, endParent := cs.make(t)
					if endParent == nil && len(seq) > 0 && contains(seq, "parent") {
						t.Skip("parent cannot end")
					}
					ref, refCancel := context.WithCancelCause(parent)
					defer refCancel(nil)
					tr := newTry(parent)
					defer tr.release()
					tc := &tr.ctx
					derived, stop := w.watch(tc)
					defer stop()
					refDerived, refStop := w.watch(ref)
					defer refStop()

					// Unwatched, Err and the cause are read without arming.
					check := func(when string) {
						t.Helper()
						armed := tc.armed.Load()
						if g, w := tc.Err(), ref.Err(); g != w {
							t.Fatalf("%s: Err %v, want %v", when, g, w)
						}
						if g, w := tc.endCause(), context.Cause(ref); g != w {
							t.Fatalf("%s: cause %v, want %v", when, g, w)
						}
						if !armed && tc.armed.Load() {
							t.Fatalf("%s: Err or the cause armed the context", when)
						}
					}
					check("before")
					for _, e := range seq {
						events[e].apply(tr, refCancel, endParent)
						if parent.Err() != nil {
							// A standard context follows a foreign parent
							// through a goroutine: the reference, and the
							// try's standard context once armed, are let
							// settle.
							if !closed(ref, true) || tc.armed.Load() && !closed(tc, true) {
								t.Fatal("never followed the parent")
							}
						}
						check("after " + e)
					}
					if w.name == "nobody" && tc.armed.Load() {
						t.Fatal("armed with nobody watching")
					}
					// Now everyone looks: Done, context.Cause, the derived context.
					ended := ref.Err() != nil
					if got := closed(tc, ended); got != ended {
						t.Fatalf("Done closed %v, want %v", got, ended)
					}
					if err := sameEnd(tc, ref); err != nil {
						t.Fatal(err)
					}
					if derived != nil {
						if got := closed(derived, ended); got != ended {
							t.Fatalf("derived Done closed %v, want %v", got, ended)
						}
						if err := sameEnd(derived, refDerived); err != nil {
							t.Fatalf("derived: %v", err)
						}
					}
					d, ok := tc.Deadline()
					rd, rok := ref.Deadline()
					if ok != rok || !d.Equal(rd) {
						t.Fatalf("Deadline %v %v, want %v %v", d, ok, rd, rok)
					}
					if tc.Value(tcKey{}) != "v" {
						t.Fatalf("Value %v", tc.Value(tcKey{}))
					}
					if info, ok := endpoint.AttemptFromContext(tc); !ok || info.Key != "k" {
						t.Fatalf("AttemptFromContext %v %v", info, ok)
					}
				})
			}
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// A parent whose deadline passes before anyone looks ends the try with
// DeadlineExceeded and the parent's cause, even when the try is released
// after the deadline — the deadline came first — armed or not.
func TestTryContextParentDeadlineFirst(t *testing.T) {
	for _, watch := range []bool{false, true} {
		t.Run(fmt.Sprint("watched=", watch), func(t *testing.T) {
			p, cancel := context.WithDeadlineCause(context.Background(), time.Now().Add(5*time.Millisecond), errDeadline)
			defer cancel()
			parent := withAttempt(p)
			tr := newTry(parent)
			if watch {
				<-tr.ctx.Done()
			} else {
				time.Sleep(20 * time.Millisecond)
			}
			tr.release()
			if err := tr.ctx.Err(); err != context.DeadlineExceeded {
				t.Fatalf("Err %v", err)
			}
			if c := context.Cause(&tr.ctx); c != errDeadline {
				t.Fatalf("Cause %v", c)
			}
			if !closed(&tr.ctx, false) {
				t.Fatal("Done open")
			}
		})
	}
}

// A try that nobody waits on is never armed: starting, reading Err and
// releasing it allocates nothing and starts no goroutine.
func TestTryContextUnwatchedAllocatesNothing(t *testing.T) {
	parent := withAttempt(context.Background())
	var tr try
	allocs := testing.AllocsPerRun(100, func() {
		tr = try{}
		tr.start(parent)
		_ = tr.ctx.Err()
		_ = tr.ctx.Value(tcKey{})
		_, _ = tr.ctx.Deadline()
		tr.end(context.Canceled, errDiscarded)
		tr.release()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
	if tr.ctx.armed.Load() {
		t.Fatal("armed")
	}
}

// Err never reports an end whose Done channel is still open, nor a nil
// cause, while the parent and the try end at the same time (the race
// detector watches too).
func TestTryContextConcurrentEnds(t *testing.T) {
	for _, cs := range chainSetups() {
		t.Run(cs.name, func(t *testing.T) {
			for i := 0; i < 50; i++ {
				parent, _, endParent := cs.make(t)
				tr := newTry(parent)
				var wg sync.WaitGroup
				var bad atomic.Value
				start := make(chan struct{})
				wg.Add(4)
				go func() { defer wg.Done(); <-start; tr.release() }()
				go func() {
					defer wg.Done()
					<-start
					if endParent != nil {
						endParent()
					}
				}()
				go func() { defer wg.Done(); <-start; tr.end(context.Canceled, errDiscarded) }()
				go func() {
					defer wg.Done()
					<-start
					for j := 0; j < 100; j++ {
						if j == 50 {
							_ = tr.ctx.Done()
						}
						if err := tr.ctx.Err(); err != nil {
							if tr.ctx.armed.Load() && !closed(&tr.ctx, false) {
								bad.Store("Err set, Done open")
							}
							if tr.ctx.endCause() == nil {
								bad.Store("Err set, cause nil")
							}
						}
					}
				}()
				close(start)
				wg.Wait()
				if b := bad.Load(); b != nil {
					t.Fatal(b)
				}
				if !closed(&tr.ctx, true) || context.Cause(&tr.ctx) == nil {
					t.Fatal("not ended with a cause")
				}
			}
		})
	}
}

// context.AfterFunc on a try's context runs once the try ends, and not at
// all when stopped first; context.WithoutCancel keeps the values and none
// of the end.
func TestTryContextAfterFuncAndWithoutCancel(t *testing.T) {
	parent := withAttempt(context.Background())
	tr := newTry(parent)
	ran := make(chan struct{})
	context.AfterFunc(&tr.ctx, func() { close(ran) })
	tr2 := newTry(parent)
	stop := context.AfterFunc(&tr2.ctx, func() { t.Error("stopped AfterFunc ran") })
	if !stop() {
		t.Fatal("stop")
	}
	tr2.release()
	wc := context.WithoutCancel(&tr.ctx)
	tr.release()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc never ran")
	}
	if wc.Err() != nil || wc.Done() != nil || context.Cause(wc) != nil || wc.Value(tcKey{}) != "v" {
		t.Fatalf("WithoutCancel: %v %v %v %v", wc.Err(), wc.Done(), context.Cause(wc), wc.Value(tcKey{}))
	}
}

// A context derived from an armed try is cancelled with the caller's before the caller's
// cancel function returns (the standard tree), and no goroutine follows.
func TestTryContextJoinsTheStandardTree(t *testing.T) {
	caller, cancel := context.WithCancelCause(context.Background())
	tr := newTry(withAttempt(caller))
	defer tr.release()
	before := runtime.NumGoroutine()
	d, dcancel := context.WithCancel(&tr.ctx)
	defer dcancel()
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after deriving, %d before", n, before)
	}
	cancel(errParentCause)
	if d.Err() != context.Canceled || context.Cause(d) != errParentCause {
		t.Fatalf("derived: %v %v", d.Err(), context.Cause(d))
	}
}
