package timeline

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// NewZerologObserver returns an Observer that logs through l: one event per
// attempt ("recourse attempt") and one per call ("recourse call"), plus
// budget refusals, hedges and breaker transitions. A failed attempt is
// logged at warn level unless a hedge race cut it short by design (reason
// "hedge_lost"): that is logged at info level. Fields: key, attempt,
// hedge_index, outcome, reason, duration, error, backoff; per call also
// attempts and the timeline attributes.
func NewZerologObserver(l zerolog.Logger) Observer {
	return zerologObserver{l: l}
}

type zerologObserver struct {
	BaseObserver
	l zerolog.Logger
}

func (z zerologObserver) OnAttempt(_ context.Context, key string, rec AttemptRecord) {
	lvl := zerolog.InfoLevel
	if rec.Outcome != OutcomeSuccess && rec.Reason != ReasonHedgeLost {
		lvl = zerolog.WarnLevel // a hedge's loser was cut short by design
	}
	ev := z.l.WithLevel(lvl).
		Str("event", "attempt").
		Str("key", key).
		Int("attempt", rec.Attempt).
		Int("hedge_index", rec.HedgeIndex).
		Str("outcome", rec.Outcome.String()).
		Str("reason", rec.Reason).
		Dur("duration", rec.Duration())
	if rec.Status != "" {
		ev = ev.Str("status", rec.Status)
	}
	if rec.Err != nil {
		ev = ev.AnErr("error", rec.Err)
	}
	ev.Msg("recourse attempt")
}

func (z zerologObserver) OnFinish(_ context.Context, tl *Timeline) {
	lvl := zerolog.InfoLevel
	outcome := "success"
	if tl.Err != nil {
		lvl = zerolog.ErrorLevel
		outcome = "failure"
	}
	ev := z.l.WithLevel(lvl).
		Str("event", "call").
		Str("key", tl.Key).
		Int("attempts", len(tl.Attempts)).
		Str("outcome", outcome).
		Dur("duration", tl.Duration())
	if tl.PolicyID != "" {
		ev = ev.Str("policy_id", tl.PolicyID)
	}
	if tl.Err != nil {
		ev = ev.AnErr("error", tl.Err)
	}
	if len(tl.Attributes) > 0 {
		d := zerolog.Dict()
		for k, v := range tl.Attributes {
			d = d.Str(k, v)
		}
		ev = ev.Dict("attributes", d)
	}
	arr := zerolog.Arr()
	for _, a := range tl.Attempts {
		arr = arr.Dict(zerolog.Dict().
			Int("attempt", a.Attempt).
			Int("hedge_index", a.HedgeIndex).
			Str("outcome", a.Outcome.String()).
			Str("reason", a.Reason).
			Str("status", a.Status).
			Dur("duration", a.Duration()).
			Dur("backoff", a.Backoff))
	}
	ev.Array("timeline", arr).Msg("recourse call")
}

func (z zerologObserver) OnBudgetDecision(_ context.Context, ev BudgetDecision) {
	if ev.Allowed {
		return
	}
	z.l.Warn().Str("event", "budget").Str("key", ev.Key).Str("budget", ev.Budget).
		Int("attempt", ev.Attempt).Bool("hedge", ev.Hedge).Str("reason", ev.Reason).
		Msg("recourse budget denied")
}

func (z zerologObserver) OnHedge(_ context.Context, ev HedgeEvent) {
	z.l.Info().Str("event", "hedge").Str("key", ev.Key).Int("attempt", ev.Attempt).
		Int("hedge_index", ev.HedgeIndex).Dur("after", ev.After).Str("trigger", ev.Trigger).
		Msg("recourse hedge")
}

func (z zerologObserver) OnBreakerState(ev BreakerStateChange) {
	z.l.Warn().Str("event", "breaker").Str("key", ev.Key).Str("from", ev.From).Str("to", ev.To).
		Time("at", ev.At.Truncate(time.Millisecond)).Msg("recourse breaker")
}

func (z zerologObserver) OnPolicyReload(ev PolicyReload) {
	if ev.Err != nil {
		z.l.Error().Str("event", "policy_reload").Str("source", ev.Source).Uint64("version", ev.Version).
			AnErr("error", ev.Err).Msg("recourse policy reload failed; keeping the last good policies")
		return
	}
	z.l.Info().Str("event", "policy_reload").Str("source", ev.Source).Uint64("version", ev.Version).Msg("recourse policies reloaded")
}
