package rotel

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/recourse-go/recourse/endpoint"
)

// NewResendTransport returns an http.RoundTripper that tells the HTTP
// client span of each request it sends which try of a recourse call the
// request is, then sends the request with base (http.DefaultTransport
// when nil).
//
// Put it directly under otelhttp.NewTransport, itself under
// rhttp.NewTransport, so that every try gets a client span of its own and
// this transport sees that span in the request's context:
//
//	rt := rhttp.NewTransport(exec, "catalog.Get",
//		otelhttp.NewTransport(rotel.NewResendTransport(http.DefaultTransport)))
//
// On a request that is not the call's first try it sets the OpenTelemetry
// semantic convention attribute http.request.resend_count to the number
// of tries before it — (attempt − 1) for a retry, plus its hedge index
// for a hedge — and, on a hedge, recourse.hedge_index. The first try gets
// neither, as the convention asks. Requests sent outside a recourse call,
// and spans that are not recording or are not client spans (no otelhttp
// span between this transport and the call's span), are left alone.
func NewResendTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return resendTransport{base: base}
}

// resendTransport is NewResendTransport's RoundTripper.
type resendTransport struct{ base http.RoundTripper }

// spanKinder is implemented by the SDK's spans.
type spanKinder interface{ SpanKind() trace.SpanKind }

// RoundTrip marks req's client span, if req is a resend, and sends req.
func (t resendTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req != nil {
		ctx := req.Context()
		if info, ok := endpoint.AttemptFromContext(ctx); ok {
			if n := info.RetryIndex() + info.HedgeIndex; n > 0 {
				span := trace.SpanFromContext(ctx)
				if k, ok := span.(spanKinder); span.IsRecording() && (!ok || k.SpanKind() == trace.SpanKindClient) {
					if info.IsHedge() {
						span.SetAttributes(semconv.HTTPRequestResendCount(n), attribute.Int(AttrHedgeIndex, info.HedgeIndex))
					} else {
						span.SetAttributes(semconv.HTTPRequestResendCount(n))
					}
				}
			}
		}
	}
	return t.base.RoundTrip(req)
}
