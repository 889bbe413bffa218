// Package bench measures recourse against failsafe-go and a raw call, in
// the same `go test -bench` run, and holds the simulations of cmd/sim.
//
// It is a module of its own so that failsafe-go is never a dependency of
// recourse itself.
//
//	cd bench && go test -run '^$' -bench . -benchmem
package bench
