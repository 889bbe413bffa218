package timeline_test

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse/timeline"
)

func ExampleNewZerologObserver() {
	obs := timeline.NewZerologObserver(zerolog.New(os.Stdout))
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	obs.OnAttempt(context.Background(), "payments.Charge", timeline.AttemptRecord{
		Attempt: 1, StartTime: start, EndTime: start.Add(120 * time.Millisecond),
		Outcome: timeline.OutcomeRetryable, Reason: timeline.ReasonTimeout, Err: errors.New("deadline"),
	})
	// Output: {"level":"warn","event":"attempt","key":"payments.Charge","attempt":1,"hedge_index":0,"duration_ms":120,"outcome":"retryable","reason":"timeout","error":"deadline","message":"recourse attempt"}
}
