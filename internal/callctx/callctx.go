// Package callctx holds the context keys that package timeline and the
// recorder (internal/record) share, so that timeline needs to import no
// other package of recourse to find the call running in a context. It sits
// below timeline in the chain and imports nothing of the project.
package callctx

import (
	"sync"
	"time"
)

// RecorderKey is the context key of the running call's recorder.
type RecorderKey struct{}

// CaptureKey is the context key of the Slot that timeline.Record installs.
type CaptureKey struct{}

// Call is what the recorder stored under RecorderKey tells an observer
// about the call it records.
type Call interface {
	// Root returns the identity of the call (a pointer, the same for all
	// its tries, hedges included, and unique among calls in flight), its
	// key and its start; ok is false when there is no call (a nil
	// recorder hiding an enclosing call's).
	Root() (id uintptr, key string, start time.Time, ok bool)
}

// Slot holds one value under a mutex: the last timeline of a captured call.
type Slot[T any] struct {
	mu sync.Mutex
	v  T
}

// Set stores v. A nil Slot ignores it.
func (s *Slot[T]) Set(v T) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.v = v
	s.mu.Unlock()
}

// Get returns the stored value (the zero value for a nil Slot).
func (s *Slot[T]) Get() T {
	if s == nil {
		var zero T
		return zero
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v
}
