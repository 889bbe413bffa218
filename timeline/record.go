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
	ReasonNoPolicy       = "no_policy"
	ReasonPanic          = "panic"
)

// Attribute names set on Timeline.Attributes by the executor.
const (
	AttrPolicySource        = "policy_source"
	AttrPolicyNormalized    = "policy_normalized"
	AttrPolicyClampedFields = "policy_clamped_fields"
	AttrPolicyError         = "policy_error"
	AttrMissingPolicyMode   = "missing_policy_mode"
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
