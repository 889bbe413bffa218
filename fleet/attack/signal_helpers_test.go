package fleetattack

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/fleet"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
	"github.com/redis/go-redis/v9"
)

const poll = 50 * time.Millisecond

var errDown = errors.New("dependency down")

// replica is one in-process "replica": its own executor with a breaker per
// key (one failure trips it, cooldown an hour), its own client and signal.
type replica struct {
	t      *testing.T
	id     string
	exec   *recourse.Executor
	sig    *fleet.BreakerSignal
	client *redis.Client
	cancel context.CancelFunc
	done   chan error
}

func breakerPolicy() []policy.Option {
	return []policy.Option{policy.MaxAttempts(1), policy.WithCircuitBreaker(policy.CircuitPolicy{
		Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Hour, HalfOpenProbes: 1})}
}

// newReplica starts a replica on addr that has breakers for keys (and has
// made one successful call on each, so that its breakers exist).
func newReplica(t *testing.T, addr, id string, keys []string, opts ...fleet.SignalOption) *replica {
	t.Helper()
	r := &replica{t: t, id: id, client: redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true,
		DialerRetries: 1, DialerRetryTimeout: time.Millisecond})}
	opts = append([]fleet.SignalOption{fleet.Replica(id), fleet.PollInterval(poll)}, opts...)
	r.sig = fleet.NewBreakerSignal(r.client, opts...)
	eo := []recourse.Option{recourse.WithObserver(r.sig)}
	for _, k := range keys {
		eo = append(eo, recourse.WithPolicy(k, breakerPolicy()...))
	}
	r.exec = recourse.NewExecutor(eo...)
	for _, k := range keys {
		r.call(k, nil)
	}
	r.run()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.sig.Run(ctx, r.exec) }()
}

// stop ends Run (once) and waits for it.
func (r *replica) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("replica %s: Run returned %v", r.id, err)
		}
	case <-time.After(10 * time.Second):
		r.t.Errorf("replica %s: Run did not return 10s after its context ended", r.id)
	}
	r.cancel = nil
	_ = r.client.Close()
}

func (r *replica) call(key string, err error) error {
	return r.exec.Do(context.Background(), key, func(context.Context) error { return err })
}

// trip opens this replica's own breaker for key.
func (r *replica) trip(key string) {
	r.t.Helper()
	for i := 0; i < 3 && r.breaker(key).State().String() != "open"; i++ {
		_ = r.call(key, errDown)
	}
	if s := r.breaker(key).State().String(); s != "open" {
		r.t.Fatalf("replica %s: breaker %s is %s after failures", r.id, key, s)
	}
}

func (r *replica) breaker(key string) *middleware.CircuitBreaker { return r.exec.Breaker(key) }

// held reports whether key's breaker is held open (forced) on this replica.
func (r *replica) held(key string) bool {
	b := r.breaker(key)
	return b != nil && b.Forced()
}

// fakeBreakers is a Breakers of plain breakers, some keys nil.
type fakeBreakers map[string]*middleware.CircuitBreaker

func (f fakeBreakers) Breaker(key string) *middleware.CircuitBreaker { return f[key] }

func opened(key string) timeline.BreakerStateChange {
	return timeline.BreakerStateChange{Key: key, From: "closed", To: "open", At: time.Now()}
}

// hold is how long a change may take to show: a few polls plus slack.
const hold = 3 * time.Second

// reportTTL is the default report lifetime at a 50ms poll (at least 1s).
const reportTTL = time.Second
