package endpoint

import (
	"context"
	"fmt"

	kit "github.com/go-kit/kit/endpoint"
)

// Endpoint is go-kit's endpoint.Endpoint: the unit every decorator wraps.
type Endpoint = kit.Endpoint

// Middleware is go-kit's endpoint.Middleware: a decorator of Endpoints.
type Middleware = kit.Middleware

// Failer is go-kit's endpoint.Failer: a response that carries a business error.
type Failer = kit.Failer

// Chain composes middlewares so that outer wraps the rest: the first
// argument sees a request first and its response last.
func Chain(outer Middleware, others ...Middleware) Middleware {
	return kit.Chain(outer, others...)
}

// Nop is go-kit's endpoint.Nop: an endpoint that returns (struct{}{}, nil).
func Nop(context.Context, any) (any, error) { return struct{}{}, nil }

// FromFunc adapts a typed operation into an Endpoint that ignores its
// request. The only allocation per call is boxing the result into the
// response interface (none for pointer-shaped T).
func FromFunc[T any](op func(context.Context) (T, error)) Endpoint {
	return func(ctx context.Context, _ any) (any, error) {
		return op(ctx)
	}
}

// FromErrFunc adapts an operation that returns only an error into an
// Endpoint whose response is always nil.
func FromErrFunc(op func(context.Context) error) Endpoint {
	return func(ctx context.Context, _ any) (any, error) {
		return nil, op(ctx)
	}
}

// ToFunc adapts an Endpoint back into a typed operation that sends request.
// A response that is not a T (and not nil) is reported as an error naming
// both types.
func ToFunc[T any](e Endpoint, request any) func(context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		resp, err := e(ctx, request)
		return as[T](resp, err)
	}
}

// as converts an endpoint's (response, error) pair to a typed one. A nil
// response gives T's zero value.
func as[T any](resp any, err error) (T, error) {
	if resp == nil {
		var zero T
		return zero, err
	}
	v, ok := resp.(T)
	if !ok {
		var zero T
		if err == nil {
			err = fmt.Errorf("recourse/endpoint: response is %T, want %T", resp, zero)
		}
		return zero, err
	}
	return v, err
}
