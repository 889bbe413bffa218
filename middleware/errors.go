package middleware

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/cenkalti/backoff/v4"
)

// PermanentError marks an error that must not be retried.
type PermanentError struct{ Err error }

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
	var p *PermanentError
	if errors.As(err, &p) {
		return true
	}
	var bp *backoff.PermanentError
	return errors.As(err, &bp)
}

// PanicError is what a recovered panic becomes. Component says what
// panicked: "op", "classifier", "budget" or "provider".
type PanicError struct {
	Component string
	Key       string
	Value     any
	Stack     []byte
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
