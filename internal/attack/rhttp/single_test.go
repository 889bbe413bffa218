package rhttpattack

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

// "any request whose key's policy allows one attempt and no hedge — has its body
// streamed to the server as given, whatever its size": a PUT larger than MaxReplayBody,
// fixed key or via WithKeyFunc.
func TestSingleAttemptPolicyStreamsPut(t *testing.T) {
	body := pattern(3<<20, 2)
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, sum(b))
	})
	e := recourse.NewExecutor(
		recourse.WithPolicy(key, policy.MaxAttempts(1)),
		recourse.WithPolicy("atk.Multi", policy.MaxAttempts(3)),
		recourse.WithPolicy("atk.Hedged", policy.MaxAttempts(1), hedge(time.Millisecond)),
	)
	for _, tc := range []struct {
		name    string
		route   string
		stream  bool
		keyFunc bool
	}{
		{"fixedKey", "", true, false},
		{"keyFuncSingle", "single", true, true},
		{"keyFuncMulti", "multi", false, true},
		{"keyFuncHedgedOne", "hedged", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			opts := []rhttp.Option{rhttp.MaxReplayBody(1024)}
			if tc.keyFunc {
				opts = append(opts, rhttp.WithKeyFunc(func(r *http.Request) string {
					switch {
					case strings.Contains(r.URL.RawQuery, "multi"):
						return "atk.Multi"
					case strings.Contains(r.URL.RawQuery, "hedged"):
						return "atk.Hedged"
					}
					return ""
				}))
			}
			rt := rhttp.NewTransport(e, key, base, opts...)
			pr, pw := io.Pipe()
			go func() { _, _ = pw.Write(body); _ = pw.Close() }()
			defer pr.Close()
			req, _ := http.NewRequest("PUT", srv.URL+"?"+tc.route, pr)
			resp, err := rt.RoundTrip(req)
			if !tc.stream {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("replayable PUT over MaxReplayBody: status %d, want ErrBodyTooLarge", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("single-attempt PUT not streamed: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != sum(body) || hits.Load() != 1 {
				t.Fatalf("server got sum %q, hits %d", b, hits.Load())
			}
		})
	}
}
