package middleware

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// JitterMode selects how a backoff delay is randomised. (policy.JitterKind is
// the same type under the name policies use.)
type JitterMode uint8

const (
	// JitterNone waits exactly the exponential delay.
	JitterNone JitterMode = iota
	// JitterFull waits a uniform random delay in [0, d].
	JitterFull
	// JitterEqual waits d/2 plus a uniform random delay in [0, d/2].
	JitterEqual
	// JitterDecorrelated waits a uniform random delay in
	// [initial, 3 × previous delay], capped at the maximum.
	JitterDecorrelated
)

// String returns "none", "full", "equal" or "decorrelated".
func (j JitterMode) String() string {
	switch j {
	case JitterNone:
		return "none"
	case JitterFull:
		return "full"
	case JitterEqual:
		return "equal"
	case JitterDecorrelated:
		return "decorrelated"
	}
	return "unknown"
}

// BackoffConfig is the shape of a retry schedule.
type BackoffConfig struct {
	// Initial is the delay before the first retry, before jitter. Zero
	// (or negative) makes every delay zero: retries follow one another
	// without waiting.
	Initial time.Duration
	// Max caps each delay, before jitter (and the range of
	// JitterDecorrelated). Zero means the default cap, 250ms, or Initial
	// if that is larger; a Max below Initial is raised to Initial.
	Max time.Duration
	// Multiplier is the factor each delay grows by over the one before,
	// up to Max: 2 doubles it, 1 keeps it constant. Zero (or anything
	// below 1, or NaN) means the default, 2.
	Multiplier float64
	// Jitter selects how each delay is randomised. The zero value,
	// JitterNone, waits the exact exponential delay.
	Jitter JitterMode
}

// defaultMaxBackoff is the cap of a BackoffConfig whose Max is zero.
const defaultMaxBackoff = 250 * time.Millisecond

// withDefaults fills in the zero fields as BackoffConfig documents.
func (c BackoffConfig) withDefaults() BackoffConfig {
	c.Initial = max(c.Initial, 0)
	if c.Max <= 0 {
		c.Max = max(defaultMaxBackoff, c.Initial)
	}
	c.Max = max(c.Max, c.Initial)
	if !(c.Multiplier >= 1) {
		c.Multiplier = 2
	}
	return c
}

// schedule yields the delays of one call. The exponential part is
// backoff/v4's ExponentialBackOff with its own randomisation off; jitter is
// layered on top. A schedule is created only once a call needs to retry.
type schedule struct {
	cfg  BackoffConfig
	exp  backoff.ExponentialBackOff
	prev time.Duration
}

func newSchedule(cfg BackoffConfig) *schedule {
	s := &schedule{cfg: cfg, prev: cfg.Initial}
	s.exp = backoff.ExponentialBackOff{
		InitialInterval:     cfg.Initial,
		RandomizationFactor: 0,
		Multiplier:          cfg.Multiplier,
		MaxInterval:         cfg.Max,
		MaxElapsedTime:      0, // never stop: attempts are bounded by the retry loop
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	s.exp.Reset()
	return s
}

// next returns the delay before the next retry.
func (s *schedule) next() time.Duration {
	d := s.exp.NextBackOff()
	switch s.cfg.Jitter {
	case JitterFull:
		d = randIn(0, d)
	case JitterEqual:
		d = d/2 + randIn(0, d-d/2)
	case JitterDecorrelated:
		hi := 3 * s.prev
		if s.cfg.Max > 0 && hi > s.cfg.Max {
			hi = s.cfg.Max
		}
		d = randIn(s.cfg.Initial, hi)
		s.prev = d
	}
	return d
}

// randIn returns a uniform duration in [lo, hi].
func randIn(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}
