package timeline

import (
	"context"
	"testing"
	"time"
)

type tagKey struct{}

// tagger is a ContextObserver that appends its tag to the context's tags.
type tagger struct {
	BaseObserver
	tag   string
	nilly bool // return nil from CallContext
	keys  []string
	start []time.Time
}

func (g *tagger) CallContext(ctx context.Context, key string, start time.Time) context.Context {
	g.keys = append(g.keys, key)
	g.start = append(g.start, start)
	if g.nilly {
		return nil
	}
	prev, _ := ctx.Value(tagKey{}).(string)
	return context.WithValue(ctx, tagKey{}, prev+g.tag)
}

func tags(ctx context.Context) string { s, _ := ctx.Value(tagKey{}).(string); return s }

func TestMultiChainsCallContextInOrder(t *testing.T) {
	a, b, skip := &tagger{tag: "a"}, &tagger{tag: "b"}, &tagger{nilly: true}
	var typedNil *tagger
	plain := &countingObserver{}
	m := Multi(plain, a, typedNil, Multi(skip, b, &countingObserver{}))
	c, ok := m.(ContextObserver)
	if !ok {
		t.Fatalf("Multi of ContextObservers is %T, not a ContextObserver", m)
	}
	start := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	ctx := c.CallContext(context.Background(), "k.K", start)
	if got := tags(ctx); got != "ab" {
		t.Errorf("tags = %q, want %q (a then b; nil result of skip ignored)", got, "ab")
	}
	for _, g := range []*tagger{a, b, skip} {
		if len(g.keys) != 1 || g.keys[0] != "k.K" || !g.start[0].Equal(start) {
			t.Errorf("%q: CallContext got keys %v starts %v", g.tag, g.keys, g.start)
		}
	}
	// The other events still reach every observer.
	fireAll(m)
	if plain.n.Load() != 7 {
		t.Errorf("plain observer saw %d events through the context multi, want 7", plain.n.Load())
	}
	// OnPolicyProblem is forwarded too.
	if _, ok := m.(PolicyProblemObserver); !ok {
		t.Errorf("%T does not implement PolicyProblemObserver", m)
	}
}

func TestMultiWithoutContextObserverIsNotOne(t *testing.T) {
	m := Multi(&countingObserver{}, &countingObserver{})
	if _, ok := m.(ContextObserver); ok {
		t.Errorf("Multi of plain observers implements ContextObserver (%T): every call would pay for the hook", m)
	}
	// A single ContextObserver comes back as itself.
	g := &tagger{tag: "x"}
	if got := Multi(nil, g, NoopObserver{}); got != Observer(g) {
		t.Errorf("Multi(nil, g, noop) = %T, want g itself", got)
	}
}

func TestIsNoopContextMulti(t *testing.T) {
	var typedNil *tagger
	if !IsNoop(contextMulti{multiObserver{nil, typedNil}}) {
		t.Error("a context multi of nil entries is not noop")
	}
	if IsNoop(Multi(&tagger{}, &countingObserver{})) {
		t.Error("a context multi of real observers is noop")
	}
}
