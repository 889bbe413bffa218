package optfunc

import "testing"

type opt func(any)

type a struct{ n int }
type b struct{ s string }

func TestForAppliesToItsOwnTargetOnly(t *testing.T) {
	opts := []opt{For[opt](func(x *a) { x.n = 7 }), nil, For[opt](func(x *b) { x.s = "set" })}
	var x a
	var y b
	Apply(&x, opts)
	Apply(&y, opts)
	if x.n != 7 || y.s != "set" {
		t.Fatalf("a = %+v, b = %+v", x, y)
	}
	Apply(42, opts) // a target no option knows: nothing happens
}
