package rotel_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/endpoint"
	rotel "github.com/recourse-go/recourse/otel"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

const resendCount = "http.request.resend_count"

// flaky answers 503 to its first n requests, then 200.
func flaky(t *testing.T, n int32) *httptest.Server {
	t.Helper()
	var seen atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if seen.Add(1) <= n {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The client span otelhttp starts inside each try is a child of the call's
// span, in the caller's trace, and the resent request carries
// http.request.resend_count.
func TestOtelhttpSpansNestUnderTheCallSpan(t *testing.T) {
	h := newHarness(t)
	srv := flaky(t, 1)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("catalog.Get", policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
	client := &http.Client{Transport: rhttp.NewTransport(exec, "catalog.Get",
		otelhttp.NewTransport(rotel.NewResendTransport(srv.Client().Transport), otelhttp.WithTracerProvider(h.tp)))}

	ctx, parent := h.tp.Tracer("test").Start(context.Background(), "handler")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	parent.End()

	call := h.span(t, "catalog.Get")
	if call.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("call span's parent %v, want the handler's %v", call.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	var tries []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			tries = append(tries, s)
		}
	}
	if len(tries) != 2 {
		t.Fatalf("%d client spans, want 2 (one per try); all: %v", len(tries), names(h.spans.Ended()))
	}
	for i, s := range tries {
		if s.Parent().SpanID() != call.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("try %d: client span's parent %v (trace %v), want the call's span %v (trace %v)", i+1,
				s.Parent().SpanID(), s.SpanContext().TraceID(), call.SpanContext().SpanID(), parent.SpanContext().TraceID())
		}
	}
	if v, ok := attr(tries[0].Attributes(), resendCount); ok {
		t.Errorf("first try has %s = %v, want none", resendCount, v.AsInterface())
	}
	wantAttr(t, "second try", tries[1].Attributes(), resendCount, int64(1))
}

// NewResendTransport numbers retries and hedges, sets nothing on the first
// try, outside recourse calls, or on a span that is not a client span.
func TestResendTransportCounts(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ok := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	rt := rotel.NewResendTransport(ok)
	for _, tc := range []struct {
		name   string
		info   *endpoint.AttemptInfo
		kind   trace.SpanKind
		resend any // nil: not set
		hedge  any
	}{
		{"outside a call", nil, trace.SpanKindClient, nil, nil},
		{"first try", &endpoint.AttemptInfo{Attempt: 1}, trace.SpanKindClient, nil, nil},
		{"second attempt", &endpoint.AttemptInfo{Attempt: 2}, trace.SpanKindClient, int64(1), nil},
		{"third attempt", &endpoint.AttemptInfo{Attempt: 3}, trace.SpanKindClient, int64(2), nil},
		{"hedge of the first", &endpoint.AttemptInfo{Attempt: 1, HedgeIndex: 1}, trace.SpanKindClient, int64(1), int64(1)},
		{"second hedge of the second", &endpoint.AttemptInfo{Attempt: 2, HedgeIndex: 2}, trace.SpanKindClient, int64(3), int64(2)},
		{"internal span (no otelhttp above)", &endpoint.AttemptInfo{Attempt: 2}, trace.SpanKindInternal, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sr.Reset()
			ctx := context.Background()
			if tc.info != nil {
				ctx = endpoint.WithAttempt(ctx, *tc.info)
			}
			ctx, span := tp.Tracer("test").Start(ctx, "try", trace.WithSpanKind(tc.kind))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.invalid/", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("RoundTrip: %v, %v", resp, err)
			}
			span.End()
			got := sr.Ended()[0].Attributes()
			for key, want := range map[string]any{resendCount: tc.resend, rotel.AttrHedgeIndex: tc.hedge} {
				v, ok := attr(got, key)
				switch {
				case want == nil && ok:
					t.Errorf("%s = %v, want none", key, v.AsInterface())
				case want != nil && (!ok || v.AsInterface() != want):
					t.Errorf("%s = %v (set %v), want %v", key, v.AsInterface(), ok, want)
				}
			}
		})
	}
	// A nil base is http.DefaultTransport; a nil request is base's to refuse.
	if rotel.NewResendTransport(nil) == nil {
		t.Error("NewResendTransport(nil) is nil")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// WithAttemptSpans(true) adds one child span per try with its number and
// reason; without it there is none.
func TestAttemptSpans(t *testing.T) {
	for _, on := range []bool{false, true} {
		sr := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
		obs := rotel.NewObserver(rotel.WithTracerProvider(tp), rotel.WithAttemptSpans(on))
		exec := recourse.NewExecutor(recourse.WithObserver(obs),
			recourse.WithPolicy("payments.Charge", policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1)))
		if err := exec.Do(context.Background(), "payments.Charge", failTimes(2)); err != nil {
			t.Fatal(err)
		}
		_ = tp.Shutdown(context.Background())
		var call sdktrace.ReadOnlySpan
		var tries []sdktrace.ReadOnlySpan
		for _, s := range sr.Ended() {
			switch s.Name() {
			case "payments.Charge":
				call = s
			case "payments.Charge attempt":
				tries = append(tries, s)
			default:
				t.Errorf("unexpected span %q", s.Name())
			}
		}
		if call == nil {
			t.Fatal("no call span")
		}
		if !on {
			if len(tries) != 0 {
				t.Errorf("attempt spans off: %d attempt spans", len(tries))
			}
			continue
		}
		if len(tries) != 3 {
			t.Fatalf("%d attempt spans, want 3", len(tries))
		}
		for i, s := range tries {
			what := "attempt span " + string(rune('1'+i))
			if s.Parent().SpanID() != call.SpanContext().SpanID() {
				t.Errorf("%s: parent %v, want the call's span", what, s.Parent().SpanID())
			}
			wantAttr(t, what, s.Attributes(), rotel.AttrAttempt, int64(i+1))
			wantAttr(t, what, s.Attributes(), rotel.AttrKey, "payments.Charge")
			reason, failed := "retryable", true
			if i == 2 {
				reason, failed = "success", false
			}
			wantAttr(t, what, s.Attributes(), rotel.AttrReason, reason)
			if got := s.Status().Code.String() == "Error"; got != failed {
				t.Errorf("%s: status %v, want error=%v", what, s.Status(), failed)
			}
			if s.StartTime().Before(call.StartTime()) || s.EndTime().After(call.EndTime()) {
				t.Errorf("%s: %v..%v outside the call's %v..%v", what, s.StartTime(), s.EndTime(), call.StartTime(), call.EndTime())
			}
		}
	}
}

// A hedge's client span nests under the call's span too, marked as a
// resend with its hedge index; the stalled primary's span ends when the
// hedge wins.
func TestOtelhttpHedgeSpan(t *testing.T) {
	h := newHarness(t)
	var seen atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 1 {
			<-r.Context().Done() // the primary stalls until the hedge wins
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs),
		recourse.WithPolicy("pricing.Quote", policy.MaxAttempts(1), policy.OverallTimeout(5*time.Second),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 5 * time.Millisecond, MaxHedges: 1})))
	client := &http.Client{Transport: rhttp.NewTransport(exec, "pricing.Quote",
		otelhttp.NewTransport(rotel.NewResendTransport(srv.Client().Transport), otelhttp.WithTracerProvider(h.tp)))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	call := h.span(t, "pricing.Quote")
	var primary, hedge sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		if s.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Errorf("client span %q: parent %v, want the call's span", s.Name(), s.Parent().SpanID())
		}
		if _, ok := attr(s.Attributes(), rotel.AttrHedgeIndex); ok {
			hedge = s
		} else {
			primary = s
		}
	}
	if primary == nil || hedge == nil {
		t.Fatalf("want a primary and a hedge client span; all: %v", names(h.spans.Ended()))
	}
	wantAttr(t, "hedge", hedge.Attributes(), resendCount, int64(1))
	wantAttr(t, "hedge", hedge.Attributes(), rotel.AttrHedgeIndex, int64(1))
	if _, ok := attr(primary.Attributes(), resendCount); ok {
		t.Error("the primary try is marked as a resend")
	}
}

// A call the executor refuses (no policy, deny mode) still gets its span,
// started by CallContext and ended with the refusal.
func TestRefusedCallSpan(t *testing.T) {
	h := newHarness(t)
	exec := recourse.NewExecutor(recourse.WithObserver(h.obs), recourse.WithMissingPolicyMode(recourse.FailureDeny))
	if err := exec.Do(context.Background(), "nowhere.Get", func(context.Context) error { return nil }); err == nil {
		t.Fatal("a call without a policy ran in deny mode")
	}
	s := h.span(t, "nowhere.Get")
	wantAttr(t, "refused call", s.Attributes(), rotel.AttrErrorType, "no_policy")
	if len(h.spans.Started()) != 1 {
		t.Errorf("%d spans started, want 1", len(h.spans.Started()))
	}
}
