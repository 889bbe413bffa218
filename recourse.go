package recourse

import (
	"context"
	"sync/atomic"

	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
)

var defaultExec atomic.Pointer[Executor]

// Default returns the executor the package-level functions use. Until
// SetDefault is called it is NewDefaultExecutor().
func Default() *Executor {
	if e := defaultExec.Load(); e != nil {
		return e
	}
	defaultExec.CompareAndSwap(nil, NewDefaultExecutor())
	return defaultExec.Load()
}

// SetDefault makes e the executor of the package-level functions; nil
// restores NewDefaultExecutor().
func SetDefault(e *Executor) { defaultExec.Store(e) }

// Do runs op under key's policy on the default executor. A nil ctx or op
// is an error (ErrNilContext, ErrNilOperation) naming key, not a panic.
func Do(ctx context.Context, key string, op func(context.Context) error) error {
	return Default().Do(ctx, key, op)
}

// DoValue runs op under key's policy on the default executor and returns
// its value.
func DoValue[T any](ctx context.Context, key string, op func(context.Context) (T, error)) (T, error) {
	return DoValueWith(ctx, Default(), key, op)
}

// DoWithTimeline is Do that also returns the call's timeline.
func DoWithTimeline(ctx context.Context, key string, op func(context.Context) error) (*timeline.Timeline, error) {
	return Default().DoWithTimeline(ctx, key, op)
}

// DoValueWithTimeline is DoValue that also returns the call's timeline.
func DoValueWithTimeline[T any](ctx context.Context, key string, op func(context.Context) (T, error)) (T, *timeline.Timeline, error) {
	return DoValueTimelineWith(ctx, Default(), key, op)
}

// ParseKey parses "namespace.name" into a policy key; see policy.ParseKey.
func ParseKey(s string) policy.Key { return policy.ParseKey(s) }
