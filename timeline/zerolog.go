package timeline

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/recourse-go/recourse/internal/callctx"
)

// NewZerologObserver returns an Observer that writes one JSON object
// (one line) through l for each event below. It also implements
// PolicyProblemObserver. The field names, units and
// rules are a stable schema that programs may parse; the message text is
// for humans and may change.
//
// # Rules for every line
//
//   - "event" names the kind of line; switch on it, not on "message".
//   - Durations are JSON numbers of milliseconds in fields whose names end
//     in "_ms", rounded to the microsecond (at most three decimals, never
//     in exponent notation).
//   - Times are strings in RFC 3339 with nanoseconds, in UTC
//     ("2026-11-25T09:00:00.205Z", [time.RFC3339Nano]).
//   - Empty values are left out: an absent string field is empty, an
//     absent number is 0, an absent boolean is false. No field is null.
//   - Durations, times and errors are written by the observer itself, so
//     zerolog's global settings (DurationFieldUnit, TimeFieldFormat,
//     FloatingPointPrecision, ErrorMarshalFunc) do not change them. What l
//     adds on its own — "level", "message", a "time" if it has
//     Timestamp(), context fields — is l's business.
//
// # "attempt": one try of a call ended or was refused
//
// Logged when the try ends, at info level when it succeeded or lost a
// hedge race (cut short by design), at warn level otherwise.
//
//	key          string  the call's policy key ("payments.Charge")
//	call_id      string  16 hex digits shared by every line of one call
//	                     ("attempt", "budget", "hedge", "call"); absent
//	                     when the event was not reported by a recourse
//	                     call (an observer called directly)
//	attempt      int     1-based attempt number; hedges share their attempt's
//	hedge_index  int     always present: 0 for the primary try, 1, 2, … for hedges
//	start_ms     number  when the try started, after the call started;
//	                     present with call_id
//	duration_ms  number  how long the try ran; 0 for a try refused
//	                     before it ran (budget, open breaker)
//	outcome      string  the verdict: "success", "retryable",
//	                     "non_retryable", "abort" or "unknown"
//	reason       string  the reason code (Reason* constants: "timeout",
//	                     "canceled", "circuit_open", "budget_denied",
//	                     "hedge_won", "hedge_lost", "retry_after",
//	                     "panic", …); present only when it differs from
//	                     outcome, so a plain success or a plain retryable
//	                     failure has none
//	status       string  the protocol status ("503", "UNAVAILABLE"),
//	                     when the transport reported one
//	error        string  the try's error, when it failed
//
// An attempt line has no backoff: the wait after a try is decided after
// the try is reported. The "call" line's timeline has it.
//
// Attempt lines are written in the order tries end. To draw a call as a
// waterfall, group lines by call_id and place each try at
// [start_ms, start_ms+duration_ms]; or read the "call" line alone.
//
// # "call": a call returned
//
// Logged once per call, at info level on success, error level on failure.
//
//	key          string  the call's policy key
//	call_id      string  as on its attempt lines; absent outside a recourse call
//	start        time    when the call started
//	duration_ms  number  the whole call, backoffs included
//	outcome      string  "success" or "failure" (the call returned an error)
//	attempts     int     number of records in the timeline: tries, refused ones
//	                     and hedges included, and the "fallback" record when
//	                     the key's fallback answered the call
//	policy_id    string  the policy's identifier, when it has one
//	error        string  the error the call returned, when it failed
//	attributes   object  facts about policy resolution, string to string
//	                     (Attr* constants: "policy_source", "policy_error",
//	                     …), entries with empty values left out; absent
//	                     when there are none
//	timeline     array   one object per try, in the order tries ended,
//	                     with the attempt line's attempt, hedge_index,
//	                     start_ms, duration_ms, outcome, reason, status
//	                     and error (same rules), plus:
//	  backoff_ms number  how long the call waited after this try before
//	                     the next; absent when it did not wait
//
// The call ended at start + duration_ms.
//
// # "budget": a budget decided on a retry or a hedge
//
// Logged at warn level when the budget refused the try, at debug level
// when it admitted it. (First tries are asked of budgets too, but only
// refusals of them are reported.)
//
//	key          string  the call's policy key
//	call_id      string  as on the call's attempt lines
//	budget       string  the budget's name, when it has one
//	attempt      int     the attempt the try belongs to (≥ 1)
//	hedge        bool    true when the try was a hedge; absent otherwise
//	allowed      bool    always present: whether the try may run
//	reason       string  the budget's reason ("ratio_exceeded",
//	                     "unlimited", …), when it gave one
//
// A refused try also gets an attempt line with reason "budget_denied".
//
// # "hedge": a hedged try was spawned
//
// Logged at info level.
//
//	key          string  the call's policy key
//	call_id      string  as on the call's attempt lines
//	attempt      int     the attempt the hedge belongs to
//	hedge_index  int     1, 2, … (the hedge's own attempt line has the same)
//	after_ms     number  when the hedge was due, after the attempt's
//	                     primary try started
//	trigger      string  what fired it ("fixed", "latency"), when known
//
// # "breaker": a key's circuit breaker changed state
//
// Logged at warn level when it opens, at info level when it goes
// half-open (a probe may run) and when it closes again (recovered). A
// transition belongs to the key, not to a call: it has no call_id.
//
//	key          string  the policy key whose breaker changed
//	from, to     string  "closed", "half_open" or "open"
//	at           time    when it changed, when known
//
// # "policy_reload": a provider reloaded its policies
//
// Logged at info level, at error level when the reload failed and the
// previous policies are kept.
//
//	source       string  where the policies come from ("file:PATH"), when known
//	version      int     the provider's version after the reload, when > 0
//	error        string  why the reload failed, when it did
//
// # "policy_problem": a policy names what the executor cannot resolve
//
// Logged once each time the executor compiles a key's policy (see
// PolicyProblemObserver), at error level when the mode is "deny" (the
// key's retries, hedges or calls are refused), at warn level otherwise.
//
//	key          string  the policy's key
//	field        string  the policy field holding the name ("budget",
//	                     "hedge.budget", "hedge.trigger", "classifier")
//	name         string  the unresolved name
//	mode         string  what the executor does instead: "deny",
//	                     "allow" or "fallback"
//	error        string  the problem, naming key, field and name, when given
func NewZerologObserver(l zerolog.Logger) Observer {
	return zerologObserver{l: l, salt: rand.Uint64()}
}

type zerologObserver struct {
	BaseObserver
	l zerolog.Logger
	// salt makes call ids differ between processes and observers.
	salt uint64
}

// callOf returns what the recorder of the call that reported an event in
// ctx tells of it (the root call, when a hedge race holds the try's
// records); ok is false when ctx carries no recorder.
func callOf(ctx context.Context) (id uintptr, key string, start time.Time, ok bool) {
	c, _ := ctx.Value(callctx.RecorderKey{}).(callctx.Call)
	if c == nil {
		return 0, "", time.Time{}, false
	}
	return c.Root()
}

// callID identifies a call by its recorder's identity and start: unique
// among the calls in flight (their recorders differ) and, with a real
// clock, over time (their starts differ).
func (z zerologObserver) callID(id uintptr, start time.Time) string {
	x := mix64(uint64(id) ^ z.salt)
	x = mix64(x ^ uint64(start.UnixNano()))
	var b [8]byte
	for i := range b {
		b[i] = byte(x >> (56 - 8*i))
	}
	return hex.EncodeToString(b[:])
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// ms writes d as a JSON number of milliseconds, rounded to the microsecond.
func ms(ev *zerolog.Event, key string, d time.Duration) *zerolog.Event {
	var buf [32]byte
	us := d.Round(time.Microsecond) / time.Microsecond
	return ev.RawJSON(key, strconv.AppendFloat(buf[:0], float64(us)/1000, 'f', -1, 64))
}

// timestamp writes t in UTC as RFC 3339 with nanoseconds, if t is not zero.
func timestamp(ev *zerolog.Event, key string, t time.Time) *zerolog.Event {
	if t.IsZero() {
		return ev
	}
	return ev.Str(key, t.UTC().Format(time.RFC3339Nano))
}

// str writes a non-empty string.
func str(ev *zerolog.Event, key, v string) *zerolog.Event {
	if v == "" {
		return ev
	}
	return ev.Str(key, v)
}

// errStr writes a non-nil error's message.
func errStr(ev *zerolog.Event, err error) *zerolog.Event {
	if err == nil {
		return ev
	}
	return str(ev, "error", err.Error())
}

// attemptFields writes what the attempt line and the call line's timeline
// entries share. callStart is zero when the call is not known.
func attemptFields(ev *zerolog.Event, rec AttemptRecord, callStart time.Time) *zerolog.Event {
	ev = ev.Int("attempt", rec.Attempt).Int("hedge_index", rec.HedgeIndex)
	if !callStart.IsZero() && !rec.StartTime.IsZero() {
		ev = ms(ev, "start_ms", rec.StartTime.Sub(callStart))
	}
	ev = ms(ev, "duration_ms", rec.Duration())
	outcome := rec.Outcome.String()
	ev = ev.Str("outcome", outcome)
	if rec.Reason != outcome {
		ev = str(ev, "reason", rec.Reason)
	}
	ev = str(ev, "status", rec.Status)
	return errStr(ev, rec.Err)
}

// begin starts a line of the given event for key, with the call's id when
// ctx carries the call's recorder, and returns the call's start (zero when
// the call is not known).
func (z zerologObserver) begin(ctx context.Context, lvl zerolog.Level, event, key string) (*zerolog.Event, time.Time) {
	ev := z.l.WithLevel(lvl)
	if ev == nil {
		return nil, time.Time{} // level disabled: nothing to compute
	}
	ev = ev.Str("event", event).Str("key", key)
	if id, k, start, ok := callOf(ctx); ok && k == key {
		return ev.Str("call_id", z.callID(id, start)), start
	}
	return ev, time.Time{}
}

func (z zerologObserver) OnAttempt(ctx context.Context, key string, rec AttemptRecord) {
	lvl := zerolog.InfoLevel
	if rec.Outcome != OutcomeSuccess && rec.Reason != ReasonHedgeLost {
		lvl = zerolog.WarnLevel // a hedge's loser was cut short by design
	}
	ev, callStart := z.begin(ctx, lvl, "attempt", key)
	if ev == nil {
		return
	}
	attemptFields(ev, rec, callStart).Msg("recourse attempt")
}

func (z zerologObserver) OnFinish(ctx context.Context, tl *Timeline) {
	lvl, outcome := zerolog.InfoLevel, "success"
	if tl.Err != nil {
		lvl, outcome = zerolog.ErrorLevel, "failure"
	}
	ev, _ := z.begin(ctx, lvl, "call", tl.Key)
	if ev == nil {
		return
	}
	ev = timestamp(ev, "start", tl.Start)
	ev = ms(ev, "duration_ms", tl.Duration())
	ev = ev.Str("outcome", outcome).Int("attempts", len(tl.Attempts))
	ev = str(ev, "policy_id", tl.PolicyID)
	ev = errStr(ev, tl.Err)
	if names := attributeNames(tl.Attributes); len(names) > 0 {
		d := zerolog.Dict()
		for _, k := range names {
			d = d.Str(k, tl.Attributes[k])
		}
		ev = ev.Dict("attributes", d)
	}
	if len(tl.Attempts) > 0 {
		arr := zerolog.Arr()
		for _, a := range tl.Attempts {
			d := attemptFields(zerolog.Dict(), a, tl.Start)
			if a.Backoff > 0 {
				d = ms(d, "backoff_ms", a.Backoff)
			}
			arr = arr.Dict(d)
		}
		ev = ev.Array("timeline", arr)
	}
	ev.Msg("recourse call")
}

// attributeNames returns the names of the non-empty attributes, sorted.
func attributeNames(attrs map[string]string) []string {
	var names []string
	for k, v := range attrs {
		if v != "" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

func (z zerologObserver) OnBudgetDecision(ctx context.Context, d BudgetDecision) {
	lvl, msg := zerolog.WarnLevel, "recourse budget denied"
	if d.Allowed {
		lvl, msg = zerolog.DebugLevel, "recourse budget allowed"
	}
	ev, _ := z.begin(ctx, lvl, "budget", d.Key)
	if ev == nil {
		return
	}
	ev = str(ev, "budget", d.Budget).Int("attempt", max(d.Attempt, 1))
	if d.Hedge {
		ev = ev.Bool("hedge", true)
	}
	ev = ev.Bool("allowed", d.Allowed)
	str(ev, "reason", d.Reason).Msg(msg)
}

func (z zerologObserver) OnHedge(ctx context.Context, h HedgeEvent) {
	ev, _ := z.begin(ctx, zerolog.InfoLevel, "hedge", h.Key)
	if ev == nil {
		return
	}
	ev = ev.Int("attempt", h.Attempt).Int("hedge_index", h.HedgeIndex)
	ev = ms(ev, "after_ms", h.After)
	str(ev, "trigger", h.Trigger).Msg("recourse hedge")
}

func (z zerologObserver) OnBreakerState(b BreakerStateChange) {
	lvl, msg := zerolog.InfoLevel, "recourse breaker closed"
	switch b.To {
	case "open":
		lvl, msg = zerolog.WarnLevel, "recourse breaker opened"
	case "half_open":
		msg = "recourse breaker half-open: probing"
	}
	ev := z.l.WithLevel(lvl)
	if ev == nil {
		return
	}
	ev = ev.Str("event", "breaker").Str("key", b.Key)
	ev = str(str(ev, "from", b.From), "to", b.To)
	timestamp(ev, "at", b.At).Msg(msg)
}

func (z zerologObserver) OnPolicyReload(p PolicyReload) {
	lvl, msg := zerolog.InfoLevel, "recourse policies reloaded"
	if p.Err != nil {
		lvl, msg = zerolog.ErrorLevel, "recourse policy reload failed; keeping the last good policies"
	}
	ev := z.l.WithLevel(lvl)
	if ev == nil {
		return
	}
	ev = str(ev.Str("event", "policy_reload"), "source", p.Source)
	if p.Version > 0 {
		ev = ev.Uint64("version", p.Version)
	}
	errStr(ev, p.Err).Msg(msg)
}

// OnPolicyProblem implements PolicyProblemObserver.
func (z zerologObserver) OnPolicyProblem(p PolicyProblem) {
	lvl := zerolog.WarnLevel
	if p.Mode == "deny" {
		lvl = zerolog.ErrorLevel
	}
	ev := z.l.WithLevel(lvl)
	if ev == nil {
		return
	}
	ev = str(ev.Str("event", "policy_problem"), "key", p.Key)
	ev = str(str(str(ev, "field", p.Field), "name", p.Name), "mode", p.Mode)
	errStr(ev, p.Err).Msg("recourse policy names what the executor cannot resolve")
}
