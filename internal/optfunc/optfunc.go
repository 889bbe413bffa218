// Package optfunc holds the functional-option plumbing that packages
// middleware and hedge share: an option is a func(target any) that sets
// what it knows on a target of its own type and ignores any other, so
// that one option type serves every constructor of a package.
package optfunc

// For returns an option of type O that applies f to targets of type T and
// leaves any other target alone.
func For[O ~func(any), T any](f func(T)) O {
	return func(target any) {
		if t, ok := target.(T); ok {
			f(t)
		}
	}
}

// Apply applies opts to target in order, skipping nil ones.
func Apply[O ~func(any)](target any, opts []O) {
	for _, o := range opts {
		if o != nil {
			o(target)
		}
	}
}
