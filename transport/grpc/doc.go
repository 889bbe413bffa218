// Package rgrpc runs gRPC client calls through a recourse executor.
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(exec)),
//		grpc.WithStreamInterceptor(rgrpc.StreamClientInterceptor(exec)))
//
// Each call's key comes from its method: "/pkg.Service/Method" becomes
// "pkg.Service.Method" (WithKey and WithKeyFunc override it). Deadlines
// propagate: the per-attempt and overall timeouts of the key's policy
// become the deadlines gRPC sends to the server.
//
// Status codes are classified by the interceptors: Unavailable, Aborted
// and DeadlineExceeded (of an attempt, or reported by the server) are
// retryable; ResourceExhausted is retryable only when the server sent
// retry pushback, since retrying an exhausted quota makes it worse; every
// other code is final. A Canceled or DeadlineExceeded status of a try
// whose own context has ended is judged by that context instead: the
// caller's cancellation or deadline aborts the call (reason "canceled" or
// "timeout"), the try's own deadline is a retryable timeout. Server pushback — the grpc-retry-pushback-ms
// trailer — replaces the backoff before the next try; a negative or
// malformed value means "do not retry". The caller receives the last
// try's own status error.
//
// Replies cost what they cost without recourse: a unary call's tries
// decode straight into the caller's reply, one after another. Only a
// hedge, which runs beside its attempt's primary try, decodes into a
// message of its own; when a hedge wins, its fields are handed over to
// the caller's reply without copying their content. So hedged tries never
// share a reply; replies that are not a proto.Message are retried but
// not hedged. A retried or hedged try sends the grpc-previous-rpc-attempts
// header (PreviousAttemptsHeader) with the number of tries of the call
// started before it, as gRPC's own retries do. Likewise each try of a unary call gets its own
// header, trailer and peer: the caller's grpc.Header, grpc.Trailer and
// grpc.Peer variables receive those of the try whose result the call
// returns, and grpc.OnFinish functions run once per call, with its error.
//
// Streams are retried only before their first response message. A
// server-streaming call's request and CloseSend are held until the first
// RecvMsg; opening the stream, sending them and receiving the first
// message then form one try, repeated under the policy. Once a message has
// been received, errors go to the caller unretried. Client- and
// bidirectional-streaming calls retry only the opening of the stream.
// Streams are never hedged. A stream's grpc.OnFinish functions run once,
// when the stream the call returned ends (or with the call's error when
// every try failed), never for the tries that were retried.
package rgrpc
