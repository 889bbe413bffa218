package fleet

import (
	"math"
	"time"

	"github.com/recourse-go/recourse/middleware"
)

// BudgetOption configures a Budget of NewBudget.
type BudgetOption func(*budgetConfig)

// budgetConfig is what the options set; NewBudget fills in the defaults
// and clamps what is out of range.
type budgetConfig struct {
	ratio    float64
	floor    float64
	window   time.Duration
	fallback middleware.Budget
	timeout  time.Duration
	flush    time.Duration
	probe    time.Duration
	maxLease int
	leaseTTL time.Duration
	prefix   string
}

// Defaults of NewBudget.
const (
	defaultRatio    = 0.1
	defaultFloor    = 1
	defaultWindow   = 10 * time.Second
	defaultTimeout  = 20 * time.Millisecond
	defaultFlush    = 250 * time.Millisecond
	defaultProbe    = time.Second
	defaultMaxLease = 8
	defaultLeaseTTL = 250 * time.Millisecond
	defaultPrefix   = "recourse:fleet:"
)

// Ratio sets the retries and hedges allowed fleet-wide per first try over
// the window (default 0.1). A negative or NaN ratio is taken as 0: only the
// floor admits extras. A huge (or +Inf) ratio admits every retry: the
// budget then only counts.
func Ratio(r float64) BudgetOption { return func(c *budgetConfig) { c.ratio = r } }

// Floor sets the retries and hedges per second allowed fleet-wide
// whatever the traffic (default 1), so that a quiet key can still retry.
// It counts once for the whole fleet, not once per replica. A negative or
// NaN floor is taken as 0; a huge (or +Inf) one admits every retry.
func Floor(perSecond float64) BudgetOption { return func(c *budgetConfig) { c.floor = perSecond } }

// Fallback sets the budget that decides retries and hedges while Redis is
// unreachable or slow (and after Close). It is told of every first try,
// asked (its answer unused) for every retry and hedge the fleet allowed,
// and told every try's outcome if it implements middleware.Outcomes, so it
// is warm when it takes over and does not grant the window's extras a
// second time. The default is a local ratio budget with the
// fleet budget's ratio, floor and window — so during a Redis outage the
// floor counts once per replica. A nil b keeps the default: the fallback
// is never unlimited unless you pass middleware.UnlimitedBudget{}.
// Budgets that implement middleware.Releaser should not be used: Release
// is not passed on.
func Fallback(b middleware.Budget) BudgetOption {
	return func(c *budgetConfig) { c.fallback = b }
}

// Window sets the sliding window over which tries are counted (default
// 10s, also for zero or negative). It is split into 10 slots that expire
// one at a time; positive windows shorter than 10ms are taken as 10ms.
func Window(d time.Duration) BudgetOption { return func(c *budgetConfig) { c.window = d } }

// DecisionTimeout sets how long a retry or hedge waits for Redis before
// the fallback decides it (default 20ms, also for zero or negative). A
// timeout also makes the budget
// leave Redis alone for the probe interval (see ProbeInterval).
func DecisionTimeout(d time.Duration) BudgetOption { return func(c *budgetConfig) { c.timeout = d } }

// FlushInterval sets how often first tries counted locally are sent to
// Redis (default 250ms; zero or negative keeps it). They are also sent
// with every retry decision.
func FlushInterval(d time.Duration) BudgetOption { return func(c *budgetConfig) { c.flush = d } }

// ProbeInterval sets how long the budget leaves Redis alone after a
// failed or slow round trip (default 1s; zero or negative keeps it): the fallback decides meanwhile,
// then the background flush asks Redis again, and the fleet budget resumes
// as soon as it answers.
func ProbeInterval(d time.Duration) BudgetOption { return func(c *budgetConfig) { c.probe = d } }

// MaxLease sets the most tokens one round trip may take for later
// decisions of this replica (default 8, also for zero or negative; 1
// turns leasing off). A replica
// starts by taking one token per decision and doubles its lease, up to
// this, while its decisions come faster than the lease lifetime; leased
// tokens are charged fleet-wide when taken, so leasing never lets the
// fleet exceed its budget, and tokens left when a lease expires are lost.
func MaxLease(n int) BudgetOption { return func(c *budgetConfig) { c.maxLease = n } }

// LeaseTTL sets how long leased tokens may be spent (default 250ms; zero
// or negative keeps it).
func LeaseTTL(d time.Duration) BudgetOption { return func(c *budgetConfig) { c.leaseTTL = d } }

// KeyPrefix sets the prefix of the budget's Redis key (default
// "recourse:fleet:"); the key is prefix + "{" + name + "}:budget".
func KeyPrefix(p string) BudgetOption { return func(c *budgetConfig) { c.prefix = p } }

// normalize fills in defaults and clamps values out of range.
func (c *budgetConfig) normalize() {
	if c.ratio < 0 || math.IsNaN(c.ratio) {
		c.ratio = 0
	}
	if math.IsInf(c.ratio, 1) {
		c.ratio = math.MaxFloat32
	}
	if c.floor < 0 || math.IsNaN(c.floor) {
		c.floor = 0
	}
	if math.IsInf(c.floor, 1) {
		c.floor = math.MaxFloat32
	}
	if c.window <= 0 {
		c.window = defaultWindow
	}
	// Whole milliseconds per slot, as the script counts them.
	slot := max(c.window/slots, time.Millisecond).Truncate(time.Millisecond)
	c.window = slot * slots
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.flush <= 0 {
		c.flush = defaultFlush
	}
	if c.probe <= 0 {
		c.probe = defaultProbe
	}
	if c.maxLease <= 0 {
		c.maxLease = defaultMaxLease
	}
	c.maxLease = min(c.maxLease, 1<<16)
	if c.leaseTTL <= 0 {
		c.leaseTTL = defaultLeaseTTL
	}
	if c.prefix == "" {
		c.prefix = defaultPrefix
	}
	if c.fallback == nil {
		c.fallback = middleware.NewRatioBudget(middleware.Ratio(c.ratio),
			middleware.RatioFloor(c.floor), middleware.RatioWindow(c.window))
	}
}
