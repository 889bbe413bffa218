package policy

import (
	"fmt"
	"strings"

	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/endpoint"
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
	// NoRecover lets panics in classifiers propagate instead of becoming
	// *middleware.PanicError.
	NoRecover bool
}

// Stage is one decorator of a compiled chain, described for humans.
type Stage struct {
	// Name is the decorator: observe, overall_timeout, retry, breaker,
	// hedge, budget, attempt_timeout or classify.
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

// Compile normalizes p and builds its chain: observe → overall timeout →
// retry → breaker → hedge → budget → per-attempt timeout → classify.
// Sections the policy leaves off are not compiled in. Breaker, hedge and
// budget sections need executor-held state; until the compiler is given
// it, a policy enabling them is refused with an error naming the field.
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
		middleware.ObserveClock(c.Clock),
		middleware.WithAttributes(c.Attributes),
		middleware.WithPolicyID(p.ID),
	), "observe", "key="+key+idDetail(p.ID))

	r := p.Retry
	if r.OverallTimeout > 0 {
		add(middleware.OverallTimeout(r.OverallTimeout), "overall_timeout", r.OverallTimeout.String())
	}
	add(middleware.Retry(
		middleware.MaxAttempts(r.MaxAttempts),
		middleware.WithBackoff(middleware.BackoffConfig{Initial: r.InitialBackoff, Max: r.MaxBackoff, Multiplier: r.Multiplier, Jitter: r.Jitter}),
		middleware.RetryClock(c.Clock),
		middleware.RetryKey(key, p.ID),
		middleware.MaxPushback(r.MaxRetryAfter),
	), "retry", fmt.Sprintf("max_attempts=%d backoff=%v..%v x%g jitter=%s max_retry_after=%v",
		r.MaxAttempts, r.InitialBackoff, r.MaxBackoff, r.Multiplier, r.Jitter, r.MaxRetryAfter))

	if p.Circuit.Enabled {
		return nil, fmt.Errorf("policy %q: circuit.enabled=true: %w", key, errNotCompiled)
	}
	if p.Hedge.Enabled {
		return nil, fmt.Errorf("policy %q: hedge.enabled=true: %w", key, errNotCompiled)
	}
	if p.Budget != "" {
		return nil, fmt.Errorf("policy %q: budget=%q: %w", key, p.Budget, errNotCompiled)
	}

	if r.TimeoutPerAttempt > 0 {
		add(middleware.Timeout(r.TimeoutPerAttempt), "attempt_timeout", r.TimeoutPerAttempt.String())
	}
	var copts []middleware.ClassifyOption
	if !c.NoRecover {
		copts = append(copts, middleware.RecoverClassifierPanics(key))
	}
	add(middleware.Classify(c.Classifier, copts...), "classify", classifierDetail(p.Classifier))

	return &Compiled{Policy: p, Middleware: endpoint.Chain(mws[0], mws[1:]...), Stages: stages}, nil
}

var errNotCompiled = fmt.Errorf("section not supported by this compiler")

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
