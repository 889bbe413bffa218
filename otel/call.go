package rotel

import (
	"context"
	"reflect"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// stateKey is the context key of an Observer's callState.
type stateKey struct{ o *Observer }

// spanKindInternal is the kind of the spans the Observer starts, made once.
var spanKindInternal = trace.WithSpanKind(trace.SpanKindInternal)

// callCtx is the context CallContext returns: the caller's context with
// the call's span, plus the call's state under stateKey{o}. It is one
// allocation where context.WithValue and a state would be two; every
// other method, Done and Err included, is the embedded context's.
type callCtx struct {
	context.Context
	o  *Observer
	st callState
}

// Value returns the call's state for stateKey{o}, and otherwise what the
// embedded context holds for key.
func (c *callCtx) Value(key any) any {
	if k, ok := key.(stateKey); ok && k.o == c.o {
		return &c.st
	}
	return c.Context.Value(key)
}

// callState is what CallContext leaves in a call's context for the
// Observer's later events of the call.
type callState struct {
	span trace.Span
	key  string
	opts *keyOpts

	mu sync.Mutex
	// owner is the context OnStart (or, failing that, OnFinish) was given
	// for the call: the observe decorator gives OnStart and OnFinish the
	// same one. A call nested in one of this call's tries whose own
	// CallContext was skipped (an observer wrapping this one without
	// forwarding it) finds this state in its context too, under another
	// context; owner keeps it from ending this call's span.
	owner context.Context
	ended bool
}

// state returns the callState o left in ctx, or nil.
func (o *Observer) state(ctx context.Context) *callState {
	if ctx == nil {
		return nil
	}
	st, _ := ctx.Value(stateKey{o}).(*callState)
	return st
}

// CallContext starts the call's span, a child of the span in ctx, and
// returns a context carrying it: spans started inside the call's tries
// are its children. The executor calls it at the start of each call (see
// timeline.ContextObserver).
func (o *Observer) CallContext(ctx context.Context, key string, start time.Time) context.Context {
	if ctx == nil {
		return nil
	}
	opts := o.forKey(key)
	ctx, span := o.tracer.Start(ctx, key, spanKindInternal, trace.WithTimestamp(start), opts.start)
	return &callCtx{Context: ctx, o: o, st: callState{span: span, key: key, opts: opts}}
}

// keyOpts are the options every call of a key uses, made once per key.
type keyOpts struct {
	start            trace.SpanStartOption // recourse.key on the call's span
	key              *measure              // recourse.key alone
	success, failure *measure              // recourse.key and recourse.outcome
}

// forKey returns key's options.
func (o *Observer) forKey(key string) *keyOpts {
	if v, ok := o.keys.Load(key); ok {
		return v.(*keyOpts)
	}
	ko := &keyOpts{
		start:   trace.WithAttributes(attribute.String(AttrKey, key)),
		key:     o.attrSet(attrKey{kind: attrsKey, key: key}),
		success: o.attrSet(attrKey{kind: attrsCall, key: key, a: "success"}),
		failure: o.attrSet(attrKey{kind: attrsCall, key: key, a: "failure"}),
	}
	if o.cached.Load() >= maxCached {
		return ko // past the bound: built for this call, not kept
	}
	v, loaded := o.keys.LoadOrStore(key, ko)
	if !loaded {
		o.cached.Add(1)
	}
	return v.(*keyOpts)
}

// OnStart claims the span CallContext started for the call; the span is
// already running.
func (o *Observer) OnStart(ctx context.Context, _ string, _ time.Time) {
	if st := o.state(ctx); st != nil && isComparable(ctx) {
		st.mu.Lock()
		if st.owner == nil {
			st.owner = ctx
		}
		st.mu.Unlock()
	}
}

// isComparable reports whether ctx can be compared with ==: contexts made
// by package context are pointers, but a context type of a user's may not
// be.
func isComparable(ctx context.Context) bool {
	return reflect.TypeOf(ctx).Comparable()
}

// take returns the span of the call finishing with ctx, which OnFinish
// then ends, and its key's options, or nils when CallContext made no span
// for it.
func (o *Observer) take(ctx context.Context) (trace.Span, *keyOpts) {
	st := o.state(ctx)
	if st == nil || !isComparable(ctx) {
		return nil, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended || (st.owner != nil && st.owner != ctx) {
		return nil, nil
	}
	st.owner, st.ended = ctx, true
	return st.span, st.opts
}
