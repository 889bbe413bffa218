package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/timeline"
)

// WithObserver (Observe) sends the call's events to o. A nil o, a nil pointer or
// any other observer that does nothing (see timeline.IsNoop) means none;
// o is cleaned with timeline.Multi.
func WithObserver(o timeline.Observer) Option {
	return option(func(ob *observer) { ob.obs = timeline.Multi(o) })
}

// withAttributes sets attributes copied into every timeline of the call.
func withAttributes(attrs map[string]string) Option {
	return option(func(ob *observer) { ob.attrs = attrs })
}

// withPolicyID sets the policy ID shown in timelines.
func withPolicyID(id string) Option {
	return option(func(ob *observer) { ob.policyID = id })
}

type observer struct {
	key      string
	obs      timeline.Observer
	clock    clock.Clock
	attrs    map[string]string
	policyID string
}

func (ob *observer) setClock(c clock.Clock) { ob.clock = c }

// Observe returns the outermost decorator: it opens the call's timeline
// for key, lets an observer that implements timeline.ContextObserver make
// the call's context (which every try then runs in), reports OnStart, lets
// inner decorators add one record per try, then closes the timeline with
// the call's error, reports OnFinish and hands the timeline to a Capture
// from timeline.Record, if any.
//
// With no Capture in the context and no observer (or the no-op one),
// Observe does no timeline work at all and allocates nothing.
//
// Alone on an endpoint with no Classify inside, the call itself is the only
// try: when nothing inside recorded a try, Observe records the call as
// attempt 1 with the default verdict (unless ctx was already done, in which
// case no try ran).
func Observe(key string, opts ...Option) endpoint.Middleware {
	ob := &observer{key: key, clock: clock.Real{}}
	applyOptions(ob, opts)
	noop := timeline.IsNoop(ob.obs)
	var cobs timeline.ContextObserver
	if !noop {
		cobs, _ = ob.obs.(timeline.ContextObserver)
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			capture := record.CaptureFromContext(ctx)
			if capture == nil && noop {
				if record.FromContext(ctx) != nil {
					// A call nested in a recorded one: hide the outer recorder.
					ctx = record.NewContext(ctx, nil)
				}
				return next(ctx, req)
			}
			rec := record.New(ob.key, ob.obs, ob.clock.Now)
			for k, v := range ob.attrs {
				rec.SetAttribute(k, v)
			}
			if ob.policyID != "" {
				rec.SetPolicyID(ob.policyID)
			}
			ctx = record.NewContext(ctx, rec)
			if cobs != nil {
				ctx = callContext(ctx, cobs, rec)
			}
			rec.Start(ctx)
			start, doneBefore := rec.Now(), ctx.Err() != nil
			resp, err := next(ctx, req)
			if rec.Len() == 0 && !doneBefore {
				ob.recordWhole(ctx, rec, start, resp, err)
			}
			tl := rec.Finish(ctx, err)
			if perr := rec.ObserverPanic(); perr != nil {
				// An observer panicked and was recovered: the call says so.
				err = errors.Join(err, perr)
				tl.Err = err
			}
			capture.Set(tl)
			return resp, err
		}
	}
}

// callContext returns the call's context as cobs makes it from ctx, which
// carries rec: ctx itself when cobs returns nil or a context not derived
// from ctx (one without rec, which the inner decorators need).
func callContext(ctx context.Context, cobs timeline.ContextObserver, rec *record.Recorder) context.Context {
	if c := cobs.CallContext(ctx, rec.Key(), rec.StartTime()); c != nil && record.FromContext(c) == rec {
		return c
	}
	return ctx
}

// recordWhole records a call no inner decorator recorded as one attempt.
func (ob *observer) recordWhole(ctx context.Context, rec *record.Recorder, start time.Time, resp any, err error) {
	v := VerdictOf(ctx, resp, err)
	rec.Attempt(ctx, timeline.AttemptRecord{
		Attempt: 1, StartTime: start, EndTime: rec.Now(),
		Outcome: v.Outcome, Reason: v.Reason, Err: unwrapVerdict(err),
	})
}
