package rhttpattack

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Many concurrent calls whose failed and losing bodies trickle for random times around
// any brief drain bound (pooled drain timers fire while drains end); every body the
// caller gets — a winner or a final failure — is whole and its own.
func TestStormRandomTrickles(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		code := 200
		if rand.IntN(2) == 0 {
			code = 503
		}
		steps := rand.IntN(8)
		pause := time.Duration(rand.IntN(12000)) * time.Microsecond
		w.Header().Set("X-Steps", strconv.Itoa(steps))
		w.WriteHeader(code)
		for i := 0; i < steps; i++ {
			if _, err := io.WriteString(w, id+"."+strconv.Itoa(i)+";"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(pause):
			case <-r.Context().Done():
				return
			}
		}
	})
	for _, name := range []string{"plain", "hedged", "perAttempt"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(3)
			switch name {
			case "hedged":
				e = newExec(3, hedge(3*time.Millisecond))
			case "perAttempt":
				e = newExec(3, perAttempt(5*time.Second))
			}
			c, _, base := newClient(t, e)
			base.MaxIdleConnsPerHost = 32
			var wg sync.WaitGroup
			for g := 0; g < 48; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := 0; k < 6; k++ {
						id := strconv.Itoa(g*100 + k)
						resp, err := c.Get(srv.URL + "?id=" + id)
						if err != nil {
							t.Error(err)
							return
						}
						if k%3 == 2 {
							time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
						}
						b, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						steps, _ := strconv.Atoi(resp.Header.Get("X-Steps"))
						want := ""
						for i := 0; i < steps; i++ {
							want += id + "." + strconv.Itoa(i) + ";"
						}
						if err != nil || string(b) != want {
							t.Errorf("id %s status %d: got %q err %v, want %q", id, resp.StatusCode, b, err, want)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// A 101 upgrade under a per-attempt timeout and an overall one: the docs say deadlines keep
// bounding a winning body; an upgraded stream used past them is reported (Log), and it
// must never hang.
func TestUpgradeUnderDeadlines(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = bw.Flush()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(io.MultiReader(bw.Reader, conn))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := conn.Write([]byte(line)); err != nil {
				return
			}
		}
	})
	for _, name := range []string{"perAttempt", "overall"} {
		t.Run(name, func(t *testing.T) {
			e := newExec(2, perAttempt(150*time.Millisecond))
			if name == "overall" {
				e = newExec(2, overall(150*time.Millisecond))
			}
			c, _, _ := newClient(t, e)
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			rw, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				t.Fatalf("%T", resp.Body)
			}
			br := bufio.NewReader(rw)
			echo := func() error {
				if _, err := rw.Write([]byte("hi\n")); err != nil {
					return err
				}
				_, err := br.ReadString('\n')
				return err
			}
			if err := echo(); err != nil {
				t.Fatalf("echo within the deadline: %v", err)
			}
			time.Sleep(300 * time.Millisecond)
			var err2 error
			within(t, 5*time.Second, "echo past the deadline", func() { err2 = echo() })
			t.Logf("echo past the %s deadline: %v", name, err2)
		})
	}
}
