package middleware

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/cenkalti/backoff/v4"
)

// ErrBulkheadFull is returned (wrapped) when a key's bulkhead, fixed or
// adaptive, refuses a try: no room within its wait bound. The operation is
// not called; the try is recorded with reason "bulkhead_full", is never
// counted by the circuit breaker and is not retried.
var ErrBulkheadFull = errors.New("recourse: bulkhead full")

// PermanentError marks an error that must not be retried.
type PermanentError struct {
	// Err is the error marked permanent; it is never nil when the
	// PermanentError comes from Permanent.
	Err error
}

// Error returns the wrapped error's message.
func (p *PermanentError) Error() string { return p.Err.Error() }

// Unwrap returns the wrapped error.
func (p *PermanentError) Unwrap() error { return p.Err }

// Permanent marks err as non-retryable: the retry loop stops after the try
// that returned it. errors.Unwrap gives err back; Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is marked non-retryable, by Permanent or
// by backoff/v4's backoff.Permanent, anywhere in its chain.
func IsPermanent(err error) bool {
	if _, ok := find[*PermanentError](err); ok {
		return true
	}
	_, ok := find[*backoff.PermanentError](err)
	return ok
}

func isPanic(err error) bool {
	_, ok := find[*PanicError](err)
	return ok
}

// PanicError is what a recovered panic becomes. Component says what
// panicked.
type PanicError struct {
	// Component names what panicked: "op" (the operation), "classifier",
	// "budget", "provider", "observer", "hedge" (a hedged try's
	// goroutine) or "compile" (compiling a key's policy).
	Component string
	// Key is the key of the call the panic happened in. A provider that
	// panics while loading its source or looking up a declared budget has
	// no call's key: Key is then the source's name ("file:PATH") or the
	// budget's name.
	Key string
	// Value is the value the panic was raised with, as recover returned
	// it. Unwrap returns it when it is an error.
	Value any
	// Stack is the panicking goroutine's stack trace, formatted as
	// runtime/debug.Stack formats it, captured when the panic was
	// recovered.
	Stack []byte
}

// Error describes the panic.
func (p *PanicError) Error() string {
	return fmt.Sprintf("recourse: panic in %s for key %q: %v", p.Component, p.Key, p.Value)
}

// Unwrap returns the panic value if it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// NewPanicError builds a PanicError for a value returned by recover(),
// capturing the current stack. Call it from the deferred function.
func NewPanicError(component, key string, v any) *PanicError {
	return &PanicError{Component: component, Key: key, Value: v, Stack: debug.Stack()}
}

// find is errors.As without reflection: it walks err's tree (Unwrap() error
// and Unwrap() []error, depth first, as errors.As does) for the first
// error of type T. errors.As makes its target escape, one allocation per
// call on the failure path; find makes none.
func find[T any](err error) (T, bool) {
	for err != nil {
		if t, ok := err.(T); ok {
			return t, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if t, ok := find[T](e); ok {
					return t, true
				}
			}
			var zero T
			return zero, false
		default:
			var zero T
			return zero, false
		}
	}
	var zero T
	return zero, false
}
