package fleet

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// run is the budget's one background goroutine: it sends waiting
// decisions to Redis in pipelined batches, and every flush interval sends
// the first tries counted since (which also probes Redis after a failure).
func (b *Budget) run() {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.flush)
	defer tick.Stop()
	batch := make([]*request, 0, maxBatch)
	for {
		select {
		case <-b.quit:
			b.drain(errClosed)
			if !b.down(time.Now()) {
				b.roundTrip(nil)
			}
			return
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		more:
			for len(batch) < maxBatch {
				select {
				case r := <-b.reqs:
					batch = append(batch, r)
				default:
					break more
				}
			}
			if b.down(time.Now()) {
				// Their callers have gone to the fallback already.
				b.answer(batch, errDown)
				continue
			}
			b.roundTrip(batch)
			clear(batch)
		case <-tick.C:
			if b.pending.Load() > 0 || b.downUntil.Load() != 0 {
				if !b.down(time.Now()) {
					b.roundTrip(nil)
				}
			}
		}
	}
}

// errDown answers requests that reached the worker while Redis is left
// alone.
var errDown = &redisDownError{}

// redisDownError is the error of a request not sent because Redis failed
// within the probe interval.
type redisDownError struct{}

func (*redisDownError) Error() string { return "fleet: redis unavailable, not asked" }

// drain answers every waiting request with err.
func (b *Budget) drain(err error) {
	for {
		select {
		case r := <-b.reqs:
			r.reply <- reply{err: err}
		default:
			return
		}
	}
}

// answer replies err to every request of batch.
func (b *Budget) answer(batch []*request, err error) {
	for _, r := range batch {
		r.reply <- reply{err: err}
	}
}

// roundTrip runs the budget script once per request of batch (once with
// nothing wanted if batch is empty) in one pipeline, the first run
// carrying the first tries counted since the last flush. Success marks
// Redis up; an error marks it down, answers the requests with it and
// keeps the first tries for the next flush.
func (b *Budget) roundTrip(batch []*request) {
	firsts, from := b.takePending()
	n := max(len(batch), 1)
	ctx, cancel := context.WithTimeout(context.Background(), max(4*b.cfg.timeout, 100*time.Millisecond))
	defer cancel()
	cmds := b.exec(ctx, firsts, batch, n, false)
	if redis.HasErrorPrefix(cmds[0].Err(), "NOSCRIPT") {
		// Redis restarted (or flushed its scripts): EVAL loads it again.
		// NOSCRIPT means no run happened, so nothing is counted twice.
		cmds = b.exec(ctx, firsts, batch, n, true)
	}
	var failed error
	for i, c := range cmds {
		res, err := c.Int64Slice()
		if err == nil && len(res) != 2 {
			err = &scriptResultError{got: len(res)}
		}
		if err != nil {
			failed = err
		}
		if i < len(batch) {
			if err != nil {
				batch[i].reply <- reply{err: err}
			} else {
				batch[i].reply <- reply{grant: res[0]}
			}
		}
	}
	if cmds[0].Err() != nil {
		b.restorePending(firsts, from)
	}
	if failed != nil {
		b.markDown()
	} else {
		b.downUntil.Store(0)
	}
}

// exec sends the script runs of a round trip in one pipeline; eval sends
// the script's source instead of its hash.
func (b *Budget) exec(ctx context.Context, firsts int64, batch []*request, n int, eval bool) []*redis.Cmd {
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.Cmd, n)
	keys := []string{b.key}
	for i := range n {
		var want, least int64
		if i < len(batch) {
			want, least = batch[i].want, batch[i].least
		}
		add := int64(0)
		if i == 0 {
			add = firsts
		}
		args := append([]any{strconv.FormatInt(add, 10), strconv.FormatInt(want, 10), strconv.FormatInt(least, 10)}, b.args...)
		if eval {
			cmds[i] = budgetScript.Eval(ctx, pipe, keys, args...)
		} else {
			cmds[i] = budgetScript.EvalSha(ctx, pipe, keys, args...)
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	return cmds
}

// takePending takes the first tries counted since the last flush. Counts
// older than the window are scaled down to the window's share, so that a
// long Redis outage does not credit the fleet with first tries that have
// since left the window.
func (b *Budget) takePending() (n, from int64) {
	from = b.pendingFrom.Load()
	n = b.pending.Swap(0)
	if n <= 0 {
		return 0, 0
	}
	age := time.Duration(time.Now().UnixNano() - from)
	if age > b.cfg.window {
		n = int64(float64(n) * float64(b.cfg.window) / float64(age))
	}
	return n, from
}

// restorePending puts back first tries a failed flush did not send,
// counted from when the oldest of them was.
func (b *Budget) restorePending(n, from int64) {
	if n <= 0 {
		return
	}
	b.pending.Add(n)
	if cur := b.pendingFrom.Load(); from < cur {
		b.pendingFrom.CompareAndSwap(cur, from)
	}
}

// scriptResultError reports a budget script reply of the wrong shape.
type scriptResultError struct{ got int }

func (e *scriptResultError) Error() string {
	return "fleet: budget script returned " + strconv.Itoa(e.got) + " values, want 2"
}
