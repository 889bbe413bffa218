package recourse

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

// ErrNoPolicy is returned, wrapped in *NoPolicyError, when a key has no
// policy and the executor's missing-policy mode is FailureDeny.
var ErrNoPolicy = errors.New("recourse: no policy")

// ErrNoBudget is matched (errors.Is) by New's error for a policy naming a
// budget that nothing resolves (not registered with WithBudget, not
// declared by the provider, not built in), and by the Err of the
// corresponding timeline.PolicyProblem.
var ErrNoBudget = errors.New("recourse: no such budget")

// ErrNoTrigger is returned (wrapped) when a policy names a hedge trigger
// the executor lacks and the missing-trigger mode is FailureDeny; New's
// error and timeline.PolicyProblem's Err match it too.
var ErrNoTrigger = errors.New("recourse: no such hedge trigger")

// ErrNoClassifier is returned (wrapped) when a policy names a classifier
// the executor lacks and the missing-classifier mode is FailureDeny; New's
// error and timeline.PolicyProblem's Err match it too.
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

// ErrFallbackType is returned (wrapped, naming the key and both types) by
// DoValue when the key's fallback (WithFallback) supplied a value that is
// not of the call's type.
var ErrFallbackType = errors.New("recourse: fallback value of the wrong type")

// NoPolicyError reports a call refused for want of a policy.
type NoPolicyError struct {
	// Key is the key of the refused call ("payments.Charge").
	Key string
	// Err is why the provider had no policy.
	Err error
}

// Error names the key and the provider's reason, saying each once:
// `recourse: no policy for key "x" (no provider)`, not the provider's
// "no policy for key" after the executor's.
func (e *NoPolicyError) Error() string {
	head := fmt.Sprintf("recourse: no policy for key %q", e.Key)
	if e.Err == nil {
		return head
	}
	msg := e.Err.Error()
	// policy's providers say `recourse/policy: no policy for key "x"…`.
	if rest, ok := strings.CutPrefix(msg, policy.ErrNotFound.Error()+" "+strconv.Quote(e.Key)); ok {
		return head + rest
	}
	if strings.Contains(msg, strconv.Quote(e.Key)) {
		// A validation error (`policy "x": retry.max_attempts = -1: …`)
		// or the executor's own (`recourse: provider lookup for key "x"…`)
		// names the key itself.
		return "recourse: no usable policy: " + strings.TrimPrefix(msg, "recourse: ")
	}
	return head + ": " + msg
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

// unresolvedError is a name a policy refers to that nothing resolves. It
// matches its sentinel (ErrNoBudget, ErrNoTrigger, ErrNoClassifier).
type unresolvedError struct {
	key, field, name string
	kind             error
}

func (e *unresolvedError) Error() string {
	var hint string
	switch e.kind {
	case ErrNoBudget:
		hint = `no such budget (register it with WithBudget, declare it in the policy file's budgets, or use "unlimited")`
	case ErrNoTrigger:
		hint = `no such hedge trigger (register it with WithHedgeTrigger, or name a latency quantile such as "p99")`
	default:
		hint = "no such classifier (register it with WithClassifier)"
	}
	return fmt.Sprintf("policy %q: %s = %q: %s", e.key, e.field, e.name, hint)
}

func (e *unresolvedError) Unwrap() error { return e.kind }
