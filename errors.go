package recourse

import (
	"errors"
	"fmt"

	"github.com/recourse-go/recourse/middleware"
)

// ErrNoPolicy is returned, wrapped in *NoPolicyError, when a key has no
// policy and the executor's missing-policy mode is FailureDeny.
var ErrNoPolicy = errors.New("recourse: no policy")

// ErrNoTrigger is returned (wrapped) when a policy names a hedge trigger
// the executor lacks and the missing-trigger mode is FailureDeny.
var ErrNoTrigger = errors.New("recourse: no such hedge trigger")

// ErrNoClassifier is returned (wrapped) when a policy names a classifier
// the executor lacks and the missing-classifier mode is FailureDeny.
var ErrNoClassifier = errors.New("recourse: no such classifier")

// ErrNilContext is returned (wrapped, naming the key) by a call given a
// nil context.Context; the call is not made. Pass context.Background() or
// context.TODO() instead. (The standard library panics on a nil Context;
// recourse returns an error, so that a resilience wrapper never crashes
// its caller.)
var ErrNilContext = errors.New("recourse: nil Context")

// ErrNilExecutor is returned (wrapped, naming the key) by a call on a nil
// *Executor. The zero Executor (var e recourse.Executor) is usable; a nil
// pointer to one is not.
var ErrNilExecutor = errors.New("recourse: nil *Executor")

// ErrNilOperation is returned (wrapped, naming the key) by a call given a
// nil operation or a nil go-kit endpoint to decorate.
var ErrNilOperation = errors.New("recourse: nil operation")

// NoPolicyError reports a call refused for want of a policy.
type NoPolicyError struct {
	Key string
	// Err is why the provider had no policy.
	Err error
}

// Error names the key and the provider's reason.
func (e *NoPolicyError) Error() string {
	return fmt.Sprintf("recourse: no policy for key %q: %v", e.Key, e.Err)
}

// Is reports whether target is ErrNoPolicy.
func (e *NoPolicyError) Is(target error) bool { return target == ErrNoPolicy }

// Unwrap returns the provider's error.
func (e *NoPolicyError) Unwrap() error { return e.Err }

// PanicError is what a recovered panic in an operation, classifier, budget
// or provider becomes. It is recorded in the call's timeline.
type PanicError = middleware.PanicError

// Permanent marks err as non-retryable: the call stops after the attempt
// that returned it. errors.Unwrap gives err back; Permanent(nil) is nil.
func Permanent(err error) error { return middleware.Permanent(err) }
