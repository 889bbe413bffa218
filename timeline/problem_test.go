package timeline

import (
	"errors"
	"testing"
)

type problems struct {
	BaseObserver
	got []PolicyProblem
}

func (p *problems) OnPolicyProblem(ev PolicyProblem) { p.got = append(p.got, ev) }

// multiObserver forwards OnPolicyProblem to the observers that implement
// it, skipping the rest and typed nils; BaseObserver and NoopObserver
// implement it as no-ops.
func TestMultiForwardsPolicyProblem(t *testing.T) {
	a, b := &problems{}, &problems{}
	var typedNil *problems
	var noop Observer = NoopObserver{}
	if _, ok := noop.(PolicyProblemObserver); !ok {
		t.Fatal("NoopObserver does not implement PolicyProblemObserver")
	}
	m := multiObserver{a, typedNil, noop, b}
	ev := PolicyProblem{Key: "a.B", Field: "budget", Name: "x", Mode: "deny", Err: errors.New("no budget")}
	m.OnPolicyProblem(ev)
	if len(a.got) != 1 || len(b.got) != 1 || a.got[0] != ev {
		t.Fatalf("a %v b %v", a.got, b.got)
	}
	o, ok := Multi(a, b).(PolicyProblemObserver)
	if !ok {
		t.Fatal("Multi of two observers does not implement PolicyProblemObserver")
	}
	o.OnPolicyProblem(ev)
	if len(a.got) != 2 || len(b.got) != 2 {
		t.Fatalf("a %v b %v", a.got, b.got)
	}
}
