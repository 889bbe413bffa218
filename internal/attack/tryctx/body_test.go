package tryctx_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// TestBodyBoundToContextUnblocks: the base's body blocks in Read until the
// try's context is done (as an HTTP/2 stream or a pipe bound to the request
// does) and ignores its own Close. Closing the response body from another
// goroutine, or the caller's cancellation, must unblock the Read promptly,
// with an error; a per-attempt or overall deadline must too.
func TestBodyBoundToContextUnblocks(t *testing.T) {
	const short = 50 * time.Millisecond
	for _, p := range shapes() {
		for _, end := range []string{"close", "caller", "callerCause"} {
			t.Run(p.name+"/"+end, func(t *testing.T) {
				base := newCapture()
				base.body = func(ctx context.Context) io.ReadCloser { return ctxOnlyBody{ctx} }
				rt := rhttp.NewTransport(p.exec(t), key, base)
				caller, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				res, err := get(t, rt, caller)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				<-base.ctxs
				cause := errors.New("caller cause")
				go func() {
					time.Sleep(20 * time.Millisecond)
					switch end {
					case "close":
						res.Body.Close()
					case "caller":
						cancel(nil)
					case "callerCause":
						cancel(cause)
					}
				}()
				var rerr error
				within(t, 2*time.Second, "Read", func() { _, rerr = res.Body.Read(make([]byte, 10)) })
				if rerr == nil || rerr == io.EOF {
					t.Fatalf("Read = %v", rerr)
				}
				if end != "close" && !errors.Is(rerr, context.Canceled) && !errors.Is(rerr, cause) {
					t.Fatalf("Read after the caller's cancel: %v", rerr)
				}
			})
		}
	}
	for _, p := range []pol{{name: "perAttempt", attempts: 2, perAttempt: short}, {name: "overall", attempts: 2, overall: short},
		{name: "hedgedPerAttempt", attempts: 1, perAttempt: short, hedge: time.Hour}} {
		t.Run(p.name+"/deadline", func(t *testing.T) {
			base := newCapture()
			base.body = func(ctx context.Context) io.ReadCloser { return ctxOnlyBody{ctx} }
			rt := rhttp.NewTransport(p.exec(t), key, base)
			res, err := get(t, rt, context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			<-base.ctxs
			st := time.Now()
			var rerr error
			within(t, 2*time.Second, "Read", func() { _, rerr = res.Body.Read(make([]byte, 10)) })
			if !errors.Is(rerr, context.DeadlineExceeded) {
				t.Fatalf("Read = %v after %v", rerr, time.Since(st))
			}
		})
	}
}

// TestDripBodyAfterReturn (failsafe-go #123): the body checks its context's
// Err before and after every chunk (never Done) and drips for longer than
// the call took. Returning must not end the context: the whole body reads.
func TestDripBodyAfterReturn(t *testing.T) {
	for _, p := range shapes() {
		t.Run(p.name, func(t *testing.T) {
			base := newCapture()
			base.body = func(ctx context.Context) io.ReadCloser {
				return &errCheckBody{ctx: ctx, chunks: 8, gap: 3 * time.Millisecond}
			}
			rt := rhttp.NewTransport(p.exec(t), key, base)
			caller, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := get(t, rt, caller)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			ctx := <-base.ctxs
			time.Sleep(10 * time.Millisecond)
			b, err := io.ReadAll(res.Body)
			if err != nil || string(b) != strings.Repeat("chunk", 8) {
				t.Fatalf("read %q, %v (ctx %+v)", b, err, look(ctx))
			}
		})
	}
}

// TestFinalFailedResponseStaysReadable: 503 on every try; the last 503 comes
// back with its body, which checks its context's Err on every Read: it must
// read whole, and its context stay live until the caller closes it. The
// earlier tries' contexts are over by the time the call returns (their
// responses were drained and closed).
func TestFinalFailedResponseStaysReadable(t *testing.T) {
	for _, p := range []pol{
		{name: "retries", attempts: 3},
		{name: "retriesPerAttempt", attempts: 3, perAttempt: time.Hour},
		{name: "retriesOverall", attempts: 3, overall: time.Hour},
		{name: "retriesHedged", attempts: 3, hedge: time.Hour},
	} {
		t.Run(p.name, func(t *testing.T) {
			var mu sync.Mutex
			var ctxs []context.Context
			base := rtFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				ctxs = append(ctxs, r.Context())
				mu.Unlock()
				return resp(r, 503, &errCheckBody{ctx: r.Context(), chunks: 4, gap: 2 * time.Millisecond}), nil
			})
			rt := rhttp.NewTransport(p.exec(t), key, base)
			res, err := get(t, rt, context.Background())
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			all := append([]context.Context(nil), ctxs...)
			mu.Unlock()
			if len(all) != 3 {
				t.Fatalf("%d tries", len(all))
			}
			last := all[len(all)-1]
			for i, c := range all[:len(all)-1] {
				eventually(t, 2*time.Second, "abandoned try's context never ended", func() bool { return isDone(c) })
				if c.Err() != context.Canceled {
					t.Errorf("try %d: Err %v", i, c.Err())
				}
			}
			time.Sleep(10 * time.Millisecond)
			if res.StatusCode != 503 {
				t.Fatal(res.Status)
			}
			b, err := io.ReadAll(res.Body)
			if err != nil || string(b) != strings.Repeat("chunk", 4) {
				t.Fatalf("final body %q %v; ctx %+v", b, err, look(last))
			}
			// Read to its end, the body has released its try, as net/http
			// releases a request's resources at the end of its body.
			if s := look(last); s != (snap{context.Canceled, context.Canceled, true}) {
				t.Fatalf("after the body's end %+v", s)
			}
			res.Body.Close()
			if s := look(last); s != (snap{context.Canceled, context.Canceled, true}) {
				t.Fatalf("after close %+v", s)
			}
		})
	}
}

// TestPanickingBase: a base that panics (recourse recovers it: README): the
// call returns an error, the panicking try's context ends, nothing leaks,
// the next call works. Shapes with a timeout or hedge.
func TestPanickingBase(t *testing.T) {
	panickingBase(t, asyncShapes())
}

// TestPanickingBasePlainTryContextEnds: the same without timeouts or hedge:
// the panicking try's context, armed by Done before the panic, must end
// once the call is over (a WithCancel child whose cancel is deferred would);
// otherwise every goroutine the base started on it leaks for good and, under
// a long-lived cancellable caller, the child stays registered in it.
func TestPanickingBasePlainTryContextEnds(t *testing.T) {
	panickingBase(t, syncShapes())
}

func panickingBase(t *testing.T, shs []pol) {
	for _, p := range shs {
		t.Run(p.name, func(t *testing.T) {
			g0 := runtime.NumGoroutine()
			var got context.Context
			var n int
			var mu sync.Mutex
			base := rtFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				n++
				first := n == 1
				if first {
					got = r.Context()
				}
				mu.Unlock()
				if first {
					r.Context().Done()
					panic("base exploded")
				}
				return resp(r, 200, nil), nil
			})
			p.attempts = 1
			rt := rhttp.NewTransport(p.exec(t), key, base)
			var res *http.Response
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic escaped: %v", r)
					}
				}()
				res, err = get(t, rt, context.Background())
			}()
			if err == nil {
				res.Body.Close()
				t.Fatal("no error from a panicking base")
			}
			mu.Lock()
			c := got
			mu.Unlock()
			eventually(t, 2*time.Second, "panicking try's context never ended", func() bool { return isDone(c) })
			res, err = get(t, rt, context.Background())
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			goroutinesBack(t, g0, 0)
		})
	}
}
