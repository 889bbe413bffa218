package middleware

import (
	"context"
	"fmt"

	"github.com/recourse-go/recourse/endpoint"
	"github.com/recourse-go/recourse/internal/record"
	"github.com/recourse-go/recourse/timeline"
)

// budgetName names the budget in observer events.
func budgetName(name string) Option { return option(func(g *budgetGate) { g.name = name }) }

// BudgetCostPerTry (BudgetGate) sets the tokens each retry or hedge takes (default 1).
func BudgetCostPerTry(n int) Option { return option(func(g *budgetGate) { g.cost = n }) }

// HedgeBudget (BudgetGate) makes hedged tries take their tokens from b (named name)
// instead of the retry budget.
func HedgeBudget(name string, b Budget) Option {
	return option(func(g *budgetGate) { g.hedgeName, g.hedge = name, b })
}

// recoverBudgetPanics turns a panic in the budget into a *PanicError
// (component "budget") for key, refusing the try.
func recoverBudgetPanics(key string) Option {
	return option(func(g *budgetGate) { g.key, g.recover = key, true })
}

type budgetGate struct {
	retry, hedge    Budget
	name, hedgeName string
	cost            int
	key             string
	recover         bool
}

// errBudgetDenied is the one error every refused try returns, whatever the
// path: a shared, immutable *ClassifiedError (no allocation per refusal).
var errBudgetDenied = &ClassifiedError{
	Err:     fmt.Errorf("%w", ErrBudgetExhausted),
	Verdict: Verdict{Outcome: timeline.OutcomeAbort, Reason: timeline.ReasonBudgetDenied},
}

// BudgetGate returns the decorator that makes every try beyond a call's
// first take tokens from b. The kind of try comes from the context's
// endpoint.AttemptInfo: retries are attempts after the first, hedges have a
// HedgeIndex. A refused try does not run: it is recorded with reason
// "budget_denied", reported to observers (OnBudgetDecision), and returns an
// error wrapping ErrBudgetExhausted classified as an abort, which the retry
// loop turns into the call's last real error. First tries are never
// charged; they are shown to b so ratio budgets can count them.
func BudgetGate(b Budget, opts ...Option) endpoint.Middleware {
	g := &budgetGate{retry: b, cost: 1}
	applyOptions(g, opts)
	if g.retry == nil {
		g.retry = UnlimitedBudget{}
	}
	if g.hedge == nil {
		g.hedge, g.hedgeName = g.retry, g.name
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			info, _ := endpoint.AttemptFromContext(ctx)
			t := Try{Key: info.Key, Kind: TryFirst, Cost: g.cost}
			b, name := g.retry, g.name
			switch {
			case info.IsHedge():
				t.Kind, b, name = TryHedge, g.hedge, g.hedgeName
			case info.Attempt > 1:
				t.Kind = TryRetry
			}
			d, perr := g.take(ctx, b, t)
			if t.Kind == TryFirst && perr == nil {
				if o, ok := b.(Outcomes); ok {
					return recordOutcome(ctx, o, t, next, req)
				}
				return next(ctx, req)
			}
			rec := record.FromContext(ctx)
			rec.BudgetDecision(ctx, timeline.BudgetDecision{Budget: name, Attempt: info.Attempt,
				Hedge: info.IsHedge(), Allowed: d.Allowed, Reason: d.Reason})
			if !d.Allowed {
				err := error(errBudgetDenied)
				if perr != nil {
					err = &ClassifiedError{Err: perr, Verdict: errBudgetDenied.Verdict}
				}
				if rec != nil {
					now := rec.Now()
					rec.Attempt(ctx, timeline.AttemptRecord{Attempt: max(info.Attempt, 1), HedgeIndex: info.HedgeIndex,
						StartTime: now, EndTime: now, Outcome: timeline.OutcomeAbort,
						Reason: timeline.ReasonBudgetDenied, Err: err.(*ClassifiedError).Err})
				}
				return nil, err
			}
			if r, ok := b.(Releaser); ok {
				defer r.Release(t)
			}
			if o, ok := b.(Outcomes); ok {
				return recordOutcome(ctx, o, t, next, req)
			}
			return next(ctx, req)
		}
	}
}

// recordOutcome runs the try and tells o how it ended, when the ending
// says something about the dependency (success or a retryable failure).
func recordOutcome(ctx context.Context, o Outcomes, t Try, next endpoint.Endpoint, req any) (any, error) {
	resp, err := next(ctx, req)
	switch VerdictOf(ctx, resp, err).Outcome {
	case timeline.OutcomeSuccess:
		o.RecordOutcome(t, true)
	case timeline.OutcomeRetryable:
		o.RecordOutcome(t, false)
	}
	return resp, err
}

// take asks b, turning a panic into a refusal carrying a *PanicError. A
// panic on a first try refuses it too: a broken budget fails closed.
func (g *budgetGate) take(ctx context.Context, b Budget, t Try) (d Decision, perr error) {
	if g.recover {
		defer func() {
			if r := recover(); r != nil {
				d, perr = Decision{Allowed: false, Reason: timeline.ReasonPanic}, NewPanicError("budget", g.key, r)
			}
		}()
	}
	return b.Take(ctx, t), nil
}
