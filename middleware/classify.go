package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/lazyctx"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/timeline"
)

// Verdict is a classifier's judgement of one try.
type Verdict struct {
	// Outcome says whether to stop, retry or abort.
	Outcome timeline.Outcome
	// Reason is a stable reason code (timeline.Reason*).
	Reason string
	// RetryAfter, when positive, is a delay the server asked for before the
	// next try (Retry-After, gRPC pushback); it replaces the backoff.
	RetryAfter time.Duration
}

// Classifier judges the result of one try. Implementations must be safe for
// concurrent use. Classify sees only results that the generic rules below
// have not already settled; see Classify for the order.
type Classifier interface {
	Classify(ctx context.Context, resp any, err error) Verdict
}

// ClassifierFunc adapts a function to Classifier.
type ClassifierFunc func(ctx context.Context, resp any, err error) Verdict

// Classify calls f.
func (f ClassifierFunc) Classify(ctx context.Context, resp any, err error) Verdict {
	return f(ctx, resp, err)
}

// DefaultClassifier: a nil error is success, unless the response is a
// go-kit endpoint.Failer reporting a failure, which is non-retryable (a
// business error does not go away on retry); every other error is retryable.
var DefaultClassifier Classifier = ClassifierFunc(defaultClassify)

func defaultClassify(_ context.Context, resp any, err error) Verdict {
	if err == nil {
		if f, ok := resp.(endpoint.Failer); ok && f.Failed() != nil {
			return Verdict{Outcome: timeline.OutcomeNonRetryable, Reason: timeline.ReasonNonRetryable}
		}
		return Verdict{Outcome: timeline.OutcomeSuccess, Reason: timeline.ReasonSuccess}
	}
	return Verdict{Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonRetryable}
}

// ClassifiedError is a try's error with the verdict Classify gave it. Its
// message is the wrapped error's, and errors.Is/As see through it.
type ClassifiedError struct {
	// Err is the try's error, as the endpoint returned it or, when
	// FromFailer is set, as the response's Failed method reported it.
	Err error
	// Verdict is what classification made of Err: its outcome (retryable,
	// non-retryable, abort) and the reason recorded in the timeline.
	Verdict Verdict
	// FromFailer is set when Err came from a go-kit Failer response rather
	// than from the endpoint's error; the caller then gets the response
	// back with a nil error, as go-kit expects.
	FromFailer bool
}

// Error returns the wrapped error's message.
func (c *ClassifiedError) Error() string { return c.Err.Error() }

// Unwrap returns the wrapped error.
func (c *ClassifiedError) Unwrap() error { return c.Err }

// Rules that settle a verdict before any Classifier is asked. They are the
// same for every protocol, so custom classifiers need not repeat them.
func preclassify(ctx context.Context, err error) (Verdict, bool) {
	switch {
	case isPanic(err):
		return Verdict{Outcome: timeline.OutcomeNonRetryable, Reason: timeline.ReasonPanic}, true
	case IsPermanent(err):
		return Verdict{Outcome: timeline.OutcomeNonRetryable, Reason: timeline.ReasonNonRetryable}, true
	}
	if ctx.Err() != nil {
		// The try failed while its context was done: the context is why.
		// Only this try's own per-attempt deadline is a retryable timeout;
		// any other end — the caller's deadline or cancellation, or an
		// enclosing call's per-attempt deadline when this call is nested
		// in another's try — is the caller's, and aborts the call.
		switch {
		case ownAttemptTimeout(ctx):
			return Verdict{Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonTimeout}, true
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return Verdict{Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonTimeout}, true
		default:
			return Verdict{Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonCanceled}, true
		}
	}
	if errors.Is(err, ErrAttemptTimeout) {
		// A per-attempt timeout further in (an inner call that ran out of
		// time): the dependency was slow, which is worth another try.
		return Verdict{Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonTimeout}, true
	}
	return Verdict{}, false
}

// ownAttemptTimeout reports whether ctx is a per-attempt deadline context
// (made by Timeout directly outside Classify) that ended because its own
// deadline passed.
func ownAttemptTimeout(ctx context.Context) bool {
	c, ok := ctx.(*lazyctx.Ctx)
	return ok && c.ExpiredOwn()
}

// VerdictOf returns the verdict attached to err by Classify or, for an
// error no Classify has seen, the verdict the generic rules and
// DefaultClassifier give it in ctx. A nil err is success.
func VerdictOf(ctx context.Context, resp any, err error) Verdict {
	if ce, ok := find[*ClassifiedError](err); ok {
		return ce.Verdict
	}
	return judge(ctx, DefaultClassifier, resp, err)
}

func judge(ctx context.Context, c Classifier, resp any, err error) Verdict {
	if err != nil {
		if v, ok := preclassify(ctx, err); ok {
			return v
		}
	}
	v := c.Classify(ctx, resp, err)
	if v.Outcome == timeline.OutcomeUnknown {
		v = defaultClassify(ctx, resp, err)
	}
	if v.Reason == "" {
		v.Reason = defaultReason(v.Outcome)
	}
	if v.Outcome == timeline.OutcomeRetryable && v.RetryAfter == 0 && err != nil {
		if pb, ok := find[Pushback](err); ok {
			if d := pb.RetryAfter(); d > 0 {
				v.RetryAfter, v.Reason = d, timeline.ReasonRetryAfter
			}
		}
	}
	return v
}

// Pushback is implemented by errors that carry a delay the server asked
// for before the next try (HTTP Retry-After, gRPC retry pushback). Every
// classifier's retryable verdict picks it up, so the retry loop waits that
// long instead of its backoff (capped by MaxPushback).
type Pushback interface {
	RetryAfter() time.Duration
}

func defaultReason(o timeline.Outcome) string {
	switch o {
	case timeline.OutcomeSuccess:
		return timeline.ReasonSuccess
	case timeline.OutcomeRetryable:
		return timeline.ReasonRetryable
	case timeline.OutcomeAbort:
		return timeline.ReasonCanceled
	}
	return timeline.ReasonNonRetryable
}

type classifyConfig struct {
	key     string
	recover bool
}

// recoverClassifierPanics makes a panicking classifier produce a
// *PanicError (component "classifier") for key instead of crashing.
func recoverClassifierPanics(key string) Option {
	return option(func(c *classifyConfig) { c.key, c.recover = key, true })
}

// Classify returns the innermost decorator: it runs the try, judges its
// result and records it. The verdict comes from, in order: a recovered
// panic (non-retryable), Permanent marks (non-retryable), the try's own
// context being done (attempt timeout: retryable "timeout"; the caller's
// deadline: abort "timeout"; the caller's cancellation: abort "canceled"),
// then c (DefaultClassifier when nil).
//
// A failed try returns its error wrapped in *ClassifiedError. A success
// returns (resp, nil) untouched. When the call is being recorded, one
// AttemptRecord per try is added to the timeline.
func Classify(c Classifier, opts ...Option) endpoint.Middleware {
	if c == nil {
		c = DefaultClassifier
	}
	var cfg classifyConfig
	applyOptions(&cfg, opts)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			rec := record.FromContext(ctx)
			var start time.Time
			if rec != nil {
				start = rec.Now()
			}
			resp, err := next(ctx, req)
			v, perr := cfg.safeJudge(ctx, c, resp, err)
			if perr != nil {
				err = perr
			} else if err != nil && v.Reason == timeline.ReasonTimeout && v.Outcome == timeline.OutcomeRetryable &&
				!errors.Is(err, ErrAttemptTimeout) && ownAttemptTimeout(ctx) {
				err = fmt.Errorf("%w: %w", ErrAttemptTimeout, err) // errors.Is finds the timeout
			}
			if err == nil && v.Outcome == timeline.OutcomeSuccess {
				if rec != nil {
					recordTry(ctx, rec, start, v, resp, nil)
				}
				return resp, nil
			}
			ce := &ClassifiedError{Err: err, Verdict: v}
			if err == nil {
				ce.FromFailer = true
				if f, ok := resp.(endpoint.Failer); ok && f.Failed() != nil {
					ce.Err = f.Failed()
				} else {
					ce.Err = errClassifiedFailure
				}
			}
			if rec != nil {
				recordTry(ctx, rec, start, v, resp, ce.Err)
			}
			return resp, ce
		}
	}
}

var errClassifiedFailure = errors.New("recourse: response classified as a failure")

// safeJudge runs the classifier; with recovery on, a panic in it becomes a
// non-retryable verdict and a *PanicError that replaces the try's error.
func (cfg classifyConfig) safeJudge(ctx context.Context, c Classifier, resp any, err error) (v Verdict, perr error) {
	if cfg.recover {
		defer func() {
			if r := recover(); r != nil {
				v = Verdict{Outcome: timeline.OutcomeNonRetryable, Reason: timeline.ReasonPanic}
				perr = NewPanicError("classifier", cfg.key, r)
			}
		}()
	}
	return judge(ctx, c, resp, err), nil
}

func recordTry(ctx context.Context, rec *record.Recorder, start time.Time, v Verdict, resp any, err error) {
	info, _ := endpoint.AttemptFromContext(ctx)
	attempt := info.Attempt
	if attempt == 0 {
		attempt = 1
	}
	rec.Attempt(ctx, timeline.AttemptRecord{
		Attempt:    attempt,
		HedgeIndex: info.HedgeIndex,
		StartTime:  start,
		EndTime:    rec.Now(),
		Outcome:    v.Outcome,
		Reason:     v.Reason,
		Err:        err,
		Status:     statusOf(resp, err),
	})
}

// statusOf returns the protocol status a response or error reports.
func statusOf(resp any, err error) string {
	if s, ok := resp.(endpoint.Statuser); ok {
		return s.AttemptStatus()
	}
	if s, ok := find[endpoint.Statuser](err); ok {
		return s.AttemptStatus()
	}
	return ""
}
