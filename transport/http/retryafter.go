package rhttp

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfterSeconds keeps a parsed delay inside time.Duration.
const maxRetryAfterSeconds = int64(1<<63-1) / int64(time.Second)

// ParseRetryAfter parses a Retry-After header value: delay-seconds
// ("120") or an HTTP date, taken relative to now. A date in the past gives
// 0. ok is false for an empty or malformed value. The result is never
// negative and never overflows.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			if ne, isNum := err.(*strconv.NumError); isNum && ne.Err == strconv.ErrRange && allDigits(v) {
				return time.Duration(maxRetryAfterSeconds) * time.Second, true
			}
			return 0, false
		}
		if secs > maxRetryAfterSeconds {
			secs = maxRetryAfterSeconds
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
