package rhttpattack

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// misbehaving bases, each run in a child process so a crash is reported, not fatal.
var bases = map[string]func(n int32) (*http.Response, error){
	"panic":       func(n int32) (*http.Response, error) { panic("base boom") },
	"panicSecond": func(n int32) (*http.Response, error) { return firstFails(n, func() { panic("boom 2") }) },
	"nilNil":      func(n int32) (*http.Response, error) { return nil, nil },
	"getBodyPanics": func(n int32) (*http.Response, error) {
		time.Sleep(10 * time.Millisecond)
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody}, nil
	},
	"nilBody503": func(n int32) (*http.Response, error) {
		return &http.Response{StatusCode: 503, Header: http.Header{}}, nil
	},
	"nilBody200": func(n int32) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}}, nil
	},
	"nilHeader503": func(n int32) (*http.Response, error) { return &http.Response{StatusCode: 503, Body: http.NoBody}, nil },
	"dropBodyReadPanics": func(n int32) (*http.Response, error) {
		if n == 1 {
			return &http.Response{StatusCode: 503, Header: http.Header{}, Body: panicBody{read: true}}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	},
	"dropBodyClosePanics": func(n int32) (*http.Response, error) {
		if n == 1 {
			return &http.Response{StatusCode: 503, Header: http.Header{}, Body: panicBody{}}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	},
	"hedgeLoserBodyPanics": func(n int32) (*http.Response, error) {
		if n == 1 {
			time.Sleep(20 * time.Millisecond) // loses to the hedge, then is dropped
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: panicBody{read: true}}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	},
	"finalBodyReadPanics": func(n int32) (*http.Response, error) {
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: panicBody{read: true}}, nil
	},
	"respAndErr": func(n int32) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("x"))}, errors.New("both")
	},
}

// panicBody panics in Read (read) or in Close.
type panicBody struct{ read bool }

func (p panicBody) Read([]byte) (int, error) {
	if p.read {
		panic("body read boom")
	}
	return 0, io.EOF
}

func (p panicBody) Close() error {
	if !p.read {
		panic("body close boom")
	}
	return nil
}

func firstFails(n int32, f func()) (*http.Response, error) {
	if n == 1 {
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("e"))}, nil
	}
	f()
	return nil, nil
}

func TestMisbehavingBaseNoCrash(t *testing.T) {
	if name := os.Getenv("RHTTPATTACK_CHILD"); name != "" {
		for _, mode := range []string{"plain", "hedged"} {
			e := newExec(2)
			if mode == "hedged" {
				e = newExec(2, hedge(time.Millisecond))
			}
			var n atomic.Int32
			rt := rhttp.NewTransport(e, key, rtFunc(func(r *http.Request) (*http.Response, error) {
				return bases[name](n.Add(1))
			}))
			req, _ := http.NewRequest("PUT", "http://example.invalid/", strings.NewReader("b"))
			if name == "getBodyPanics" {
				var calls atomic.Int32
				req.GetBody = func() (io.ReadCloser, error) {
					if calls.Add(1) > 1 {
						panic("getbody boom")
					}
					return io.NopCloser(strings.NewReader("b")), nil
				}
			}
			resp, err := rt.RoundTrip(req)
			if err == nil && resp != nil && resp.Body != nil {
				func() {
					defer func() { _ = recover() }() // a panicking body the caller reads is the caller's
					_, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}()
			}
			if err == nil && (resp == nil || resp.Body == nil) {
				os.Stdout.WriteString("CONTRACT: nil error with nil response or body\n")
			}
		}
		time.Sleep(100 * time.Millisecond) // let background drains run
		return
	}
	for name := range bases {
		if bodyReadPanics[name] {
			continue // TestDroppedBodyReadPanicNoCrash
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMisbehavingBaseNoCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), "RHTTPATTACK_CHILD="+name)
			out, err := cmd.CombinedOutput()
			if err != nil {
				s := string(out)
				if len(s) > 1500 {
					s = s[:1500]
				}
				t.Fatalf("child crashed with base %q: %v\n%s", name, err, s)
			}
			if strings.Contains(string(out), "CONTRACT:") {
				t.Errorf("base %q: RoundTrip returned a nil error with a nil response or body", name)
			}
		})
	}
}

var bodyReadPanics = map[string]bool{"dropBodyReadPanics": true, "hedgeLoserBodyPanics": true, "finalBodyReadPanics": true}

// A base whose response body panics in Read. The transport reads such bodies itself:
// it reads a failed body ahead on a goroutine of its own (peek) and drains the bodies of
// failed or losing tries. Default executors turn panics in operations and on hedge
// goroutines into *PanicError (Options.NoPanicRecovery); a panic in a body the
// library reads on its own must not kill the process or escape RoundTrip.
func TestDroppedBodyReadPanicNoCrash(t *testing.T) {
	for name := range bodyReadPanics {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMisbehavingBaseNoCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), "RHTTPATTACK_CHILD="+name)
			out, err := cmd.CombinedOutput()
			if err != nil {
				s := string(out)
				if len(s) > 1500 {
					s = s[:1500]
				}
				t.Fatalf("child crashed with base %q: %v\n%s", name, err, s)
			}
		})
	}
}
