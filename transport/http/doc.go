// Package rhttp runs net/http client requests through a recourse executor.
//
//	client := rhttp.NewClient(exec, "inventory.Get")
//	resp, err := client.Get(url)
//
// NewTransport wraps an http.RoundTripper so that each request runs under
// its key's policy: retried, hedged, broken and budgeted like any other
// recourse call, with a timeline per request.
//
// Status codes are classified by the transport: 1xx–3xx succeed; 408, 429,
// 500, 502, 503 and 504 are retryable; every other status is final. A
// Retry-After header (seconds or HTTP date) replaces the backoff before
// the next try, up to the policy's MaxRetryAfter; a longer request ends
// the call with an error wrapping middleware.ErrPushbackTooLong. Transport
// errors are retryable, except certificate errors.
//
// Only idempotent requests are retried or hedged: GET, HEAD, OPTIONS,
// TRACE, PUT and DELETE, and any request carrying an Idempotency-Key
// header. POST and PATCH make a single attempt unless the transport was
// built with AllowNonIdempotent.
//
// Request bodies are replayed on every try from Request.GetBody; a body
// without GetBody is buffered first, up to MaxReplayBody bytes (larger
// bodies are refused with ErrBodyTooLarge). Responses of abandoned tries —
// failed attempts the retry loop moves past, hedges that lost — are drained
// and closed so their connections are reused. The winning response's body
// stays readable after RoundTrip returns: per-attempt and overall deadlines
// keep bounding it until the caller closes it, but returning does not cut
// it off.
//
// A final failed status is returned as an ordinary *http.Response with a
// nil error, as net/http does; its body was buffered (up to 64 KiB) so the
// connection could be released.
package rhttp
