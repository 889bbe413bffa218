package policy

import (
	"strconv"
	"strings"
)

// BudgetUnlimited is the budget name every executor resolves with nothing
// registered: a budget that admits every retry and hedge. A policy file may
// name it without declaring it.
const BudgetUnlimited = "unlimited"

// QuantileTrigger reports whether name is a built-in latency-quantile hedge
// trigger — "p" and a percentile above 0 and below 100, such as "p90",
// "p99" or "p99.9" — and returns its quantile (0.9, 0.99, 0.999). A policy
// may name such a trigger (HedgePolicy.Trigger) without registering it; a
// trigger registered in code under the same name wins.
func QuantileTrigger(name string) (q float64, ok bool) {
	digits, found := strings.CutPrefix(name, "p")
	if !found || digits == "" || strings.ContainsAny(digits, "+-eEnNiIxX_ ") {
		return 0, false
	}
	whole, frac, dot := strings.Cut(digits, ".")
	if len(whole) < 1 || len(whole) > 2 || (len(whole) == 2 && whole[0] == '0') || (dot && frac == "") {
		return 0, false
	}
	pct, err := strconv.ParseFloat(digits, 64)
	if err != nil || !(pct > 0 && pct < 100) {
		return 0, false
	}
	return pct / 100, true
}
