// Package record builds the Timeline of one call while it runs: the observe
// decorator (middleware.Observe) creates a Recorder and puts it in the
// context; the inner decorators (retry, breaker, hedge, budget, classify)
// find it there and add records. It is plumbing shared by recourse's own
// packages; users read timelines through package timeline.
package record

import (
	"context"
	"reflect"
	"sync"
	"time"

	"github.com/recourse-go/recourse/internal/callctx"
	"github.com/recourse-go/recourse/timeline"
)

// Capture is the slot timeline.Record installs; the observe decorator
// stores the finished timeline in it.
type Capture = callctx.Slot[*timeline.Timeline]

// CaptureFromContext returns the slot installed by timeline.Record, or nil.
func CaptureFromContext(ctx context.Context) *Capture {
	c, _ := ctx.Value(callctx.CaptureKey{}).(*Capture)
	return c
}

// Recorder builds the Timeline of one call while it runs. The observe
// decorator creates it and puts it in the context; inner decorators find it
// with FromContext and add records. A nil *Recorder is valid and
// records nothing, so callers need not check.
type Recorder struct {
	obs    timeline.Observer
	now    func() time.Time
	parent *Recorder // set on a recorder made by Hold

	mu       sync.Mutex
	tl       timeline.Timeline
	obsPanic error // the first panic of an observer, recovered (see ObserverPanicked)
}

// New starts a timeline for key at now(). obs may be nil; an
// observer that does nothing (see timeline.IsNoop), a nil pointer among them, is
// treated as none. A nil now means time.Now.
func New(key string, obs timeline.Observer, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	if timeline.IsNoop(obs) {
		obs = timeline.NoopObserver{}
	}
	return &Recorder{obs: obs, now: now, tl: timeline.Timeline{Key: key, Start: now()}}
}

// NewContext returns a context carrying r. A nil r hides any
// recorder of an enclosing call, so a nested call never writes into its
// caller's timeline.
func NewContext(ctx context.Context, r *Recorder) context.Context {
	return context.WithValue(ctx, callctx.RecorderKey{}, r)
}

// FromContext returns the recorder of the call running in ctx, or nil.
func FromContext(ctx context.Context) *Recorder {
	r, _ := ctx.Value(callctx.RecorderKey{}).(*Recorder)
	return r
}

// Now returns the recorder's clock reading (zero time for a nil recorder).
func (r *Recorder) Now() time.Time {
	if r == nil {
		return time.Time{}
	}
	return r.now()
}

// StartTime returns the call's start, the timeline's Start (zero time for
// a nil recorder). It is set once, by New.
func (r *Recorder) StartTime() time.Time {
	if r == nil {
		return time.Time{}
	}
	return r.tl.Start
}

// Key returns the key of the call being recorded.
func (r *Recorder) Key() string {
	if r == nil {
		return ""
	}
	return r.tl.Key
}

// Observer returns the observer events go to (never nil on a non-nil recorder).
func (r *Recorder) Observer() timeline.Observer {
	if r == nil {
		return timeline.NoopObserver{}
	}
	return r.obs
}

// Start reports the call's start to the observer.
func (r *Recorder) Start(ctx context.Context) {
	if r == nil {
		return
	}
	r.obs.OnStart(ctx, r.tl.Key, r.tl.Start)
}

// Attempt appends rec to the timeline and reports it to the observer.
func (r *Recorder) Attempt(ctx context.Context, rec timeline.AttemptRecord) {
	if r == nil {
		return
	}
	rec.Hedge = rec.HedgeIndex > 0
	r.mu.Lock()
	r.tl.Attempts = append(r.tl.Attempts, rec)
	r.mu.Unlock()
	if r.parent != nil {
		return // held until Release
	}
	r.obs.OnAttempt(ctx, r.tl.Key, rec)
}

// Hold returns a recorder for tries whose records are not final when they
// end: the hedge decorator gives it to the tries of a race, whose reasons
// ("hedge_won", "hedge_lost") are known only once the race is over. Its
// Attempt keeps records to itself, neither in r's timeline nor reported to
// the observer, until Release; its other events go to r's observer as they
// happen. Hold on a nil recorder returns nil.
func (r *Recorder) Hold() *Recorder {
	if r == nil {
		return nil
	}
	return &Recorder{obs: r.obs, now: r.now, parent: r, tl: timeline.Timeline{Key: r.tl.Key}}
}

// Release passes the records held by a recorder from Hold to the recorder
// it was made from, in the order they were made: fn, if not nil, updates
// each first; all are then added, and then reported, as Attempt does, so
// the observer sees exactly what the timeline keeps. Release on a recorder not
// made by Hold does nothing.
func (r *Recorder) Release(ctx context.Context, fn func(*timeline.AttemptRecord)) {
	if r == nil || r.parent == nil {
		return
	}
	r.mu.Lock()
	held := r.tl.Attempts
	r.tl.Attempts = nil
	r.mu.Unlock()
	for i := range held {
		if fn != nil {
			fn(&held[i])
		}
		held[i].Hedge = held[i].HedgeIndex > 0
	}
	p := r.parent
	p.mu.Lock()
	p.tl.Attempts = append(p.tl.Attempts, held...)
	p.mu.Unlock()
	for _, rec := range held {
		if p.parent == nil {
			p.obs.OnAttempt(ctx, p.tl.Key, rec)
		}
	}
}

// Update applies fn to the most recent record of the given attempt and
// hedge index, if there is one, and reports whether it found one.
func (r *Recorder) Update(attempt, hedgeIndex int, fn func(*timeline.AttemptRecord)) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.tl.Attempts) - 1; i >= 0; i-- {
		a := &r.tl.Attempts[i]
		if a.Attempt == attempt && a.HedgeIndex == hedgeIndex {
			fn(a)
			return true
		}
	}
	return false
}

// SetBackoff records that the call waited d after attempt before the next.
// It marks the attempt's last-ending record.
func (r *Recorder) SetBackoff(attempt int, d time.Duration) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.tl.Attempts) - 1; i >= 0; i-- {
		if r.tl.Attempts[i].Attempt == attempt {
			r.tl.Attempts[i].Backoff = d
			return
		}
	}
}

// SetAttribute sets one timeline attribute.
func (r *Recorder) SetAttribute(name, value string) {
	if r == nil {
		return
	}
	if r.parent != nil {
		r.parent.SetAttribute(name, value)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tl.Attributes == nil {
		r.tl.Attributes = make(map[string]string)
	}
	r.tl.Attributes[name] = value
}

// SetPolicyID sets the timeline's PolicyID.
func (r *Recorder) SetPolicyID(id string) {
	if r == nil {
		return
	}
	if r.parent != nil {
		r.parent.SetPolicyID(id)
		return
	}
	r.mu.Lock()
	r.tl.PolicyID = id
	r.mu.Unlock()
}

// LastAttempt returns the highest attempt number recorded so far (0 for
// none, or a nil recorder).
func (r *Recorder) LastAttempt() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.tl.Attempts {
		n = max(n, a.Attempt)
	}
	return n
}

// Len returns the number of records so far.
func (r *Recorder) Len() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tl.Attempts)
}

// BudgetDecision reports a budget decision to the observer.
func (r *Recorder) BudgetDecision(ctx context.Context, ev timeline.BudgetDecision) {
	if r == nil {
		return
	}
	ev.Key = r.tl.Key
	r.obs.OnBudgetDecision(ctx, ev)
}

// Hedge reports a spawned hedge to the observer.
func (r *Recorder) Hedge(ctx context.Context, ev timeline.HedgeEvent) {
	if r == nil {
		return
	}
	ev.Key = r.tl.Key
	r.obs.OnHedge(ctx, ev)
}

// Finish closes the timeline with the call's error, reports it to the
// observer and returns it. The returned Timeline is a snapshot the caller
// owns; later Recorder calls do not change it.
func (r *Recorder) Finish(ctx context.Context, err error) *timeline.Timeline {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	r.tl.End = r.now()
	r.tl.Err = err
	tl := r.tl
	tl.Attempts = append([]timeline.AttemptRecord(nil), r.tl.Attempts...)
	if r.tl.Attributes != nil {
		tl.Attributes = make(map[string]string, len(r.tl.Attributes))
		for k, v := range r.tl.Attributes {
			tl.Attributes[k] = v
		}
	}
	r.mu.Unlock()
	r.obs.OnFinish(ctx, &tl)
	return &tl
}

// ObserverPanicked records err — a recovered panic of an observer callback
// made for this call — so that the call can report it (the first one
// wins). The executor's recovering observer calls it; the observe
// decorator returns it with the call's error.
func (r *Recorder) ObserverPanicked(err error) {
	if r == nil || err == nil {
		return
	}
	for r.parent != nil {
		r = r.parent
	}
	r.mu.Lock()
	if r.obsPanic == nil {
		r.obsPanic = err
	}
	r.mu.Unlock()
}

// ObserverPanic returns the error recorded by ObserverPanicked, or nil.
func (r *Recorder) ObserverPanic() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.obsPanic
}

// Root implements callctx.Call: it names the call r records (the recorder
// Hold was called on, for a held one), for observers such as the zerolog
// one that tell calls apart. Key and start are set once, before r is shared.
func (r *Recorder) Root() (id uintptr, key string, start time.Time, ok bool) {
	if r == nil {
		return 0, "", time.Time{}, false
	}
	for r.parent != nil {
		r = r.parent
	}
	return reflect.ValueOf(r).Pointer(), r.tl.Key, r.tl.Start, true
}
