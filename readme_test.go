package recourse_test

// The README's Go snippets, each inside a function that gives it the
// variables it uses, so that the compiler checks them; TestREADMESnippets
// checks that every go block of README.md appears here (whitespace aside).

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/middleware"
	"github.com/recourse-go/recourse/policy"
	rgrpc "github.com/recourse-go/recourse/transport/grpc"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

type Item struct{}

type inventoryClient interface {
	Get(ctx context.Context, id string) (Item, error)
}

func readmeQuickStart(ctx context.Context, client inventoryClient, id string) (Item, error) {
	exec := recourse.NewExecutor(
		recourse.WithPolicy("inventory.Get",
			policy.MaxAttempts(3),
			policy.Backoff(20*time.Millisecond, 200*time.Millisecond, 2),
			policy.Jitter(policy.JitterEqual),
			policy.TimeoutPerAttempt(500*time.Millisecond),
			policy.OverallTimeout(2*time.Second)),
	)

	item, err := recourse.DoValueWith(ctx, exec, "inventory.Get", func(ctx context.Context) (Item, error) {
		return client.Get(ctx, id) // return recourse.Permanent(err) for errors no retry can fix
	})
	return item, err
}

func readmeFileProvider() *recourse.Executor {
	fp, err := policy.NewFileProvider("policies.yaml") // YAML, or JSON for *.json
	if err != nil {
		log.Fatal(err)
	} // names key, field and value
	defer fp.Close()
	exec := recourse.NewExecutor(recourse.WithProvider(fp))
	return exec
}

func readmeBudgets() *recourse.Executor {
	exec := recourse.NewExecutor(
		recourse.WithBudget("retries", middleware.NewRatioBudget()),            // ≤ 10 % extra tries + 1/s floor
		recourse.WithBudget("hedges", middleware.NewTokenBucketBudget(50, 10)), // x/time/rate token bucket
		recourse.WithPolicy("pricing.Get", policy.WithBudget("retries"), policy.BudgetCost(1),
			policy.WithHedge(policy.HedgePolicy{Enabled: true, Quantile: 0.99, Budget: "hedges"})),
	)
	return exec
}

type Price struct{}

func lastKnownPrice(context.Context) (Price, bool) { return Price{}, false }

func readmeFallback(fp policy.Provider) (*recourse.Executor, error) {
	exec, err := recourse.New(
		recourse.WithProvider(fp),
		recourse.WithFallback("pricing.Get", func(ctx context.Context, err error) (any, error) {
			if p, ok := lastKnownPrice(ctx); ok {
				return p, nil // DoValue[Price] returns it, with a nil error
			}
			return nil, err // no stand-in: the call fails as it would have
		}),
	)
	return exec, err
}

func readmeHTTP(exec *recourse.Executor, routeKey func(*http.Request) string) (*http.Client, *http.Client) {
	client := rhttp.NewClient(exec, "inventory.Get") // one key for every request, or one per route:
	routed := &http.Client{Transport: rhttp.NewTransport(exec, "inventory", http.DefaultTransport,
		rhttp.WithKeyFunc(func(r *http.Request) string { return routeKey(r) }))} // keys from route templates, never raw URLs
	return client, routed
}

func readmeGRPC(exec *recourse.Executor, target string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds), // e.g. credentials.NewTLS(cfg); insecure.NewCredentials() on loopback
		grpc.WithUnaryInterceptor(rgrpc.UnaryClientInterceptor(exec)),
		grpc.WithStreamInterceptor(rgrpc.StreamClientInterceptor(exec)))
	return conn, err
}

func readmeTimeline(ctx context.Context, exec *recourse.Executor, op func(context.Context) error) error {
	tl, err := exec.DoWithTimeline(ctx, "inventory.Get", op) // or: ctx, c := timeline.Record(ctx)
	for _, a := range tl.Attempts {
		fmt.Println(a.Attempt, a.HedgeIndex, a.Outcome, a.Reason, a.Duration(), a.Err, a.Backoff)
	}
	return err
}

var _ = []any{readmeQuickStart, readmeFileProvider, readmeBudgets, readmeHTTP, readmeGRPC, readmeTimeline, readmeFallback}

// squeeze drops all white space, so that layout differences between the
// README and gofmt'd code do not matter.
func squeeze(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// Snippets of the nested modules are compiled by their own examples.
	var all []byte
	for _, f := range []string{"readme_test.go", "fleet/example_test.go", "otel/example_test.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	code := squeeze(string(all))
	blocks := 0
	for _, part := range strings.Split(string(readme), "```go\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatal("unterminated go block in README.md")
		}
		blocks++
		// An import block in a snippet only says where names come from.
		if i := strings.Index(block, "import ("); i >= 0 {
			if j := strings.Index(block[i:], ")"); j >= 0 {
				block = block[:i] + block[i+j+1:]
			}
		}
		if !strings.Contains(code, squeeze(block)) {
			t.Errorf("README go block %d is not compiled by readme_test.go:\n%s", blocks, block)
		}
	}
	if blocks == 0 {
		t.Fatal("no go blocks found in README.md")
	}
}
