// Command recourse checks and explains policy files, and draws calls.
//
//	recourse check [--external NAME]... FILE        validate FILE; print every key's needs, normalized policy and chain
//	recourse explain [--external NAME]... FILE KEY  print one key's needs, normalized policy and chain
//	recourse timeline [-svg OUT] [FILE|-]           draw each logged call as a waterfall
//
// check exits 0 for a valid file; for an invalid one it prints every
// error — each naming the key, the field and the value — on stderr and
// exits 1. FILE is read as policy.NewFileProvider reads it: a regular
// file (not a FIFO or a device) of at most policy.DefaultMaxPolicyBytes,
// JSON if its name ends in ".json", else YAML; an empty or comment-only
// file is an error.
//
// A file is also invalid when a policy (the default section included)
// names a budget (budget, hedge.budget), a hedge trigger (hedge.trigger)
// or a classifier (classifier) that nothing resolves: a budget must be
// declared in the file's budgets section or be the built-in "unlimited";
// a trigger must be a built-in latency quantile ("p90", "p99.9"); no
// classifier is built in. A name registered in code (recourse.WithBudget,
// WithHedgeTrigger, WithClassifier) is accepted when given with
// --external NAME (repeatable; also --external=NAME). For every key the
// output lists what it needs and where each name comes from: the file,
// built in, or external.
//
// timeline reads the JSON lines timeline.NewZerologObserver writes (from
// FILE, or stdin for "-" or no FILE), skipping other lines, groups them by
// call_id and draws each call as a waterfall on stdout: a header (key,
// outcome, total time, tries), then one bar per try on a common time scale,
// waits between tries as "·", hedges on lanes of their own. With -svg OUT it
// also writes a self-contained SVG of the same waterfalls ("-svg -": the SVG
// alone, on stdout). It exits 1 when the input holds no call to draw.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/recourse-go/recourse/hedge"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage:
  recourse check [--external NAME]... FILE        validate a policy file and print each key's needs and chain
  recourse explain [--external NAME]... FILE KEY  print one key's needs, policy and chain
  recourse timeline [-svg OUT] [FILE|-]           draw the calls in NewZerologObserver's JSON lines as waterfalls

--external NAME accepts a budget, hedge trigger or classifier NAME that is
registered in code (WithBudget, WithHedgeTrigger, WithClassifier).
`

// parseArgs splits the arguments after the command into positional ones
// and --external names (anywhere among them; "--" ends the options).
func parseArgs(args []string) (pos []string, external map[string]bool, ok bool) {
	external = map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), external, true
		case a == "--external" || a == "-external":
			if i+1 >= len(args) || args[i+1] == "" {
				return nil, nil, false
			}
			i++
			external[args[i]] = true
		case strings.HasPrefix(a, "--external=") || strings.HasPrefix(a, "-external="):
			_, name, _ := strings.Cut(a, "=")
			if name == "" {
				return nil, nil, false
			}
			external[name] = true
		case strings.HasPrefix(a, "-") && a != "-":
			return nil, nil, false
		default:
			pos = append(pos, a)
		}
	}
	return pos, external, true
}

// run is the command, testable: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	if cmd == "timeline" {
		return runTimeline(args[1:], os.Stdin, stdout, stderr)
	}
	pos, external, ok := parseArgs(args[1:])
	switch {
	case !ok:
	case cmd == "check" && len(pos) == 1:
	case cmd == "explain" && len(pos) == 2:
	default:
		ok = false
	}
	if !ok {
		fmt.Fprint(stderr, usage)
		return 2
	}
	path := pos[0]
	set, err := load(path)
	if err != nil {
		fmt.Fprintf(stderr, "recourse: cannot load %s:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		return 1
	}
	r := resolver{set: set, external: external}
	if cmd == "explain" {
		key := policy.ParseKey(pos[1])
		p, ok := set.Policies[key]
		note := ""
		if !ok {
			if set.Default == nil {
				fmt.Fprintf(stderr, "recourse: %s names no policy for %q and has no default section\n", path, pos[1])
				return 1
			}
			p, note = *set.Default, " (from the default section)"
			p.Key = key
		}
		needs := r.needs(p, p.Key.String())
		code := explain(stdout, stderr, p, note, needs)
		return max(code, report(stderr, needs))
	}
	type section struct {
		p     policy.Policy
		note  string
		needs []need
	}
	var sections []section
	for _, k := range set.Keys() {
		p := set.Policies[k]
		sections = append(sections, section{p, "", r.needs(p, k.String())})
	}
	if set.Default != nil {
		p := *set.Default
		p.Key = policy.Key{Name: policy.DefaultSection}
		sections = append(sections, section{p, " (for keys the file does not name)", r.needs(p, policy.DefaultSection)})
	}
	unresolved := 0
	for _, s := range sections {
		for _, n := range s.needs {
			if n.from == "" {
				unresolved++
			}
		}
	}
	if unresolved == 0 {
		fmt.Fprintf(stdout, "%s: %d keys, valid\n", path, len(set.Policies))
	} else {
		fmt.Fprintf(stdout, "%s: %d keys, invalid: %d name(s) nothing resolves (see stderr)\n", path, len(set.Policies), unresolved)
	}
	ps := make([]policy.Policy, len(sections))
	for i, s := range sections {
		ps[i] = s.p
	}
	fmt.Fprintf(stdout, "budgets declared: %s\n\n", r.declared(ps))
	code := 0
	for _, s := range sections {
		code = max(code, explain(stdout, stderr, s.p, s.note, s.needs))
	}
	for _, s := range sections {
		code = max(code, report(stderr, s.needs))
	}
	return code
}

// externalTrigger stands in for a trigger registered in code, which only
// the program that registers it can describe.
type externalTrigger struct{}

func (externalTrigger) Delay() (time.Duration, bool) { return 0, false }
func (externalTrigger) Name() string                 { return "registered in code (--external)" }

// need is one name a policy uses and where it comes from.
type need struct {
	key   string // the policy's key, as the file spells it
	field string // "budget", "hedge.budget", "hedge.trigger", "classifier"
	name  string
	from  string // "" when nothing resolves it
}

// resolver says where the names a policy uses come from, in the order an
// executor resolves them: registered in code (--external) first, then the
// file's budgets section, then the built-ins.
type resolver struct {
	set      *policy.PolicySet
	external map[string]bool
}

const fromExternal = "external: registered in code"

// needs lists the names p uses that an executor resolves: its budget, its
// hedges' budget and trigger (when hedging is on) and its classifier.
func (r resolver) needs(p policy.Policy, key string) []need {
	var out []need
	if p.Budget != "" {
		out = append(out, need{key, "budget", p.Budget, r.budget(p.Budget)})
	}
	if p.Hedge.Enabled && p.Hedge.Budget != "" {
		out = append(out, need{key, "hedge.budget", p.Hedge.Budget, r.budget(p.Hedge.Budget)})
	}
	if p.Hedge.Enabled && p.Hedge.Trigger != "" {
		from := ""
		if r.external[p.Hedge.Trigger] {
			from = fromExternal
		} else if q, ok := policy.QuantileTrigger(p.Hedge.Trigger); ok {
			from = "built in: latency quantile " + strconv.FormatFloat(q, 'g', 6, 64)
		}
		out = append(out, need{key, "hedge.trigger", p.Hedge.Trigger, from})
	}
	if p.Classifier != "" {
		from := ""
		if r.external[p.Classifier] {
			from = fromExternal
		}
		out = append(out, need{key, "classifier", p.Classifier, from})
	}
	return out
}

func (r resolver) budget(name string) string {
	switch spec, declared := r.set.Budgets[name]; {
	case r.external[name] && declared:
		return fromExternal + ", over the file's declaration"
	case r.external[name]:
		return fromExternal
	case declared:
		return "declared in the file: " + spec.Kind
	case name == policy.BudgetUnlimited:
		return "built in"
	}
	return ""
}

// declared lists the file's budgets with their kinds, marking those no
// policy uses.
func (r resolver) declared(ps []policy.Policy) string {
	if len(r.set.Budgets) == 0 {
		return "none"
	}
	used := map[string]bool{}
	for _, p := range ps {
		used[p.Budget] = true
		if p.Hedge.Enabled {
			used[p.Hedge.Budget] = true
		}
	}
	names := make([]string, 0, len(r.set.Budgets))
	for name := range r.set.Budgets {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		names[i] = fmt.Sprintf("%s (%s)", name, r.set.Budgets[name].Kind)
		if !used[name] {
			names[i] += " [unused]"
		}
	}
	return strings.Join(names, ", ")
}

// report prints an error on stderr for each need nothing resolves, naming
// key, field and name, and returns 1 if there was one.
func report(stderr io.Writer, needs []need) int {
	code := 0
	for _, n := range needs {
		if n.from != "" {
			continue
		}
		var why string
		switch n.field {
		case "budget", "hedge.budget":
			why = fmt.Sprintf(`no such budget: not declared in the file's budgets section nor built in ("unlimited"); declare it, or pass --external %s if it is registered in code (WithBudget)`, n.name)
		case "hedge.trigger":
			why = fmt.Sprintf(`no such hedge trigger: not built in (a latency quantile "pNN" or "pNN.N", such as "p99"); pass --external %s if it is registered in code (WithHedgeTrigger)`, n.name)
		default:
			why = fmt.Sprintf(`no such classifier: none is built in; pass --external %s if it is registered in code (WithClassifier)`, n.name)
		}
		fmt.Fprintf(stderr, "recourse: policy %q: %s = %q: %s\n", n.key, n.field, n.name, why)
		code = 1
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

// explain prints one policy, normalized, what it needs and its compiled
// chain in order.
func explain(stdout, stderr io.Writer, p policy.Policy, note string, needs []need) int {
	np, clamped := p.Normalize()
	comp := policy.Compiler{}
	if np.Budget != "" {
		comp.Budget = middleware.UnlimitedBudget{} // stands in: budgets are the executor's
	}
	if np.Hedge.Budget != "" {
		comp.HedgeBudget = middleware.UnlimitedBudget{}
	}
	for _, n := range needs {
		if n.field != "hedge.trigger" || n.from == "" {
			continue
		}
		if q, ok := policy.QuantileTrigger(n.name); ok && !strings.HasPrefix(n.from, fromExternal) {
			// As the executor builds it: the quantile, on the policy's
			// delay until the key's latencies are known.
			comp.Trigger = hedge.NewLatencyTrigger(hedge.NewLatencyTracker(0), q, hedge.Fallback(np.Hedge.Delay))
		} else {
			comp.Trigger = externalTrigger{}
		}
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
	if len(needs) > 0 {
		fmt.Fprintln(stdout, "  needs:")
		for _, n := range needs {
			from := n.from
			if from == "" {
				from = "UNRESOLVED: not declared in the file, not built in"
			}
			fmt.Fprintf(stdout, "    %s %q (%s)\n", n.field, n.name, from)
		}
	}
	fmt.Fprintln(stdout, "  chain, outermost first:")
	for i, s := range c.Stages {
		fmt.Fprintf(stdout, "    %d. %-16s %s\n", i+1, s.Name, s.Detail)
	}
	fmt.Fprintln(stdout)
	return 0
}
