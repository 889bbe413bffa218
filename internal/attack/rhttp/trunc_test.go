package rhttpattack

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The caller cancels at a random moment around the response: whatever happens, a body
// that reads to a clean EOF is whole (never silently truncated), for winners and for
// final failed (read-ahead) bodies, chunked or with a Content-Length.
func TestCancelRaceNeverSilentlyTruncates(t *testing.T) {
	const size = 24 << 10
	for _, code := range []int{200, 503} {
		for _, cl := range []bool{true, false} {
			for _, name := range []string{"plain", "hedged", "perAttempt", "overall"} {
				t.Run(strconv.Itoa(code)+"/cl="+strconv.FormatBool(cl)+"/"+name, func(t *testing.T) {
					t.Parallel()
					var hits atomic.Int64
					srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
						n := hits.Add(1)
						b := pattern(size, byte(n))
						if cl {
							w.Header().Set("Content-Length", strconv.Itoa(size))
						}
						w.Header().Set("X-Sum", sum(b))
						w.WriteHeader(code)
						for i := 0; i < size; i += 2048 {
							if _, err := w.Write(b[i : i+2048]); err != nil {
								return
							}
							w.(http.Flusher).Flush()
							if i%8192 == 0 {
								time.Sleep(200 * time.Microsecond)
							}
						}
					})
					e := newExec(2)
					switch name {
					case "hedged":
						e = newExec(2, hedge(time.Millisecond))
					case "perAttempt":
						e = newExec(2, perAttempt(5*time.Second))
					case "overall":
						e = newExec(2, overall(5*time.Second))
					}
					_, rt, _ := newClient(t, e)
					var wg sync.WaitGroup
					var mu sync.Mutex
					var fails []string
					var whole, cut, errs atomic.Int32
					for g := 0; g < 4; g++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := 0; i < 40; i++ {
								ctx, cancel := context.WithCancel(context.Background())
								time.AfterFunc(time.Duration(rand.IntN(12000))*time.Microsecond, cancel)
								req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
								resp, err := rt.RoundTrip(req)
								if err != nil {
									errs.Add(1)
									cancel()
									continue
								}
								if rand.IntN(2) == 0 {
									time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
								}
								b, rerr := io.ReadAll(resp.Body)
								resp.Body.Close()
								cancel()
								switch {
								case rerr != nil:
									cut.Add(1)
								case sum(b) == resp.Header.Get("X-Sum"):
									whole.Add(1)
								default:
									mu.Lock()
									fails = append(fails, "status "+strconv.Itoa(resp.StatusCode)+": clean EOF after "+strconv.Itoa(len(b))+" of "+strconv.Itoa(size)+" bytes")
									mu.Unlock()
								}
							}
						}()
					}
					wg.Wait()
					if len(fails) > 0 {
						t.Fatalf("%d silently truncated bodies (whole %d, cut with error %d, call errors %d), e.g. %s", len(fails), whole.Load(), cut.Load(), errs.Load(), fails[0])
					}
					t.Logf("whole %d, cut with error %d, call errors %d", whole.Load(), cut.Load(), errs.Load())
				})
			}
		}
	}
}

// Per-attempt and overall deadlines that fire while headers or bodies arrive: a body that
// reads to a clean EOF is whole; nothing hangs.
func TestDeadlineRaceNeverSilentlyTruncates(t *testing.T) {
	const size = 16 << 10
	for _, code := range []int{200, 503} {
		for _, name := range []string{"perAttempt", "overall", "hedgedPerAttempt"} {
			t.Run(strconv.Itoa(code)+"/"+name, func(t *testing.T) {
				t.Parallel()
				var hits atomic.Int64
				srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
					n := hits.Add(1)
					b := pattern(size, byte(n))
					time.Sleep(time.Duration(2000+rand.IntN(6000)) * time.Microsecond)
					w.Header().Set("X-Sum", sum(b))
					w.WriteHeader(code)
					for i := 0; i < size; i += 4096 {
						if _, err := w.Write(b[i : i+4096]); err != nil {
							return
						}
						w.(http.Flusher).Flush()
						time.Sleep(500 * time.Microsecond)
					}
				})
				e := newExec(3, perAttempt(6*time.Millisecond))
				switch name {
				case "overall":
					e = newExec(3, overall(9*time.Millisecond))
				case "hedgedPerAttempt":
					e = newExec(3, perAttempt(6*time.Millisecond), hedge(3*time.Millisecond))
				}
				_, rt, _ := newClient(t, e)
				var whole, cut, errs, bad atomic.Int32
				var wg sync.WaitGroup
				for g := 0; g < 4; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 30; i++ {
							req, _ := http.NewRequest("GET", srv.URL, nil)
							resp, err := rt.RoundTrip(req)
							if err != nil {
								errs.Add(1)
								continue
							}
							b, rerr := io.ReadAll(resp.Body)
							resp.Body.Close()
							switch {
							case rerr != nil:
								cut.Add(1)
							case sum(b) == resp.Header.Get("X-Sum"):
								whole.Add(1)
							default:
								bad.Add(1)
							}
						}
					}()
				}
				within(t, 60*time.Second, "deadline race calls", wg.Wait)
				if bad.Load() > 0 {
					t.Fatalf("%d silently truncated bodies (whole %d, cut %d, errors %d)", bad.Load(), whole.Load(), cut.Load(), errs.Load())
				}
				t.Logf("whole %d, cut %d, errors %d", whole.Load(), cut.Load(), errs.Load())
			})
		}
	}
}
