package rhttp

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// StatusError is the error of a try that got a failed HTTP status. It
// carries the server's Retry-After, if any, as pushback.
type StatusError struct {
	// Code is the status code (503).
	Code int
	// Status is the status text as the response gave it, code included
	// ("503 Service Unavailable").
	Status string
	// After is the delay the server asked for (Retry-After), 0 if none.
	After time.Duration
}

// Error returns "http status 503 Service Unavailable".
func (e *StatusError) Error() string { return "http status " + e.Status }

// RetryAfter returns the server's requested delay (middleware.Pushback).
func (e *StatusError) RetryAfter() time.Duration { return e.After }

// AttemptStatus returns the code, for timelines.
func (e *StatusError) AttemptStatus() string { return strconv.Itoa(e.Code) }

// IsRetryableStatus reports whether a request answered with code may be
// tried again: 408, 429, 500, 502, 503, 504.
func IsRetryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// IsSuccessStatus reports whether code is a success (below 400).
func IsSuccessStatus(code int) bool { return code < 400 }

// Classifier classifies *http.Response results and transport errors by
// the rules of this package. The transport applies those rules itself;
// Classifier is for chains built by hand around endpoints that return
// *http.Response.
type Classifier struct{}

// Classify implements middleware.Classifier.
func (Classifier) Classify(_ context.Context, resp any, err error) middleware.Verdict {
	if err != nil {
		if isCertificateError(err) {
			return middleware.Verdict{Outcome: timeline.OutcomeNonRetryable, Reason: timeline.ReasonNonRetryable}
		}
		return middleware.Verdict{} // default rules
	}
	var r *http.Response
	switch v := resp.(type) {
	case *http.Response:
		r = v
	case *response:
		r = v.Response
	default:
		return middleware.Verdict{}
	}
	switch {
	case IsSuccessStatus(r.StatusCode):
		return middleware.Verdict{Outcome: timeline.OutcomeSuccess, Reason: timeline.ReasonSuccess}
	case IsRetryableStatus(r.StatusCode):
		v := middleware.Verdict{Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonRetryable}
		if d, ok := ParseRetryAfter(r.Header.Get("Retry-After"), time.Now()); ok && d > 0 {
			v.RetryAfter, v.Reason = d, timeline.ReasonRetryAfter
		}
		return v
	}
	return middleware.Verdict{Outcome: timeline.OutcomeNonRetryable, Reason: timeline.ReasonNonRetryable}
}

func isCertificateError(err error) bool {
	var (
		ua x509.UnknownAuthorityError
		ci x509.CertificateInvalidError
		hn x509.HostnameError
	)
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &hn)
}
