// Package fleet shares recourse's retry budget and circuit-breaker signal
// across every replica of a service, through Redis.
//
// Budgets and breakers are per process. A service of 100 replicas gives
// its dependency 100 budget floors and 100 trip thresholds: in an outage
// the fleet still multiplies the load, and every replica must find out
// about the outage by itself. This package gives the fleet one budget and
// one "this dependency is down" signal. It lives in a module of its own
// (github.com/recourse-go/recourse/fleet), so that importing recourse
// brings in no Redis client.
//
// # The fleet budget
//
// NewBudget returns a middleware.Budget shared by every replica that uses
// the same name on the same Redis: retries and hedges, fleet-wide, stay
// within Ratio × first tries + Floor × window over a sliding window.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379"})
//	retries := fleet.NewBudget(rdb, "payments", fleet.Ratio(0.1), fleet.Floor(1))
//	defer retries.Close()
//	exec := recourse.NewExecutor(
//		recourse.WithBudget("payments-retries", retries),
//		recourse.WithPolicy("payments.Charge", policy.WithBudget("payments-retries")),
//	)
//
// What it costs a call:
//
//   - A first try never waits on Redis. It is counted in memory and the
//     counts are sent every FlushInterval (250ms), and with every retry
//     decision, in one pipelined script run.
//   - A retry or hedge is decided by one script on Redis — one round trip,
//     on Redis's clock (TIME), so replicas' clocks do not matter — within
//     DecisionTimeout (20ms). A replica that decides often takes a small
//     lease of tokens (MaxLease, up to 8) and spends it locally; leased
//     tokens are charged to the fleet when taken, so leases never let the
//     fleet exceed its budget.
//   - When Redis fails or is slow, the fallback budget decides (by default
//     a local ratio budget with the same numbers — bounded, never
//     unlimited, and never a failed call) and the decision's reason says
//     so ("fleet_fallback:ratio_available"). Redis is left alone for the
//     ProbeInterval (1s), then asked again; the fleet budget resumes as soon
//     as it answers, even restarted empty.
//
// A budget keeps one hash, "recourse:fleet:{name}:budget": the hash tag
// keeps it on one Redis Cluster node, and it expires two windows after its
// last use.
//
// # The fleet breaker signal
//
// A BreakerSignal keeps each replica's own circuit breakers and shares
// their state. Every poll (250ms, and at once when a local breaker opens)
// it reports, per key, whether this replica's own breaker is open, and
// reads how many replicas report the key and how many say open. When a
// quorum says open — 3 replicas or 50 % by default — it holds this
// replica's breaker open (middleware.CircuitBreaker.ForceOpen), so that a
// replica with little traffic need not fail five calls of its own to
// learn what the fleet knows. Replicas whose own breaker opened are never
// held: they probe half-open as usual, and when their probes succeed the
// quorum ends and the held breakers are released (Reset). A replica that
// cannot reach Redis releases what it holds and decides alone.
//
// # Why not gobreaker's DistributedCircuitBreaker
//
// gobreaker/v2 ships a DistributedCircuitBreaker that keeps one breaker's
// state in a shared store. It is not used on the call path: it locks the
// shared state for the whole of every call, so that a key admits one call
// at a time across the fleet, costs several store operations per call, and
// returns the store's error as the call's when the store is down. The
// signal here costs calls nothing (it runs beside them) and fails open to
// the local breakers.
package fleet
