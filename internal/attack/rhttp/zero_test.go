package rhttpattack

import (
	"io"
	"net/http"
	"sync"
	"testing"

	rhttp "github.com/recourse-go/recourse/transport/http"
)

// The zero Transport "is ready to use": first used by many goroutines at once (lazy
// setup racing), with CloseIdleConnections racing too; -race.
func TestZeroTransportConcurrentFirstUse(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	for round := 0; round < 5; round++ {
		tr := &rhttp.Transport{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if g%8 == 0 {
					tr.CloseIdleConnections()
				}
				req, _ := http.NewRequest("GET", srv.URL, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "ok" {
					t.Errorf("%q", b)
				}
			}()
		}
		close(start)
		wg.Wait()
		tr.CloseIdleConnections()
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}
