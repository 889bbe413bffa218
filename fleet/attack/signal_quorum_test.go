package fleetattack

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/recourse-go/recourse/fleet"
)

// One replica of one whose breaker opens: it is the quorum (100 %), but its
// own breaker is never held.
func TestSignalOneReplicaOfOne(t *testing.T) {
	s := startRedis(t)
	a := newReplica(t, s.Addr(), "a", []string{"k"}, fleet.Keys("k"))
	a.trip("k")
	waitFor(t, hold, "a's own open to show", func() bool { v := a.sig.View("k"); return v.Open == 1 && v.Live == 1 })
	time.Sleep(4 * poll)
	v := a.sig.View("k")
	if !v.Quorum || v.Held || a.held("k") {
		t.Errorf("one of one open: view %+v, forced %v; want quorum, not held", v, a.held("k"))
	}
}

// Nobody reports open: whatever the quorum (fraction 0 or tiny, replicas 0),
// nothing is held.
func TestSignalNothingOpenNothingHeld(t *testing.T) {
	for _, q := range [][2]float64{{0, 0.5}, {0, 1e-9}, {0, 0}, {1, 0}, {0, math.NaN()}, {-1, -1}, {0, math.Inf(1)}, {0, math.Inf(-1)}} {
		t.Run(fmt.Sprint(q), func(t *testing.T) {
			s := startRedis(t)
			a := newReplica(t, s.Addr(), "a", []string{"k"}, fleet.Keys("k", "nobody"), fleet.Quorum(int(q[0]), q[1]))
			b := newReplica(t, s.Addr(), "b", []string{"k"}, fleet.Keys("k", "nobody"), fleet.Quorum(int(q[0]), q[1]))
			time.Sleep(6 * poll)
			for _, r := range []*replica{a, b} {
				for _, k := range []string{"k", "nobody"} {
					if v := r.sig.View(k); v.Held || v.Quorum || r.held("k") {
						t.Errorf("%s %s: %+v with nothing open", r.id, k, v)
					}
				}
			}
		})
	}
}

// Quorum(1, 0): one replica open holds all the others.
func TestSignalQuorumOfOne(t *testing.T) {
	s := startRedis(t)
	a := newReplica(t, s.Addr(), "a", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	b := newReplica(t, s.Addr(), "b", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	c := newReplica(t, s.Addr(), "c", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	a.trip("k")
	waitFor(t, hold, "b and c held", func() bool { return b.held("k") && c.held("k") })
	if a.held("k") {
		t.Error("the replica that tripped is held")
	}
	a.breaker("k").Reset()
	waitFor(t, hold, "b and c released", func() bool { return !b.held("k") && !c.held("k") })
}

// A fraction above 1 can never be met; NaN or negative turns the test off.
// Neither may panic or hold.
func TestSignalFractionAboveOne(t *testing.T) {
	s := startRedis(t)
	var rs []*replica
	for i := 0; i < 4; i++ {
		rs = append(rs, newReplica(t, s.Addr(), fmt.Sprint("r", i), []string{"k"}, fleet.Keys("k"), fleet.Quorum(0, 1.5)))
	}
	for _, r := range rs[:3] {
		r.trip("k")
	}
	waitFor(t, hold, "3 open of 4", func() bool { v := rs[3].sig.View("k"); return v.Open == 3 && v.Live == 4 })
	time.Sleep(4 * poll)
	if v := rs[3].sig.View("k"); v.Held || rs[3].held("k") {
		t.Errorf("fraction 1.5 held the last replica: %+v", v)
	}
}

// Held replicas must not count as open: when the replicas that tripped
// recover, the quorum ends and everyone is released (no self-sustaining
// quorum).
func TestSignalHeldReplicasDoNotSustainTheQuorum(t *testing.T) {
	s := startRedis(t)
	var rs []*replica
	for i := 0; i < 4; i++ {
		rs = append(rs, newReplica(t, s.Addr(), fmt.Sprint("r", i), []string{"k"}, fleet.Keys("k"), fleet.Quorum(2, 0)))
	}
	rs[0].trip("k")
	rs[1].trip("k")
	waitFor(t, hold, "r2 and r3 held", func() bool { return rs[2].held("k") && rs[3].held("k") })
	if v := rs[2].sig.View("k"); v.Open != 2 || v.Live != 4 {
		t.Errorf("view while held: %+v; want 2 open of 4 live", v)
	}
	rs[0].breaker("k").Reset()
	rs[1].breaker("k").Reset()
	waitFor(t, hold, "r2 and r3 released", func() bool { return !rs[2].held("k") && !rs[3].held("k") })
	for _, r := range rs {
		if st := r.breaker("k").State().String(); st != "closed" {
			t.Errorf("%s: breaker %s after the quorum ended", r.id, st)
		}
	}
}

// A held replica whose held breaker is reset by an operator is held again
// while the quorum lasts.
func TestSignalOperatorResetWhileQuorumHolds(t *testing.T) {
	s := startRedis(t)
	a := newReplica(t, s.Addr(), "a", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	b := newReplica(t, s.Addr(), "b", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	a.trip("k")
	waitFor(t, hold, "b held", func() bool { return b.held("k") })
	b.breaker("k").Reset()
	time.Sleep(hold)
	if v := b.sig.View("k"); !b.held("k") {
		t.Errorf("quorum still open, operator reset b's held breaker: b not held again after %v (view %+v, state %s)",
			hold, v, b.breaker("k").State())
	}
	a.breaker("k").Reset()
	waitFor(t, hold, "b released", func() bool { return !b.held("k") })
}

// An operator isolated a replica by hand (ForceOpen) before a quorum came and
// went: the end of the quorum must not undo the operator's isolation.
func TestSignalQuorumEndKeepsOperatorForceOpen(t *testing.T) {
	s := startRedis(t)
	a := newReplica(t, s.Addr(), "a", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	b := newReplica(t, s.Addr(), "b", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	b.breaker("k").ForceOpen() // the operator's
	time.Sleep(4 * poll)
	a.trip("k")
	waitFor(t, hold, "quorum seen by b", func() bool { return b.sig.View("k").Quorum })
	a.breaker("k").Reset()
	waitFor(t, hold, "quorum gone for b", func() bool { return !b.sig.View("k").Quorum })
	time.Sleep(4 * poll)
	if !b.breaker("k").Forced() {
		t.Error("the end of the fleet's quorum released an operator's ForceOpen")
	}
}

// A breaker that flaps on one replica: the others follow and, once it
// settles closed, everyone is released; nothing races.
func TestSignalFlappingBreaker(t *testing.T) {
	s := startRedis(t)
	a := newReplica(t, s.Addr(), "a", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	b := newReplica(t, s.Addr(), "b", []string{"k"}, fleet.Keys("k"), fleet.Quorum(1, 0))
	sawHeld := false
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		a.trip("k")
		time.Sleep(time.Duration(i%7) * 10 * time.Millisecond)
		sawHeld = sawHeld || b.held("k")
		_ = b.call("k", nil)
		a.breaker("k").Reset()
		time.Sleep(time.Duration(i%5) * 10 * time.Millisecond)
	}
	waitFor(t, hold, "b released after the flapping stopped closed", func() bool { return !b.held("k") })
	time.Sleep(6 * poll)
	if b.held("k") {
		t.Error("b held again after the flapping stopped")
	}
	t.Logf("b was seen held during flapping: %v", sawHeld)
}
