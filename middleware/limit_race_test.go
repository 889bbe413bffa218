//go:build race

package middleware

// raceOn is set when the race detector is on: sync.Pool then drops items
// at random, so allocation counts of pooled paths are not meaningful.
const raceOn = true
