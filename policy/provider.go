package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/recourse-go/recourse/timeline"
)

// ErrNotFound is returned (wrapped) by a Provider that has no policy for a key.
var ErrNotFound = errors.New("recourse/policy: no policy for key")

// Provider resolves a key to its policy. Implementations must be safe for
// concurrent use. An error means "no usable policy": the executor then
// applies its missing-policy mode.
type Provider interface {
	Policy(ctx context.Context, key Key) (Policy, error)
}

// Versioned is implemented by providers whose policies change at run time.
// Version must change whenever any policy does; the executor recompiles a
// key's chain when it sees a new version, and otherwise never asks again.
type Versioned interface {
	Version() uint64
}

// ReloadSubscriber is implemented by providers that reload their
// policies at run time and report each reload (FileProvider,
// RemoteProvider). SubscribeReloads adds o to the observers that get
// OnPolicyReload for every later reload — as ReloadObserver does at
// construction — and returns a func that removes it (safe to call more
// than once). An executor built over such a provider subscribes its own
// observer (recourse.WithObserver), so that observer need not be passed
// to ReloadObserver as well. A nil or no-op o (see timeline.IsNoop) is
// not added.
type ReloadSubscriber interface {
	SubscribeReloads(o timeline.Observer) (unsubscribe func())
}

// Sourced is implemented by providers that name where a policy came from;
// the name becomes the timeline attribute policy_source.
type Sourced interface {
	Source() string
}

// StaticProvider serves policies held in memory. Its zero value is an
// empty provider, ready to use; it is safe for concurrent use, and Set
// takes effect for the next call of every executor using it.
type StaticProvider struct {
	mu       sync.RWMutex
	policies map[Key]Policy
	fallback *Policy
	version  atomic.Uint64
}

// NewStaticProvider returns a provider serving ps (each under its own Key).
func NewStaticProvider(ps ...Policy) *StaticProvider {
	s := &StaticProvider{}
	for _, p := range ps {
		s.Set(p)
	}
	return s
}

// Set adds or replaces the policy for p.Key.
func (s *StaticProvider) Set(p Policy) {
	s.mu.Lock()
	if s.policies == nil {
		s.policies = make(map[Key]Policy)
	}
	s.policies[p.Key] = p
	s.mu.Unlock()
	s.version.Add(1)
}

// SetDefault sets the policy served for keys that have none of their own.
func (s *StaticProvider) SetDefault(p Policy) {
	s.mu.Lock()
	s.fallback = &p
	s.mu.Unlock()
	s.version.Add(1)
}

// Policy returns the policy for key, the default policy (with Key set to
// key) if there is one, or an error wrapping ErrNotFound. A nil ctx is an
// error.
func (s *StaticProvider) Policy(ctx context.Context, key Key) (Policy, error) {
	if ctx == nil {
		return Policy{}, errNilContext
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p, ok := s.policies[key]; ok {
		return p, nil
	}
	if s.fallback != nil {
		p := *s.fallback
		p.Key = key
		return p, nil
	}
	return Policy{}, fmt.Errorf("%w %q", ErrNotFound, key.String())
}

// Version changes each time Set or SetDefault is called.
func (s *StaticProvider) Version() uint64 { return s.version.Load() }

// Source returns "static".
func (s *StaticProvider) Source() string { return "static" }
