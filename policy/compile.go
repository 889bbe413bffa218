package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/internal/mwopt"
	"github.com/recourse-go/recourse/internal/policyopt"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/timeline"
)

// Compiler turns a Policy into a chain of decorators. Its fields are the
// shared things a chain needs that a policy only names; the executor fills
// them per key. The zero Compiler compiles with the real clock, no
// observer, the default classifier and panics in classifiers recovered.
type Compiler struct {
	// Observer receives the chain's events; nil means none.
	Observer timeline.Observer
	// Clock drives backoff sleeps and timeline stamps; nil means clock.Real.
	Clock clock.Clock
	// Classifier judges each try; nil means middleware.DefaultClassifier.
	Classifier middleware.Classifier
	// Attributes are copied into every timeline of the chain.
	Attributes map[string]string
	// NoRecover lets panics in classifiers, budgets and on hedge
	// goroutines (the operation or an observer run by a hedged try) be
	// raised on the caller's goroutine instead of becoming
	// *middleware.PanicError.
	NoRecover bool

	// Breaker is the key's circuit breaker, shared by all its calls. When
	// the policy enables the breaker and Breaker is nil, Compile makes a
	// new one from the policy (state then lives with the chain).
	Breaker *middleware.CircuitBreaker
	// Budget is the budget the policy's Budget names; it is not used when
	// that name is empty. A named budget not given is an error.
	Budget middleware.Budget
	// HedgeBudget is the budget the policy's Hedge.Budget names; it is
	// used only when the policy enables hedging and names one, and hedges
	// otherwise take their tokens from the policy's Budget. A named budget
	// not given is an error.
	HedgeBudget middleware.Budget
	// Trigger overrides the hedge trigger the policy describes.
	Trigger hedge.Trigger
	// Tracker holds the key's recent latencies for a latency-aware
	// trigger; nil gives the chain its own.
	Tracker *hedge.LatencyTracker
	// Limiter is the key's bulkhead, shared by all its calls. When the
	// policy enables the bulkhead and Limiter is nil, Compile makes a new
	// one from the policy (state then lives with the chain).
	Limiter middleware.Limiter
	// Fallback, when set, supplies a failed call's result (see
	// middleware.Fallback); it runs just inside observe.
	Fallback middleware.FallbackFunc
}

// Stage is one decorator of a compiled chain, described for humans.
type Stage struct {
	// Name is the decorator: observe, fallback, overall_timeout, retry,
	// breaker, hedge, bulkhead, budget, attempt_timeout or classify.
	Name string
	// Detail states its settings.
	Detail string
}

// String returns "name(detail)".
func (s Stage) String() string { return s.Name + "(" + s.Detail + ")" }

// Compiled is a policy ready to run.
type Compiled struct {
	// Policy is the normalized policy the chain was built from.
	Policy Policy
	// Middleware is the chain, outermost first; apply it to the endpoint
	// that performs one try.
	Middleware endpoint.Middleware
	// Stages describe the chain in order, outermost first.
	Stages []Stage
}

// Describe renders the chain one stage per line, in order.
func (c *Compiled) Describe() string {
	var b strings.Builder
	for i, s := range c.Stages {
		fmt.Fprintf(&b, "%d. %-16s %s\n", i+1, s.Name, s.Detail)
	}
	return b.String()
}

// Compile normalizes p and builds its chain: observe → fallback → overall
// timeout → retry → breaker → hedge → bulkhead → budget → per-attempt
// timeout → classify.
// Sections the policy leaves off are not compiled in. A policy naming a
// budget the compiler was not given is refused with an error naming the
// field and the value.
func (c *Compiler) Compile(p Policy) (*Compiled, error) {
	p, _ = p.Normalize()
	key := p.Key.String()
	var (
		mws    []endpoint.Middleware
		stages []Stage
	)
	add := func(mw endpoint.Middleware, name, detail string) {
		mws = append(mws, mw)
		stages = append(stages, Stage{Name: name, Detail: detail})
	}

	add(middleware.Observe(key,
		middleware.WithObserver(c.Observer),
		middleware.WithClock(c.Clock),
		mwopt.WithAttributes.(func(map[string]string) middleware.Option)(c.Attributes),
		mwopt.WithPolicyID.(func(string) middleware.Option)(p.ID),
	), "observe", "key="+key+idDetail(p.ID))

	if c.Fallback != nil {
		var fopts []middleware.Option
		if !c.NoRecover {
			fopts = append(fopts, mwopt.RecoverFallbackPanics.(func(string) middleware.Option)(key))
		}
		add(middleware.Fallback(c.Fallback, fopts...), "fallback", "on the call's final error")
	}

	r := p.Retry
	if r.OverallTimeout > 0 {
		add(middleware.OverallTimeout(r.OverallTimeout), "overall_timeout", r.OverallTimeout.String())
	}
	add(middleware.Retry(
		middleware.MaxAttempts(r.MaxAttempts),
		middleware.WithBackoff(middleware.BackoffConfig{Initial: r.InitialBackoff, Max: r.MaxBackoff, Multiplier: r.Multiplier, Jitter: r.Jitter}),
		middleware.WithClock(c.Clock),
		middleware.RetryKey(key, p.ID),
		middleware.MaxPushback(r.MaxRetryAfter),
	), "retry", fmt.Sprintf("max_attempts=%d backoff=%v..%v x%g jitter=%s max_retry_after=%v",
		r.MaxAttempts, r.InitialBackoff, r.MaxBackoff, r.Multiplier, r.Jitter, r.MaxRetryAfter))

	if cp := p.Circuit; cp.Enabled {
		b := c.Breaker
		if b == nil {
			b = middleware.NewCircuitBreaker(breakerConfig(key, cp))
		}
		add(middleware.Breaker(b), "breaker", breakerDetail(cp))
	}
	if hp := p.Hedge; hp.Enabled {
		trig := c.Trigger
		if trig == nil {
			trig = triggerFor(hp, c.Tracker)
		}
		hopts := []hedge.Option{hedge.MaxHedges(hp.MaxHedges), hedge.WithClock(c.Clock)}
		if !c.NoRecover {
			hopts = append(hopts, mwopt.RecoverHedgePanics.(func(string) hedge.Option)(key))
		}
		add(hedge.New(trig, hopts...), "hedge", hedgeDetail(hp, trig, c.Trigger != nil))
	}
	if bh := p.Bulkhead; bh.Enabled() {
		l := c.Limiter
		if l == nil {
			l = newLimiter(bh, c.Clock)
		}
		add(middleware.Limit(l), "bulkhead", bulkheadDetail(bh))
	}
	if p.Budget != "" || (p.Hedge.Enabled && p.Hedge.Budget != "") {
		mw, detail, err := c.budgetGate(p, key)
		if err != nil {
			return nil, err
		}
		add(mw, "budget", detail)
	}

	if r.TimeoutPerAttempt > 0 {
		add(middleware.Timeout(r.TimeoutPerAttempt), "attempt_timeout", r.TimeoutPerAttempt.String())
	}
	var copts []middleware.Option
	if !c.NoRecover {
		copts = append(copts, mwopt.RecoverClassifierPanics.(func(string) middleware.Option)(key))
	}
	add(middleware.Classify(c.Classifier, copts...), "classify", classifierDetail(p.Classifier))

	return &Compiled{Policy: p, Middleware: endpoint.Chain(mws[0], mws[1:]...), Stages: stages}, nil
}

// ErrBudgetNotGiven is returned (wrapped) by Compile for a policy naming a
// budget the Compiler was not given.
var ErrBudgetNotGiven = errors.New("budget not given to the compiler")

func (c *Compiler) budgetGate(p Policy, key string) (endpoint.Middleware, string, error) {
	retry, hedgeB := c.Budget, c.HedgeBudget
	if p.Budget == "" {
		retry = middleware.UnlimitedBudget{}
	} else if retry == nil {
		return nil, "", fmt.Errorf("policy %q: budget=%q: %w", key, p.Budget, ErrBudgetNotGiven)
	}
	opts := []middleware.Option{mwopt.BudgetName.(func(string) middleware.Option)(p.Budget), middleware.BudgetCostPerTry(p.BudgetCost)}
	detail := fmt.Sprintf("retry_budget=%s cost=%d", orNone(p.Budget), p.BudgetCost)
	if p.Hedge.Enabled && p.Hedge.Budget != "" {
		if hedgeB == nil {
			return nil, "", fmt.Errorf("policy %q: hedge.budget=%q: %w", key, p.Hedge.Budget, ErrBudgetNotGiven)
		}
		opts = append(opts, middleware.HedgeBudget(p.Hedge.Budget, hedgeB))
		detail += " hedge_budget=" + p.Hedge.Budget
	}
	if !c.NoRecover {
		opts = append(opts, mwopt.RecoverBudgetPanics.(func(string) middleware.Option)(key))
	}
	return middleware.BudgetGate(retry, opts...), detail, nil
}

func init() {
	policyopt.BreakerConfig = breakerConfig
	policyopt.NewLimiter = newLimiter
}

// newLimiter returns the bulkhead a bulkhead policy describes, on clk (nil:
// the real clock): a middleware.Bulkhead, or a middleware.AdaptiveLimit
// with MaxConcurrent as its ceiling. The policy is normalized first; a
// policy that enables no bulkhead gives nil.
func newLimiter(bh BulkheadPolicy, clk clock.Clock) middleware.Limiter {
	p := Policy{Bulkhead: bh}
	p, _ = p.Normalize()
	bh = p.Bulkhead
	switch {
	case !bh.Enabled():
		return nil
	case bh.Adaptive:
		return middleware.NewAdaptiveLimit(middleware.AdaptiveMaxLimit(bh.MaxConcurrent),
			middleware.AdaptiveMaxWait(bh.MaxWait), middleware.WithClock(clk))
	}
	return middleware.NewBulkhead(bh.MaxConcurrent, bh.MaxWait, middleware.WithClock(clk))
}

func bulkheadDetail(bh BulkheadPolicy) string {
	if bh.Adaptive {
		return fmt.Sprintf("adaptive max_concurrent=%d max_wait=%v", bh.MaxConcurrent, bh.MaxWait)
	}
	return fmt.Sprintf("max_concurrent=%d max_wait=%v", bh.MaxConcurrent, bh.MaxWait)
}

// breakerConfig turns a circuit policy into the breaker configuration for
// key (without a state-change callback). The executor reaches it through
// internal/policyopt.
func breakerConfig(key string, cp CircuitPolicy) middleware.BreakerConfig {
	return middleware.BreakerConfig{
		Name: key, ConsecutiveFailures: cp.ConsecutiveFailures, Cooldown: cp.Cooldown,
		HalfOpenProbes: cp.HalfOpenProbes, FailureRatio: cp.FailureRatio, Window: cp.Window, MinRequests: cp.MinRequests,
		CooldownJitter: cp.CooldownJitter, SlowCallDuration: cp.SlowCallDuration, SlowCallRate: cp.SlowCallRate,
	}
}

// triggerFor returns the trigger a hedge policy describes: latency-aware
// at hp.Quantile over tracker (hp.Delay until warm) when a quantile is
// set, else a fixed delay of hp.Delay.
func triggerFor(hp HedgePolicy, tracker *hedge.LatencyTracker) hedge.Trigger {
	if hp.Quantile > 0 {
		return hedge.NewLatencyTrigger(tracker, hp.Quantile, hedge.Fallback(hp.Delay))
	}
	return hedge.FixedDelay(hp.Delay)
}

func breakerDetail(cp CircuitPolicy) string {
	var d string
	if cp.FailureRatio > 0 {
		d = fmt.Sprintf("failure_ratio=%g window=%v min_requests=%d cooldown=%v half_open_probes=%d",
			cp.FailureRatio, cp.Window, cp.MinRequests, cp.Cooldown, cp.HalfOpenProbes)
	} else {
		d = fmt.Sprintf("consecutive_failures=%d cooldown=%v half_open_probes=%d", cp.ConsecutiveFailures, cp.Cooldown, cp.HalfOpenProbes)
	}
	if cp.CooldownJitter > 0 {
		d += fmt.Sprintf(" cooldown_jitter=%g", cp.CooldownJitter)
	}
	if cp.SlowCallDuration > 0 {
		d += fmt.Sprintf(" slow_call_duration=%v slow_call_rate=%g", cp.SlowCallDuration, cp.SlowCallRate)
		if cp.FailureRatio == 0 {
			d += fmt.Sprintf(" window=%v min_requests=%d", cp.Window, cp.MinRequests)
		}
	}
	return d
}

// hedgeDetail says what the hedge will really do: the trigger in force
// (a named one's own quantile and delay, not the policy's fields), and
// when a named trigger was missing, that the policy's own one stood in.
func hedgeDetail(hp HedgePolicy, trig hedge.Trigger, named bool) string {
	desc := trig.Name()
	if s, ok := trig.(fmt.Stringer); ok {
		desc = s.String()
	}
	var d string
	switch {
	case named:
		d = fmt.Sprintf("trigger=%s: %s", hp.Trigger, desc)
	case hp.Trigger != "":
		d = fmt.Sprintf("trigger=%s missing, fell back to %s", hp.Trigger, desc)
	default:
		d = "trigger=" + desc
	}
	return d + fmt.Sprintf(" max_hedges=%d", hp.MaxHedges)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func idDetail(id string) string {
	if id == "" {
		return ""
	}
	return " id=" + id
}

func classifierDetail(name string) string {
	if name == "" {
		return "classifier=default"
	}
	return "classifier=" + name
}
