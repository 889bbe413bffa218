package rgrpc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/recourse-go/recourse/middleware"
)

// PushbackTrailer is the trailer a server sets to ask for a delay before
// the next try, in milliseconds (gRPC's retry design, A6).
const PushbackTrailer = "grpc-retry-pushback-ms"

// CodeError is the error of a try that ended with a gRPC status. It keeps
// the status (status.FromError and status.Code see through it) and the
// server's pushback.
type CodeError struct {
	// Err is the status error the invoker returned.
	Err error
	// Code is its status code.
	Code codes.Code
	// Pushback is the delay the server asked for, 0 if none.
	Pushback time.Duration
}

// Error returns the status error's message.
func (e *CodeError) Error() string { return e.Err.Error() }

// Unwrap returns the status error.
func (e *CodeError) Unwrap() error { return e.Err }

// GRPCStatus returns the try's status.
func (e *CodeError) GRPCStatus() *status.Status { return status.Convert(e.Err) }

// RetryAfter returns the server's pushback (middleware.Pushback).
func (e *CodeError) RetryAfter() time.Duration { return e.Pushback }

// AttemptStatus returns the code's name, for timelines ("UNAVAILABLE").
func (e *CodeError) AttemptStatus() string { return codeName(e.Code) }

func codeName(c codes.Code) string {
	return strings.ToUpper(strings.ReplaceAll(toSnake(c.String()), " ", "_"))
}

func toSnake(s string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range s {
		upper := r >= 'A' && r <= 'Z'
		if upper && prevLower {
			b.WriteByte('_')
		}
		prevLower = r >= 'a' && r <= 'z'
		b.WriteRune(r)
	}
	return b.String()
}

// RetryableCode reports whether code may be tried again: Unavailable,
// Aborted and DeadlineExceeded always, ResourceExhausted only with server
// pushback.
func RetryableCode(code codes.Code, hasPushback bool) bool {
	switch code {
	case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded:
		return true
	case codes.ResourceExhausted:
		return hasPushback
	}
	return false
}

// ParsePushback reads the pushback trailer. ok=false when there is none;
// retry=false when the server said not to retry (negative or malformed).
func ParsePushback(md metadata.MD) (d time.Duration, retry, ok bool) {
	vals := md.Get(PushbackTrailer)
	if len(vals) == 0 {
		return 0, true, false
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(vals[0]), 10, 64)
	if err != nil || ms < 0 {
		return 0, false, true
	}
	if ms > int64(time.Duration(1<<63-1)/time.Millisecond) {
		ms = int64(time.Duration(1<<63-1) / time.Millisecond)
	}
	return time.Duration(ms) * time.Millisecond, true, true
}

// classify turns a try's error and trailer into the error the chain's
// rules understand: retryable codes as *CodeError (with pushback), all
// other codes marked permanent. The *CodeError is ce when it is not nil
// (a try's own, held in its result), a new one otherwise.
func classify(err error, trailer metadata.MD, ce *CodeError) error {
	if err == nil {
		return nil
	}
	st, isStatus := status.FromError(err)
	if !isStatus {
		return err // not from gRPC: default rules
	}
	if ce == nil {
		ce = new(CodeError)
	}
	*ce = CodeError{Err: err, Code: st.Code()}
	d, retry, has := ParsePushback(trailer)
	if !retry {
		return middleware.Permanent(ce)
	}
	ce.Pushback = d
	if d == 0 && has {
		ce.Pushback = time.Nanosecond // "retry now" still overrides the backoff
	}
	if RetryableCode(ce.Code, has) {
		return ce
	}
	return middleware.Permanent(ce)
}

// classifyTry is classify for a try run under ctx: when ctx is done and
// the status says so (Canceled, DeadlineExceeded), the status is left
// unmarked, so that the chain's context rules judge the try — the
// caller's cancellation or deadline aborts the call, the try's own
// deadline is a retryable timeout — rather than a non-retryable failure
// of the server.
func classifyTry(ctx context.Context, err error, trailer metadata.MD, ce *CodeError) error {
	if err != nil && ctx.Err() != nil {
		if st, ok := status.FromError(err); ok && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded) {
			if ce == nil {
				ce = new(CodeError)
			}
			*ce = CodeError{Err: err, Code: st.Code()}
			return ce
		}
	}
	return classify(err, trailer, ce)
}

// original returns the status error a try produced, for the caller.
func original(err error) error {
	switch e := err.(type) { // the common cases, without errors.As's allocation
	case nil:
		return nil
	case *CodeError:
		return e.Err
	case *middleware.PermanentError:
		if ce, ok := e.Err.(*CodeError); ok {
			return ce.Err
		}
	}
	var ce *CodeError
	if errors.As(err, &ce) {
		var p *middleware.PermanentError
		if err == error(ce) || (errors.As(err, &p) && p.Err == error(ce)) {
			return ce.Err
		}
	}
	return err
}
