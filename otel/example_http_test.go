package rotel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/recourse-go/recourse"
	rotel "github.com/recourse-go/recourse/otel"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// HTTP tries traced with otelhttp: the recourse transport outermost, then
// otelhttp (one client span per try), then NewResendTransport (which marks
// the resent request). The tries' spans nest under the call's span.
func ExampleNewResendTransport() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first try fails
			return
		}
		_, _ = io.WriteString(w, "42")
	}))
	defer srv.Close()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	exec := recourse.NewExecutor(
		recourse.WithObserver(rotel.NewObserver(rotel.WithTracerProvider(tp))),
		recourse.WithPolicy("inventory.Get", policy.MaxAttempts(3), policy.Backoff(time.Millisecond, time.Millisecond, 1)))

	base := srv.Client().Transport // http.DefaultTransport in a program
	client := &http.Client{Transport: rhttp.NewTransport(exec, "inventory.Get",
		otelhttp.NewTransport(rotel.NewResendTransport(base), otelhttp.WithTracerProvider(tp)))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))

	ended := spans.Ended()
	for _, call := range ended {
		if call.Name() != "inventory.Get" {
			continue
		}
		fmt.Println(call.Name(), call.SpanKind())
		for _, try := range ended {
			if try.Parent().SpanID() != call.SpanContext().SpanID() {
				continue
			}
			resend := "-"
			for _, kv := range try.Attributes() {
				if kv.Key == "http.request.resend_count" {
					resend = kv.Value.Emit()
				}
			}
			fmt.Printf("  %s %s resend_count=%s\n", try.Name(), try.SpanKind(), resend)
		}
	}
	// Output:
	// 200 OK 42
	// inventory.Get internal
	//   HTTP GET client resend_count=-
	//   HTTP GET client resend_count=1
}
