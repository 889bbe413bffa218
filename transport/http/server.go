package rhttp

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/recourse-go/recourse/middleware"
)

// ServerOption configures a Shedder.
type ServerOption func(*Shedder)

// ShedKey sets how a request's route key is found (default: every request
// has the key "", one limiter for the whole handler). Keys should be few —
// a route pattern, not a raw path — since each key may get its own
// limiter.
func ShedKey(f func(*http.Request) string) ServerOption {
	return func(s *Shedder) {
		if f != nil {
			s.key = f
		}
	}
}

// ShedRetryAfter sets the delay a shed request is told to wait before
// trying again (default 1s; 0 or less sends no Retry-After). So that
// clients shed together do not all come back together, each refusal
// draws its delay uniformly from [d, 1.25 d] and sends it as Retry-After
// in whole seconds: rounded at random, up with the probability of the
// fraction, so the seconds sent average the delay drawn; never less than
// d rounded up.
func ShedRetryAfter(d time.Duration) ServerOption {
	return func(s *Shedder) { s.retryAfter = d }
}

// OnShed sets a function called for every request shed, with its key and
// the limiter's error (for metrics or logs). It runs on the request's
// goroutine before the 503 is written.
func OnShed(f func(r *http.Request, key string, err error)) ServerOption {
	return func(s *Shedder) { s.onShed = f }
}

// Shedder is server-side admission control for net/http: it runs each
// request under a middleware.Limiter chosen by the request's route key
// and answers the requests the limiter refuses with 503 Service
// Unavailable and a Retry-After header, without calling the handler. A
// recourse client (NewTransport) reads that as a retryable failure and
// waits the Retry-After before its next try, so the two back off
// together.
//
// Work counts as dropped for the limiter (see middleware.Limiter) when
// the request's context ended before the handler returned: the client
// gave up or a server timeout fired.
type Shedder struct {
	limiters   func(key string) middleware.Limiter
	key        func(*http.Request) string
	retryAfter time.Duration
	onShed     func(*http.Request, string, error)
}

// NewShedder returns a Shedder taking each key's limiter from limiters,
// e.g. middleware.PerKey(func(string) middleware.Limiter { return
// middleware.NewAdaptiveLimit() }). A nil limiters, or a nil limiter for
// a key, sheds nothing.
func NewShedder(limiters func(key string) middleware.Limiter, opts ...ServerOption) *Shedder {
	s := &Shedder{limiters: limiters, key: func(*http.Request) string { return "" }, retryAfter: time.Second}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	return s
}

// Handler returns next behind the Shedder, keying requests with the
// ShedKey function.
func (s *Shedder) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(s.key(r), next, w, r)
	})
}

// Route returns next behind the Shedder with a fixed key, for routers
// that register handlers one route at a time:
//
//	mux.Handle("GET /items/{id}", shedder.Route("items.Get", getItem))
func (s *Shedder) Route(key string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(key, next, w, r)
	})
}

func (s *Shedder) serve(key string, next http.Handler, w http.ResponseWriter, r *http.Request) {
	var l middleware.Limiter
	if s.limiters != nil {
		l = s.limiters(key)
	}
	if l == nil {
		next.ServeHTTP(w, r)
		return
	}
	ctx := r.Context()
	release, err := l.Acquire(ctx)
	if err != nil {
		if s.onShed != nil {
			s.onShed(r, key, err)
		}
		if s.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(s.retryAfter, rand.Float64(), rand.Float64()), 10))
		}
		msg := "overloaded: retry later"
		if ctx.Err() != nil && !errors.Is(err, middleware.ErrBulkheadFull) {
			msg = "request ended while waiting to be served"
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	if release == nil {
		release = func(bool) {}
	}
	defer func() { release(contextEnded(ctx)) }()
	next.ServeHTTP(w, r)
}

// retryAfterSeconds draws the whole seconds of one Retry-After for a
// delay of d from two uniform numbers in [0, 1): spread picks the delay in
// [d, 1.25 d], round rounds it (up with the probability of its fraction of
// a second). The result is never below d rounded up.
func retryAfterSeconds(d time.Duration, spread, round float64) int64 {
	least := int64((d + time.Second - 1) / time.Second)
	secs := (float64(d) + spread*float64(d)/4) / float64(time.Second)
	whole := math.Floor(secs)
	if round < secs-whole {
		whole++
	}
	return max(least, int64(whole))
}

// contextEnded reports whether ctx is done.
func contextEnded(ctx context.Context) bool { return ctx.Err() != nil }
