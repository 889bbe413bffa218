// Package transport measures recourse's client integrations — rhttp's
// RoundTripper and rgrpc's unary interceptor — against the clients a user
// would pick instead, on the same servers, in the same run:
//
//   - HTTP: plain net/http (and a hand-written retry loop or hedge, the
//     floor), hashicorp/go-retryablehttp, failsafe-go's failsafehttp and
//     gojek/heimdall, on a keep-alive loopback server and in memory (a
//     RoundTripper that answers without sockets);
//   - gRPC: plain grpc-go (and a hand-written retry, the floor), grpc-go's
//     own retry from the service config and failsafe-go's failsafegrpc, over
//     loopback TCP and bufconn, on the health service and a hand-described
//     service with large replies (no generated code).
//
// A Scenario is one workload (success, one retry, a hedged GET against a
// stalled first try, a large reply) and its Cases are the clients under
// test. Run measures the cases in rounds: each round runs every case for
// the same number of calls, one after another, so that what disturbs a
// round (other processes, the garbage collector, CPU frequency) disturbs
// every case in it. A case's overhead is its time per call minus the
// floor's in the same round; the report gives the median of those paired
// differences and their quartiles, which the noise of loopback networking
// moves far less than the raw times. Each case also reports the new TCP
// connections the server accepted per call (a client that closes a failed
// response without draining it pays a new connection on every retry) and
// the server handlers still running when calls returned.
//
// The benchmarks in this package run each case b.N times and are meant to
// stay fast at -benchtime=1x; the long comparison is cmd/transport:
//
//	cd bench && go run ./cmd/transport -rounds 15 > results/transport.txt
package transport
