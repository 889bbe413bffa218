package rhttpattack

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// HTTP/2: one connection multiplexes every try; hedged losers are reset, failed
// bodies dropped, winners and final failures arrive whole and to the right caller.
func TestHTTP2StormHedged(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		id := r.URL.Query().Get("id")
		b, _ := io.ReadAll(r.Body)
		if n%3 == 0 {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		code := 200
		if n%5 == 0 {
			code = 503
		}
		w.WriteHeader(code)
		for i := 0; i < 3; i++ {
			if _, err := io.WriteString(w, id+":"+string(b)+";"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	rt := rhttp.NewTransport(newExec(3, hedge(2*time.Millisecond)), key, base)
	c := &http.Client{Transport: rt}
	var wg sync.WaitGroup
	for g := 0; g < 300; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := strconv.Itoa(g)
			req, _ := http.NewRequest("PUT", srv.URL+"?id="+id, stringsReader("b"+id))
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s: %v", id, err)
				return
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("proto %s", resp.Proto)
			}
			if g%4 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			one := id + ":b" + id + ";"
			if err != nil || string(got) != one+one+one {
				t.Errorf("%s status %d: %q err %v", id, resp.StatusCode, got, err)
			}
		}()
	}
	wg.Wait()
}
