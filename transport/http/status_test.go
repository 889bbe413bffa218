package rhttp

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/recourse-go/recourse/timeline"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 120 ", 120 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"99999999999999999999999", time.Duration(maxRetryAfterSeconds) * time.Second, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Wed, 31 Foo 2026", 0, false},
	}
	for _, c := range cases {
		got, ok := ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestStatusRules(t *testing.T) {
	for code, want := range map[int]timeline.Outcome{
		200: timeline.OutcomeSuccess, 204: timeline.OutcomeSuccess, 304: timeline.OutcomeSuccess,
		408: timeline.OutcomeRetryable, 429: timeline.OutcomeRetryable, 500: timeline.OutcomeRetryable,
		502: timeline.OutcomeRetryable, 503: timeline.OutcomeRetryable, 504: timeline.OutcomeRetryable,
		400: timeline.OutcomeNonRetryable, 401: timeline.OutcomeNonRetryable, 404: timeline.OutcomeNonRetryable,
		409: timeline.OutcomeNonRetryable, 501: timeline.OutcomeNonRetryable,
	} {
		resp := &http.Response{StatusCode: code, Header: http.Header{}}
		if got := (Classifier{}).Classify(context.Background(), resp, nil).Outcome; got != want {
			t.Errorf("status %d: %v, want %v", code, got, want)
		}
	}
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"3"}}}
	if v := (Classifier{}).Classify(context.Background(), resp, nil); v.RetryAfter != 3*time.Second || v.Reason != timeline.ReasonRetryAfter {
		t.Errorf("429 with Retry-After: %+v", v)
	}
	se := &StatusError{Code: 503, Status: "503 Service Unavailable", After: time.Second}
	var target *StatusError
	if !errors.As(error(se), &target) || se.AttemptStatus() != "503" || se.RetryAfter() != time.Second {
		t.Error("StatusError accessors")
	}
}
