package rhttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/recourse-go/recourse"
	"github.com/recourse-go/recourse/policy"
	rhttp "github.com/recourse-go/recourse/transport/http"
)

func ExampleNewClient() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "42 in stock")
	}))
	defer srv.Close()

	exec := recourse.NewExecutor(recourse.WithPolicy("inventory.Get",
		policy.HTTPDefaults(), policy.Backoff(time.Millisecond, 5*time.Millisecond, 2)))
	client := rhttp.NewClient(exec, "inventory.Get")
	defer client.CloseIdleConnections()

	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", n.Load(), "requests")
	// Output: 200 42 in stock after 3 requests
}
