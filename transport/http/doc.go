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
// TRACE, PUT and DELETE, and any request carrying an Idempotency-Key or
// X-Idempotency-Key header, as net/http has it. POST and PATCH make a
// single attempt unless the transport was built with AllowNonIdempotent.
//
// A request that gets a single attempt — POST or PATCH without an
// Idempotency-Key, or any request whose key's policy allows one attempt
// and no hedge — has its body streamed to the server as given, whatever
// its size. Other requests replay their body on every try from
// Request.GetBody; a body without GetBody is read into memory first, up to
// MaxReplayBody bytes (larger bodies are refused with ErrBodyTooLarge).
// That read, like the whole call, ends when the request's context or the
// policy's deadlines do, even if the body blocks. GetBody itself takes no
// context: like net/http, which calls it to resend a request, the
// transport calls it on the try's goroutine, so a GetBody that blocks
// holds its try — and the call, which awaits every try — until it
// returns. A body it returns that blocks in Read is cut by the deadlines. Like any
// http.RoundTripper, the transport never modifies the request and always
// closes its body. Each try sends a shallow copy of it with a context and
// a body of its own; the copies share the caller's header and URL, so the
// base RoundTripper must not modify them either (http.RoundTripper's own
// rule), since hedged tries run at once.
//
// A try's context behaves as a context.WithCancelCause child of the
// caller's: the same values, the earliest of the caller's and the
// policy's deadlines, and the error and cause of whichever ends it first,
// for it and for every context derived from it. Once anybody waits on it,
// it is one: the caller's cancellation has ended it, and every context
// derived from it, by the time the caller's cancel function returns,
// whatever the policy.
//
// Responses of abandoned tries — failed attempts the retry loop moves
// past, hedges that lost — are drained (a little, briefly) and closed so
// their connections are reused. A short failed body is read ahead while
// the retry loop decides, and the retry waits a few milliseconds at most
// for that read to end, so that even an immediate retry (Retry-After: 0)
// goes out on the same connection. The winning response's body stays
// readable after RoundTrip returns: per-attempt and overall deadlines keep
// bounding it until the caller closes it, but returning does not cut it
// off. As with net/http, a body read to its end (io.EOF) releases what its
// try held, closed or not; the caller must still close a body it does not
// read to the end. A 101 Switching Protocols response keeps a body that is an
// io.ReadWriteCloser, as net/http's, so upgrades work through the
// transport.
//
// A final failed status is returned as an ordinary *http.Response with a
// nil error, as net/http does, with its whole body, which the caller must
// close; like a winning response's, it stays readable after RoundTrip
// returns, bounded by the per-attempt and overall deadlines.
package rhttp
