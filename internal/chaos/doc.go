// Package chaos holds recourse's chaos suite (in its tests): many
// concurrent callers against dependencies that flap, stall, panic and
// return garbage, with random cancellations, checking that nothing
// escapes, nothing leaks, every call ends on time and every timeline is
// well formed. It runs with the rest of the tests, under -race in CI.
package chaos
