package surfaceattack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	"github.com/recourse-go/recourse/timeline"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

func hedgeOpts() []policy.Option {
	return []policy.Option{policy.MaxAttempts(1), policy.TimeoutPerAttempt(2 * time.Second),
		policy.WithHedge(policy.HedgePolicy{Enabled: true, Delay: 5 * time.Millisecond, MaxHedges: 1})}
}

// hedgeOp: the primary blocks until cancelled; the hedge (second call) runs f.
func hedgeOp(f func() error) (func(context.Context) error, *atomic.Int32) {
	var n atomic.Int32
	return func(ctx context.Context) error {
		if n.Add(1) == 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(300 * time.Millisecond):
				return errors.New("primary timed out")
			}
		}
		return f()
	}, &n
}

type panicObs struct {
	timeline.BaseObserver
	where     string
	onlyHedge bool
}

func (o *panicObs) maybe(w string, hedge bool) {
	if o.where == w && (!o.onlyHedge || hedge) {
		panic("observer boom in " + w)
	}
}
func (o *panicObs) OnStart(context.Context, string, time.Time) { o.maybe("start", false) }
func (o *panicObs) OnAttempt(_ context.Context, _ string, r timeline.AttemptRecord) {
	o.maybe("attempt", r.Hedge)
}
func (o *panicObs) OnFinish(context.Context, *timeline.Timeline) { o.maybe("finish", false) }
func (o *panicObs) OnHedge(context.Context, timeline.HedgeEvent) { o.maybe("hedge", true) }
func (o *panicObs) OnBudgetDecision(context.Context, timeline.BudgetDecision) {
	o.maybe("budget", true)
}
func (o *panicObs) OnBreakerState(timeline.BreakerStateChange) { o.maybe("breaker", false) }

type panicBudget struct{}

func (panicBudget) Take(_ context.Context, t middleware.Try) middleware.Decision {
	if t.Kind != middleware.TryFirst {
		panic("budget boom")
	}
	return middleware.Decision{Allowed: true}
}

func runBounded(t *testing.T, name string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("ESCAPED PANIC: %v", r)
			}
		}()
		done <- f()
	}()
	select {
	case err := <-done:
		if err != nil && strings.HasPrefix(err.Error(), "ESCAPED PANIC") {
			t.Errorf("%s: %v", name, err)
		}
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: call hangs", name)
		return nil
	}
}

func TestPanicsRecovered(t *testing.T) {
	isPanic := func(err error) bool {
		var pe *recourse.PanicError
		return errors.As(err, &pe)
	}
	// op on the caller's goroutine
	exec := recourse.NewExecutor(recourse.WithPolicy("p.Op", policy.MaxAttempts(3)))
	err := runBounded(t, "op", func() error {
		return exec.Do(context.Background(), "p.Op", func(context.Context) error { panic("op boom") })
	})
	if !isPanic(err) {
		t.Errorf("op panic: err %v", err)
	}
	err = runBounded(t, "op-nil", func() error {
		return exec.Do(context.Background(), "p.Op", func(context.Context) error { panic(nil) })
	})
	if !isPanic(err) {
		t.Errorf("panic(nil): err %v", err)
	}
	// op on a hedge goroutine
	execH := recourse.NewExecutor(recourse.WithPolicy("p.Hedge", hedgeOpts()...))
	op, n := hedgeOp(func() error { panic("hedge boom") })
	err = runBounded(t, "hedge-op", func() error { return execH.Do(context.Background(), "p.Hedge", op) })
	if n.Load() < 2 {
		t.Errorf("hedge did not run")
	}
	if err != nil && !isPanic(err) {
		t.Errorf("hedge op panic: err %v", err)
	}
	if err == nil {
		t.Errorf("hedge op panic vanished: call succeeded though the only finished try panicked")
	}
	// classifier panicking (also on the hedge goroutine)
	var cn atomic.Int32
	execC := recourse.NewExecutor(recourse.WithPolicy("p.Cls", hedgeOpts()...),
		recourse.WithDefaultClassifier(middleware.ClassifierFunc(func(ctx context.Context, resp any, err error) middleware.Verdict {
			if cn.Add(1) >= 1 {
				panic("classifier boom")
			}
			return middleware.VerdictOf(ctx, resp, err)
		})))
	op, _ = hedgeOp(func() error { return errors.New("x") })
	err = runBounded(t, "classifier", func() error { return execC.Do(context.Background(), "p.Cls", op) })
	if !isPanic(err) {
		t.Errorf("classifier panic: err %v", err)
	}
	// budget panicking on the hedge's Take
	execB := recourse.NewExecutor(recourse.WithBudget("pb", panicBudget{}),
		recourse.WithPolicy("p.Bud", append(hedgeOpts(), policy.WithBudget("pb"))...))
	op, _ = hedgeOp(func() error { return nil })
	err = runBounded(t, "budget", func() error { return execB.Do(context.Background(), "p.Bud", op) })
	t.Logf("budget panic on hedge: err %v", err)
	// provider panicking
	execP := recourse.NewExecutor(recourse.WithProvider(provFunc(func(context.Context, policy.Key) (policy.Policy, error) {
		panic("provider boom")
	})))
	err = runBounded(t, "provider", func() error {
		return execP.Do(context.Background(), "p.Prov", func(context.Context) error { return nil })
	})
	t.Logf("provider panic: err %v", err)
	// observer panics at every event, on the caller and hedge goroutines
	for _, where := range []string{"attempt", "hedge", "budget"} {
		obs := &panicObs{where: where, onlyHedge: true}
		execO := recourse.NewExecutor(recourse.WithObserver(obs), recourse.WithBudget("u", middleware.UnlimitedBudget{}),
			recourse.WithPolicy("p.Obs", append(hedgeOpts(), policy.WithBudget("u"))...))
		op, _ := hedgeOp(func() error { return nil })
		err := runBounded(t, "observer-"+where, func() error { return execO.Do(context.Background(), "p.Obs", op) })
		t.Logf("observer panic in %s: err %v", where, err)
	}
}

// With recovery on, an observer that panics on the caller's goroutine
// (OnStart, OnAttempt, OnFinish, OnBreakerState — also from Breaker.State())
// must not take the caller down; on a hedge goroutine the same panic becomes a
// *PanicError.
func TestObserverPanicOnCallerGoroutine(t *testing.T) {
	for _, where := range []string{"start", "attempt", "finish", "breaker"} {
		exec := recourse.NewExecutor(recourse.WithObserver(&panicObs{where: where}), recourse.WithPolicy("p.O", policy.MaxAttempts(1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: 10 * time.Millisecond})))
		_ = runBounded(t, "observer-"+where+"-Do", func() error {
			return exec.Do(context.Background(), "p.O", func(context.Context) error { return errors.New("x") })
		})
		_ = runBounded(t, "observer-"+where+"-Endpoint", func() error {
			_, err := exec.Endpoint("p.O2", func(context.Context, any) (any, error) { return nil, nil })(context.Background(), nil)
			return err
		})
		if where == "breaker" {
			time.Sleep(20 * time.Millisecond)
			_ = runBounded(t, "observer-breaker-State", func() error { _ = exec.Breaker("p.O").State(); return nil })
		}
	}
}

// runtime.Goexit on a hedge goroutine (e.g. t.FailNow inside the op) must not
// hang the call.
func TestGoexitOnHedge(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("p.Goexit", hedgeOpts()...))
	op, _ := hedgeOp(func() error { runtime.Goexit(); return nil })
	start := time.Now()
	err := runBounded(t, "goexit", func() error { return exec.Do(context.Background(), "p.Goexit", op) })
	if time.Since(start) > 2500*time.Millisecond {
		t.Errorf("Goexit on a hedge held the call %v (err %v)", time.Since(start), err)
	}
}

// A base RoundTripper that panics on the hedge try.
type panicRT struct{ n atomic.Int32 }

func (p *panicRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.n.Add(1) == 1 {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	panic("roundtrip boom")
}

func TestHTTPHedgePanic(t *testing.T) {
	exec := recourse.NewExecutor(recourse.WithPolicy("p.Http", hedgeOpts()...))
	tr := rhttp.NewTransport(exec, "p.Http", &panicRT{})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:9/", nil)
	err := runBounded(t, "http-hedge", func() error {
		resp, err := tr.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		return err
	})
	var pe *recourse.PanicError
	if !errors.As(err, &pe) {
		t.Errorf("http hedge panic: err %v", err)
	}
}

// ---- without recovery: panics must reach the caller's goroutine (run in a child process) ----

func TestChildNoRecover(t *testing.T) {
	mode := os.Getenv("SURFACE_CHILD")
	if mode == "" {
		t.Skip("child only")
	}
	defer func() {
		r := recover()
		fmt.Printf("RECOVERED-ON-CALLER:%v\n", r)
	}()
	key := "c.Key"
	opts := []recourse.Option{recourse.WithoutPanicRecovery()}
	var op func(context.Context) error
	switch mode {
	case "hedge-op":
		opts = append(opts, recourse.WithPolicy(key, hedgeOpts()...))
		op, _ = hedgeOp(func() error { panic("hedge op") })
	case "hedge-classifier":
		var n atomic.Int32
		opts = append(opts, recourse.WithPolicy(key, hedgeOpts()...),
			recourse.WithDefaultClassifier(middleware.ClassifierFunc(func(ctx context.Context, resp any, err error) middleware.Verdict {
				if n.Add(1) == 1 {
					panic("hedge classifier")
				}
				return middleware.VerdictOf(ctx, resp, err)
			})))
		op, _ = hedgeOp(func() error { return errors.New("x") })
	case "hedge-budget":
		opts = append(opts, recourse.WithBudget("pb", panicBudget{}), recourse.WithPolicy(key, append(hedgeOpts(), policy.WithBudget("pb"))...))
		op, _ = hedgeOp(func() error { return nil })
	case "hedge-observer":
		opts = append(opts, recourse.WithObserver(&panicObs{where: "attempt", onlyHedge: true}), recourse.WithPolicy(key, hedgeOpts()...))
		op, _ = hedgeOp(func() error { return nil })
	case "hedge-observer-onhedge":
		opts = append(opts, recourse.WithObserver(&panicObs{where: "hedge", onlyHedge: true}), recourse.WithPolicy(key, hedgeOpts()...))
		op, _ = hedgeOp(func() error { return nil })
	case "provider":
		opts = append(opts, recourse.WithProvider(provFunc(func(context.Context, policy.Key) (policy.Policy, error) { panic("provider") })))
		op = func(context.Context) error { return nil }
	case "breaker-observer":
		opts = append(opts, recourse.WithObserver(&panicObs{where: "breaker"}), recourse.WithPolicy(key, policy.MaxAttempts(1),
			policy.WithCircuitBreaker(policy.CircuitPolicy{Enabled: true, ConsecutiveFailures: 1, Cooldown: time.Minute})))
		op = func(context.Context) error { return errors.New("x") }
	}
	exec := recourse.NewExecutor(opts...)
	err := exec.Do(context.Background(), key, op)
	fmt.Printf("RETURNED:%v\n", err)
}

func TestNoRecoverPanicsReachCaller(t *testing.T) {
	if os.Getenv("SURFACE_CHILD") != "" {
		t.Skip("parent only")
	}
	for _, mode := range []string{"hedge-op", "hedge-classifier", "hedge-budget", "hedge-observer", "hedge-observer-onhedge", "provider", "breaker-observer"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChildNoRecover$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SURFACE_CHILD="+mode)
		out, err := cmd.CombinedOutput()
		cancel()
		s := string(out)
		switch {
		case strings.Contains(s, "RECOVERED-ON-CALLER:<nil>") && strings.Contains(s, "RETURNED:"):
			t.Logf("%s: returned without panicking: %s", mode, firstLine(s, "RETURNED:"))
		case strings.Contains(s, "RECOVERED-ON-CALLER:") && err == nil:
			t.Logf("%s: panic reached the caller: %s", mode, firstLine(s, "RECOVERED-ON-CALLER:"))
		default:
			t.Errorf("%s: process died (%v):\n%s", mode, err, truncate(s, 1500))
		}
	}
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
