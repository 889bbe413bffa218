package middleware

import (
	"github.com/recourse-go/recourse/clock"
	"github.com/recourse-go/recourse/internal/clockx"
	"github.com/recourse-go/recourse/internal/optfunc"
)

// Option configures a constructor of this package. Each option's comment
// names the constructors that read it; the others ignore it, so one list
// of options (a fake clock, say) can be handed to all of them.
type Option func(target any)

// option returns an Option that applies f to targets of type T and leaves
// any other target alone.
func option[T any](f func(T)) Option { return optfunc.For[Option](f) }

// applyOptions applies opts to target, skipping nil ones.
func applyOptions(target any, opts []Option) { optfunc.Apply(target, opts) }

// clocked is a target that keeps time.
type clocked interface{ setClock(clock.Clock) }

// WithClock sets the clock that Retry sleeps its backoffs on, Observe
// stamps records with, NewBulkhead and NewAdaptiveLimit bound waits and
// measure latencies with, and NewRatioBudget and NewTokenBucketBudget keep
// their windows and refills on. The default, and what nil gives, is
// clock.Real.
func WithClock(c clock.Clock) Option {
	return option(func(t clocked) { t.setClock(clockx.Or(c)) })
}

// clockOnly collects the clock of a constructor that reads no other option.
type clockOnly struct{ clock clock.Clock }

func (c *clockOnly) setClock(k clock.Clock) { c.clock = k }
