package tryctx_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// stormBase mixes base behaviours: waits on Done, polls Err, ignores the
// context, answers a body bound to the context, fails retryably, stores the
// context for a late watcher.
type stormBase struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (s *stormBase) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	s.mu.Lock()
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	info, _ := endpoint.AttemptFromContext(ctx)
	d := time.Duration(rand.IntN(2000)) * time.Microsecond
	switch rand.IntN(6) {
	case 0: // waits on Done
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	case 1: // polls Err
		for st := time.Now(); time.Since(st) < d; time.Sleep(200 * time.Microsecond) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	case 2: // ignores the context
		time.Sleep(d / 4)
	case 3: // body bound to the context, ending by itself after d
		return resp(r, 200, &timedBody{ctx: ctx, end: time.After(d)}), nil
	case 4:
		if info.Attempt == 1 {
			return resp(r, 503, nil), nil
		}
	case 5: // a late watcher, on its own goroutine, that must end
		go func() { <-ctx.Done() }()
	}
	return resp(r, 200, &errCheckBody{ctx: ctx, chunks: 2, gap: 100 * time.Microsecond}), nil
}

// TestCancelStorm: 1000 concurrent calls over the shapes, each with a
// caller context cancelled (sometimes with a cause) at a random moment —
// before, during the try, while the body is read, or never — and bodies read,
// closed early or read to the end. No call hangs, every try's context is done
// once its call is over and its body closed, and the goroutines go back to
// the baseline.
func TestCancelStorm(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	g0 := runtime.NumGoroutine()
	shs := shapes()
	shs = append(shs, pol{name: "tight", attempts: 3, perAttempt: time.Millisecond, overall: 3 * time.Millisecond, hedge: time.Millisecond})
	rts := make([]http.RoundTripper, len(shs))
	bases := make([]*stormBase, len(shs))
	for i, p := range shs {
		p.hedge = min(p.hedge, time.Millisecond)
		if p.hedge == 0 && i%2 == 1 {
			p.hedge = 500 * time.Microsecond
		}
		bases[i] = &stormBase{}
		rts[i] = rhttp.NewTransport(p.exec(t), key, bases[i])
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	cause := errors.New("storm cause")
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rt := rts[i%len(rts)]
			caller, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			when := time.Duration(rand.IntN(3000)) * time.Microsecond
			switch rand.IntN(4) {
			case 0:
				cancel(cause)
			case 1:
				time.AfterFunc(when, func() { cancel(cause) })
			case 2:
				time.AfterFunc(when, func() { cancel(nil) })
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				res, err := get(t, rt, caller)
				if err != nil {
					return
				}
				if rand.IntN(3) == 0 {
					res.Body.Close()
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("call %d hung", i)
			}
		}()
	}
	wg.Wait()
	for i, b := range bases {
		b.mu.Lock()
		for j, c := range b.ctxs {
			if !waitDone(c, 2*time.Second) {
				t.Errorf("%s: try %d context never ended (%+v)", shs[i].name, j, look(c))
				break
			}
			if c.Err() == nil || context.Cause(c) == nil {
				t.Errorf("%s: try %d Done closed but %+v", shs[i].name, j, look(c))
				break
			}
		}
		b.mu.Unlock()
	}
	goroutinesBack(t, g0, 2)
}

// TestNeverClosedBodies: responses dropped without Close (a common bug) under
// a caller context that is later cancelled: once it is, every try's context
// is done and no goroutine remains, as with a context.WithCancel child of
// the caller's context.
func TestNeverClosedBodies(t *testing.T) {
	for _, p := range shapes() {
		t.Run(p.name, func(t *testing.T) {
			g0 := runtime.NumGoroutine()
			base := newCapture()
			base.ctxs = make(chan context.Context, 100)
			base.during = func(ctx context.Context) {
				go func() { <-ctx.Done() }() // a watcher the base started
			}
			rt := rhttp.NewTransport(p.exec(t), key, base)
			caller, cancel := context.WithCancel(context.Background())
			for i := 0; i < 50; i++ {
				if _, err := get(t, rt, caller); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			close(base.ctxs)
			for c := range base.ctxs {
				if !waitDone(c, 2*time.Second) {
					t.Fatal("try context not ended after the caller's cancel")
				}
			}
			goroutinesBack(t, g0, 0)
		})
	}
}

// TestForeignCallerContext: a caller context not made by the context package
// (its own Done channel). The try's context, armed, ends with it; the tries'
// watchers go away once the bodies are closed even though the foreign
// context lives on (a standard child of a foreign parent would keep a
// goroutine only until cancelled).
func TestForeignCallerContext(t *testing.T) {
	for _, p := range shapes() {
		t.Run(p.name, func(t *testing.T) {
			g0 := runtime.NumGoroutine()
			fc := newForeign()
			base := newCapture()
			base.ctxs = make(chan context.Context, 100)
			base.during = func(ctx context.Context) { ctx.Done() }
			rt := rhttp.NewTransport(p.exec(t), key, base)
			for i := 0; i < 20; i++ {
				res, err := get(t, rt, fc)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				c := <-base.ctxs
				if !isDone(c) {
					t.Fatal("not done after close")
				}
			}
			goroutinesBack(t, g0, 0)
			// Now one live, ended by the foreign context.
			res, err := get(t, rt, fc)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			c := <-base.ctxs
			if c.Value(ctxKey{}) != "foreign" {
				t.Error("foreign value lost")
			}
			fc.cancel()
			if !waitDone(c, 2*time.Second) {
				t.Fatal("foreign cancel did not reach the try's context")
			}
			if c.Err() != context.Canceled {
				t.Fatalf("Err %v", c.Err())
			}
		})
	}
}

type foreign struct {
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func newForeign() *foreign { return &foreign{done: make(chan struct{})} }

func (f *foreign) Deadline() (time.Time, bool) { return time.Time{}, false }
func (f *foreign) Done() <-chan struct{}       { return f.done }
func (f *foreign) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
func (f *foreign) Value(k any) any {
	if k == (ctxKey{}) {
		return "foreign"
	}
	return nil
}
func (f *foreign) cancel() {
	f.once.Do(func() {
		f.mu.Lock()
		f.err = context.Canceled
		f.mu.Unlock()
		close(f.done)
	})
}

// timedBody blocks in Read until its context is done (its error) or its end
// (EOF).
type timedBody struct {
	ctx context.Context
	end <-chan time.Time
}

func (b *timedBody) Read(p []byte) (int, error) {
	select {
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	case <-b.end:
		return 0, io.EOF
	}
}
func (b *timedBody) Close() error { return nil }
