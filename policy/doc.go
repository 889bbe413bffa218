// Package policy says how calls for a key may be retried, hedged, broken
// and bounded, and compiles that into a chain of decorators.
//
// A call site names a stable, low-cardinality Key ("payments.Charge"). A
// Provider resolves the key to a Policy; Normalize clamps every field into
// safe bounds and reports what it changed; the Compiler turns the policy
// into an endpoint.Middleware whose decorators run in a fixed order,
// outermost first:
//
//	observe → fallback → overall timeout → retry → breaker → hedge → bulkhead → budget → per-attempt timeout → classify
//
// The fallback (recourse.WithFallback) sees the call's final error. The
// bulkhead bounds tries, not calls: it sits inside the hedge so that a
// hedge needs a slot too (one that finds none is not sent), and before the
// budget so that a refused try spends no token; its refusals are aborts,
// neither retried into the same full bulkhead nor counted by the breaker.
//
// A section the policy does not enable is not compiled at all, so a call
// pays only for what its policy asks for. Most programs never call the
// compiler: they hand policies to the root package's executor
// (recourse.WithPolicy, or recourse.WithProvider with a FileProvider).
//
// Policies are built with functional options over safe defaults:
//
//	p := policy.New("payments.Charge",
//		policy.HTTPDefaults(),
//		policy.MaxAttempts(2),
//		policy.TimeoutPerAttempt(800*time.Millisecond),
//	)
//
// # Policy files
//
// NewFileProvider (and NewRemoteProvider, over HTTP) serve policies from a
// file that Parse reads: YAML, or JSON (same shape) for a ".json" name.
// Durations are Go duration strings ("250ms", "2s"); keys are
// "namespace.name". The file has three top-level sections, each optional,
// but it must have policies or a default section:
//
//	budgets:                      # named budgets (see Budgets below)
//	  retries: {kind: ratio, ratio: 0.1, min_per_second: 1, window: 10s}
//	  hedges:  {kind: token_bucket, capacity: 50, refill_per_second: 10}
//	  outage:  {kind: throttle, max_tokens: 10, token_ratio: 0.1}
//	default:                      # for keys the file does not name
//	  retry: {max_attempts: 3, initial_backoff: 10ms, max_backoff: 250ms, multiplier: 2, jitter: full}
//	policies:
//	  payments.Charge:
//	    id: payments-v3
//	    retry: {max_attempts: 2, initial_backoff: 50ms, max_backoff: 1s, multiplier: 2, jitter: equal,
//	            timeout_per_attempt: 800ms, overall_timeout: 2s}
//	    hedge: {enabled: true, delay: 20ms, quantile: 0.99, max_hedges: 1, budget: hedges}
//	    circuit: {enabled: true, consecutive_failures: 5, cooldown: 10s, half_open_probes: 1}
//	    budget: retries
//	  pricing.Get:
//	    hedge: {enabled: true, delay: 10ms, trigger: p90}
//	    budget: unlimited
//
// A key's policy is Defaults(), then the default section, then the key's
// own section. The fields of a policy section, with the Policy fields they
// set:
//
//	id                                   Policy.ID
//	retry.max_attempts                   RetryPolicy.MaxAttempts (≥ 1)
//	retry.initial_backoff, max_backoff   RetryPolicy.InitialBackoff, MaxBackoff
//	retry.multiplier                     RetryPolicy.Multiplier
//	retry.jitter                         none, full, equal or decorrelated
//	retry.timeout_per_attempt            RetryPolicy.TimeoutPerAttempt (0: none)
//	retry.overall_timeout                RetryPolicy.OverallTimeout (0: none)
//	retry.max_retry_after                RetryPolicy.MaxRetryAfter
//	hedge.enabled, delay, quantile       HedgePolicy.Enabled, Delay, Quantile (in (0, 1); 0: fixed delay)
//	hedge.max_hedges                     HedgePolicy.MaxHedges
//	hedge.budget                         HedgePolicy.Budget (empty: the policy's budget)
//	hedge.trigger                        HedgePolicy.Trigger
//	circuit.enabled, consecutive_failures, cooldown, half_open_probes,
//	circuit.failure_ratio, window, min_requests   CircuitPolicy fields
//	circuit.cooldown_jitter              CircuitPolicy.CooldownJitter (in [0, 1])
//	circuit.slow_call_duration, slow_call_rate    CircuitPolicy.SlowCallDuration, SlowCallRate
//	bulkhead.max_concurrent, max_wait    BulkheadPolicy.MaxConcurrent, MaxWait
//	bulkhead.adaptive                    BulkheadPolicy.Adaptive (limit follows latency, max_concurrent its ceiling)
//	budget, budget_cost                  Policy.Budget, Policy.BudgetCost
//	classifier                           Policy.Classifier
//
// # Errors and bounds
//
// Parse is strict, and reports every problem, not only the first: an
// unknown field, a value of the wrong type, a key or field given twice (in
// JSON as in YAML; YAML 1.1's merge key << is not accepted, since it lets
// a field be given twice unseen — anchors and aliases are), and the hard errors of Validate (a negative duration or
// count, an unknown jitter, hedging with no delay, quantile or trigger) are
// each a *FieldError naming the key (or budget), the field and the value,
// joined one per line. An empty or comment-only file is ErrNoPolicies,
// never an empty set, and a section left empty (a key with nothing after
// it, or JSON null — what a file cut short while being written looks like)
// is an error: a section that sets nothing is written {}. Values that mean something but are out of bounds are
// not errors: Normalize clamps them and names them, with the same rules
// for a policy built in Go and one read from a file — an initial_backoff
// above max_backoff (given, or inherited from the defaults) raises
// max_backoff to it and reports "retry.max_backoff".
//
// # Budgets
//
// The budgets section declares named budgets, each a BudgetSpec; a policy
// refers to one by name (budget, hedge.budget). The kinds and their fields:
//
//	ratio          ratio (> 0, required), min_per_second (≥ 0; 0 means no floor),
//	               window (≥ 10ms; 0 or unset means 10s)    → middleware.NewRatioBudget
//	token_bucket   capacity (≥ 1, required), refill_per_second (≥ 0; 0 means none)
//	                                                        → middleware.NewTokenBucketBudget
//	throttle       max_tokens (in (0, 1000], required), token_ratio (in (0, 1000], required)
//	                                                        → middleware.NewThrottleBudget
//
// A field of another kind, an unknown kind, or a value out of these ranges
// (NaN included) is an error naming the budget, the field and the value:
// `budget "retries": ratio = -0.5: must be above 0`. The name "unlimited"
// cannot be declared: it is built in.
//
// FileProvider and RemoteProvider build the declared budgets and serve
// them as a BudgetSource. The executor resolves a budget name a policy
// uses in this order: a budget registered in code (recourse.WithBudget),
// then one the provider declares, then the built-in BudgetUnlimited, else
// its missing-budget mode applies (by default every retry and hedge is
// refused, and the timeline attribute budget_error names every missing
// budget). A reload that changes a budget's declaration builds a new
// budget; one that leaves it alone keeps the same budget and its state.
//
// # Built-in names
//
// Besides declared budgets, a policy may name with nothing registered: the
// budget "unlimited" (BudgetUnlimited), which admits every try, and the
// hedge triggers "pNN" and "pNN.N" ("p90", "p99", "p99.9"; see
// QuantileTrigger), which hedge when a try outlives that quantile of the
// key's recent latencies, on the policy's delay until they are known. No
// classifier is built in: a classifier a policy names must be registered
// in code (recourse.WithClassifier), as must any other trigger
// (recourse.WithHedgeTrigger).
//
// Parse does not check that the names a policy uses exist, since a program
// may register them in code. The recourse command does: `recourse check
// FILE` fails on a budget, trigger or classifier that is neither declared
// nor built in, unless given as --external NAME.
package policy
