package timeline

import (
	"fmt"
	"time"
)

// Outcome is how a classifier judged one try.
type Outcome uint8

const (
	// OutcomeUnknown is the zero value: the try has not been classified.
	OutcomeUnknown Outcome = iota
	// OutcomeSuccess: the try succeeded; the call is done.
	OutcomeSuccess
	// OutcomeRetryable: the try failed in a way another try may fix.
	OutcomeRetryable
	// OutcomeNonRetryable: the try failed in a way no retry will fix.
	OutcomeNonRetryable
	// OutcomeAbort: the call must stop now (caller cancelled, deadline
	// passed, budget or breaker refused).
	OutcomeAbort
)

// String returns the outcome's stable lower-case name.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeRetryable:
		return "retryable"
	case OutcomeNonRetryable:
		return "non_retryable"
	case OutcomeAbort:
		return "abort"
	}
	return "unknown"
}

// Reason codes explain an attempt's outcome. They are stable strings.
const (
	ReasonSuccess        = "success"
	ReasonRetryable      = "retryable"
	ReasonNonRetryable   = "non_retryable"
	ReasonTimeout        = "timeout"
	ReasonCanceled       = "canceled"
	ReasonCircuitOpen    = "circuit_open"
	ReasonBudgetDenied   = "budget_denied"
	ReasonHedgeWon       = "hedge_won"
	ReasonHedgeLost      = "hedge_lost"
	ReasonRetryAfter     = "retry_after"
	ReasonPolicyFallback = "policy_fallback"
	// ReasonNoPolicy: the key has no policy and the missing-policy mode
	// denies its calls; the operation was not called.
	ReasonNoPolicy = "no_policy"
	ReasonPanic    = "panic"
	// ReasonPolicyError: the key's policy cannot run as written — it names
	// a classifier or hedge trigger that does not exist while the
	// missing-name mode denies, or it does not compile — so its calls are
	// refused; the operation was not called. The timeline's attributes
	// say why (AttrClassifierError, AttrTriggerError, AttrPolicyError).
	ReasonPolicyError = "policy_error"
	// ReasonBulkheadFull: the key's bulkhead (fixed or adaptive) had no
	// room for the try within its wait bound; the operation was not called.
	ReasonBulkheadFull = "bulkhead_full"
	// ReasonFallback: the call failed and the key's fallback supplied its
	// result. The failed tries stay in the timeline before it.
	ReasonFallback = "fallback"
)

// Refused reports whether reason says a try was refused before it ran —
// by a budget (ReasonBudgetDenied), an open circuit (ReasonCircuitOpen), a
// full bulkhead (ReasonBulkheadFull), or because the key's calls may not
// run at all (ReasonNoPolicy, ReasonPolicyError) — and so never reached
// the dependency: not retried, not counted by the breaker, not a try in
// metrics.
func Refused(reason string) bool {
	switch reason {
	case ReasonBudgetDenied, ReasonCircuitOpen, ReasonBulkheadFull, ReasonNoPolicy, ReasonPolicyError:
		return true
	}
	return false
}

// Attribute names set on Timeline.Attributes by the executor. These are
// every key the executor writes; values are for humans unless said
// otherwise.
const (
	// AttrPolicySource says where the key's policy came from: "static"
	// (recourse.WithPolicy), the provider's source ("file:PATH", with
	// " (stale: …)" while its last reload failed), or, for a key without
	// a usable policy, the missing-policy mode's "policy_fallback",
	// "allow" or "deny".
	AttrPolicySource = "policy_source"
	// AttrPolicyNormalized is "true" when Normalize clamped the policy.
	AttrPolicyNormalized = "policy_normalized"
	// AttrPolicyClampedFields lists the clamped fields, comma-separated.
	AttrPolicyClampedFields = "policy_clamped_fields"
	// AttrPolicyError says why the key's own policy is not in force: the
	// provider's error or the policy's validation errors.
	AttrPolicyError = "policy_error"
	// AttrMissingPolicyMode is the missing-policy mode applied ("fallback",
	// "allow", "deny") when the key has no usable policy.
	AttrMissingPolicyMode = "missing_policy_mode"
	// AttrBudgetError names every budget the policy refers to (budget,
	// hedge.budget) that the executor could not resolve, and the
	// missing-budget mode applied.
	AttrBudgetError = "budget_error"
	// AttrTriggerError names the hedge trigger the policy refers to that
	// the executor could not resolve, and what hedges instead — or, when
	// the missing-trigger mode denies, that the key's calls are refused.
	AttrTriggerError = "trigger_error"
	// AttrClassifierError names the classifier the policy refers to that
	// the executor could not resolve, and what classifies instead — or,
	// when the missing-classifier mode denies, that the key's calls are
	// refused.
	AttrClassifierError = "classifier_error"
)

// AttemptRecord is one try of a call.
type AttemptRecord struct {
	// Attempt is the 1-based attempt number; hedges share their attempt's.
	Attempt int
	// HedgeIndex is 0 for the primary try and 1, 2, … for hedges.
	HedgeIndex int
	// Hedge reports whether this try was a hedge (HedgeIndex > 0).
	Hedge bool
	// StartTime and EndTime bound the try. A try refused before it ran
	// (budget, breaker) has EndTime == StartTime.
	StartTime, EndTime time.Time
	// Outcome is the classifier's verdict.
	Outcome Outcome
	// Reason is a stable reason code (Reason* constants).
	Reason string
	// Err is the try's error, nil on success.
	Err error
	// Status is the protocol status of the try when its transport reports
	// one ("503", "UNAVAILABLE"); empty otherwise.
	Status string
	// Backoff is how long the call waited after this try before the next.
	Backoff time.Duration
}

// Duration returns EndTime - StartTime.
func (r AttemptRecord) Duration() time.Duration { return r.EndTime.Sub(r.StartTime) }

// Timeline is the record of one call.
type Timeline struct {
	// Key is the call's policy key as "namespace.name".
	Key string
	// PolicyID is the optional identifier of the policy in force.
	PolicyID string
	// Start and End bound the whole call.
	Start, End time.Time
	// Attempts holds one record per try, in the order tries ended.
	Attempts []AttemptRecord
	// Err is the error the call returned.
	Err error
	// Attributes carry facts about policy resolution (Attr* constants).
	Attributes map[string]string
}

// Duration returns End - Start.
func (t *Timeline) Duration() time.Duration { return t.End.Sub(t.Start) }

// String renders the timeline on one line per attempt, for humans.
func (t *Timeline) String() string {
	s := fmt.Sprintf("%s: %d attempt(s) in %v, err=%v", t.Key, len(t.Attempts), t.Duration(), t.Err)
	for _, a := range t.Attempts {
		s += fmt.Sprintf("\n  #%d", a.Attempt)
		if a.Hedge {
			s += fmt.Sprintf(" hedge %d", a.HedgeIndex)
		}
		s += fmt.Sprintf(" %s (%s) in %v", a.Outcome, a.Reason, a.Duration())
		if a.Status != "" {
			s += " status=" + a.Status
		}
		if a.Err != nil {
			s += fmt.Sprintf(" err=%v", a.Err)
		}
		if a.Backoff > 0 {
			s += fmt.Sprintf(" then wait %v", a.Backoff)
		}
	}
	return s
}
