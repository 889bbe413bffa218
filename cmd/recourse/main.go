// Command recourse checks and explains policy files.
//
//	recourse check FILE          validate FILE; print every key's normalized policy and chain
//	recourse explain FILE KEY    print one key's normalized policy and chain
//
// check exits 0 for a valid file; for an invalid one it prints every
// error — each naming the key, the field and the value — on stderr and
// exits 1. FILE is read as policy.NewFileProvider reads it: a regular
// file (not a FIFO or a device) of at most policy.DefaultMaxPolicyBytes,
// JSON if its name ends in ".json", else YAML; an empty or comment-only
// file is an error. Budgets and triggers a policy names are resolved by
// the executor at run time; here they are shown by name.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage:
  recourse check FILE          validate a policy file and print each key's chain
  recourse explain FILE KEY    print one key's policy and chain
`

// run is the command, testable: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, path := args[0], args[1]
	switch {
	case cmd == "check" && len(args) == 2:
	case cmd == "explain" && len(args) == 3:
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	set, err := load(path)
	if err != nil {
		fmt.Fprintf(stderr, "recourse: cannot load %s:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		return 1
	}
	if cmd == "explain" {
		key := policy.ParseKey(args[2])
		p, ok := set.Policies[key]
		note := ""
		if !ok {
			if set.Default == nil {
				fmt.Fprintf(stderr, "recourse: %s names no policy for %q and has no default section\n", path, args[2])
				return 1
			}
			p, note = *set.Default, " (from the default section)"
			p.Key = key
		}
		return explain(stdout, stderr, p, note)
	}
	fmt.Fprintf(stdout, "%s: %d keys, valid\n\n", path, len(set.Policies))
	code := 0
	for _, k := range set.Keys() {
		code = max(code, explain(stdout, stderr, set.Policies[k], ""))
	}
	if set.Default != nil {
		p := *set.Default
		p.Key = policy.Key{Name: policy.DefaultSection}
		code = max(code, explain(stdout, stderr, p, " (for keys the file does not name)"))
	}
	return code
}

// load reads and parses the policy file at path as a policy.FileProvider
// does: a regular file (not a FIFO or a device) of at most
// policy.DefaultMaxPolicyBytes, not empty (policy.ErrNoPolicies), its
// format by extension.
func load(path string) (*policy.PolicySet, error) {
	fp, err := policy.NewFileProvider(path, policy.WatchInterval(0))
	if err != nil {
		// The provider's errors name the source; path is already said.
		msg := strings.TrimPrefix(err.Error(), "recourse/policy: loading file:"+path+": ")
		return nil, &loadError{msg: msg, err: err}
	}
	defer fp.Close()
	return fp.Set(), nil
}

// loadError is a provider's error with its message shortened.
type loadError struct {
	msg string
	err error
}

func (e *loadError) Error() string { return e.msg }
func (e *loadError) Unwrap() error { return e.err }

// explain prints one policy, normalized, and its compiled chain in order.
func explain(stdout, stderr io.Writer, p policy.Policy, note string) int {
	np, clamped := p.Normalize()
	comp := policy.Compiler{}
	if np.Budget != "" {
		comp.Budget = middleware.UnlimitedBudget{} // stands in: budgets are the executor's
	}
	if np.Hedge.Budget != "" {
		comp.HedgeBudget = middleware.UnlimitedBudget{}
	}
	c, err := comp.Compile(np)
	if err != nil {
		fmt.Fprintf(stderr, "recourse: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s%s\n", p.Key.String(), note)
	if np.ID != "" {
		fmt.Fprintf(stdout, "  id: %s\n", np.ID)
	}
	if len(clamped) > 0 {
		sort.Strings(clamped)
		fmt.Fprintf(stdout, "  clamped by Normalize: %s\n", strings.Join(clamped, ", "))
	}
	if np.Budget != "" {
		fmt.Fprintf(stdout, "  budget: %q, %d token(s) per retry or hedge\n", np.Budget, np.BudgetCost)
	}
	fmt.Fprintln(stdout, "  chain, outermost first:")
	for i, s := range c.Stages {
		fmt.Fprintf(stdout, "    %d. %-16s %s\n", i+1, s.Name, s.Detail)
	}
	fmt.Fprintln(stdout)
	return 0
}
