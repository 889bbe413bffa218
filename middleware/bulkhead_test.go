package middleware

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/clock"
)

func mustAcquire(t *testing.T, l Limiter) func(bool) {
	t.Helper()
	rel, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return rel
}

func TestBulkheadAdmitsUpToMaxThenRefuses(t *testing.T) {
	b := NewBulkhead(2, 0)
	r1, r2 := mustAcquire(t, b), mustAcquire(t, b)
	if b.InFlight() != 2 {
		t.Fatalf("InFlight = %d, want 2", b.InFlight())
	}
	_, err := b.Acquire(context.Background())
	if !errors.Is(err, ErrBulkheadFull) || !strings.Contains(err.Error(), "max_concurrent 2") {
		t.Fatalf("third Acquire: %v, want ErrBulkheadFull naming max_concurrent 2", err)
	}
	r1(false)
	r3 := mustAcquire(t, b)
	r2(false)
	r3(true)
	if b.InFlight() != 0 {
		t.Fatalf("InFlight = %d after releases, want 0", b.InFlight())
	}
}

func TestBulkheadClampsBadInput(t *testing.T) {
	b := NewBulkhead(0, -time.Second, nil)
	if b.Max() != 1 || b.MaxWait() != 0 {
		t.Fatalf("NewBulkhead(0, -1s) = max %d wait %v, want 1, 0", b.Max(), b.MaxWait())
	}
	b = NewBulkhead(-5, 0)
	if b.Max() != 1 {
		t.Fatalf("NewBulkhead(-5) max %d, want 1", b.Max())
	}
	huge := NewBulkhead(math.MaxInt, 0)
	rel := mustAcquire(t, huge)
	rel(false)
	if huge.Max() != math.MaxInt {
		t.Fatalf("Max = %d", huge.Max())
	}
}

func TestBulkheadZeroValueAndNilAdmitEverything(t *testing.T) {
	var zero Bulkhead
	var nilB *Bulkhead
	for _, l := range []Limiter{&zero, nilB} {
		for i := 0; i < 100; i++ {
			rel := mustAcquire(t, l)
			defer rel(false)
		}
	}
	if zero.Max() != 0 || nilB.Max() != 0 || nilB.InFlight() != 0 || nilB.MaxWait() != 0 {
		t.Fatal("zero/nil bulkhead reports a bound")
	}
}

func TestBulkheadNeverAdmitsDoneContext(t *testing.T) {
	b := NewBulkhead(5, time.Second)
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("shutting down")
	cancel(cause)
	_, err := b.Acquire(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("Acquire(done ctx) = %v, want Canceled and the cause", err)
	}
	if b.InFlight() != 0 {
		t.Fatal("a done context took room")
	}
}

func TestBulkheadWaitIsBoundedByMaxWait(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	b := NewBulkhead(1, 50*time.Millisecond, WithClock(f))
	rel := mustAcquire(t, b)
	defer rel(false)
	done := make(chan error, 1)
	go func() { _, err := b.Acquire(context.Background()); done <- err }()
	f.BlockUntil(1)
	f.Advance(49 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("returned before max wait: %v", err)
	case <-time.After(10 * time.Millisecond):
	}
	f.Advance(time.Millisecond)
	if err := <-done; !errors.Is(err, ErrBulkheadFull) || !strings.Contains(err.Error(), "max_wait 50ms") {
		t.Fatalf("after max wait: %v, want ErrBulkheadFull naming max_wait", err)
	}
}

func TestBulkheadWaitHonoursContext(t *testing.T) {
	b := NewBulkhead(1, time.Hour)
	rel := mustAcquire(t, b)
	defer rel(false)

	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("client went away")
	done := make(chan error, 1)
	go func() { _, err := b.Acquire(ctx); done <- err }()
	time.Sleep(5 * time.Millisecond)
	cancel(cause)
	if err := <-done; !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("cancelled wait: %v, want Canceled wrapping the cause", err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer dcancel()
	start := time.Now()
	if _, err := b.Acquire(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline wait: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v past a 10ms deadline", d)
	}
}

func TestBulkheadWaitersAreServedInOrder(t *testing.T) {
	b := NewBulkhead(1, time.Hour)
	rel := mustAcquire(t, b)
	const n = 5
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := b.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			r(false)
		}(i)
		time.Sleep(5 * time.Millisecond) // let waiter i queue before i+1
	}
	rel(false)
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("waiter %d admitted in place %d", got, want)
		}
		want++
	}
}

// An extra release must not free room another try holds.
func TestBulkheadExtraReleaseIsIgnored(t *testing.T) {
	b := NewBulkhead(2, 0)
	r1 := mustAcquire(t, b)
	r1(false)
	r1(false)
	r1(true)
	if b.InFlight() != 0 {
		t.Fatalf("InFlight = %d, want 0", b.InFlight())
	}
	r2, r3 := mustAcquire(t, b), mustAcquire(t, b)
	if _, err := b.Acquire(context.Background()); !errors.Is(err, ErrBulkheadFull) {
		t.Fatalf("bound lost after extra releases: %v", err)
	}
	r2(false)
	r3(false)
}

func TestBulkheadThousandGoroutines(t *testing.T) {
	const max = 8
	b := NewBulkhead(max, 20*time.Millisecond)
	var running, peak, admitted, refused atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := b.Acquire(context.Background())
			if err != nil {
				if !errors.Is(err, ErrBulkheadFull) {
					t.Error(err)
				}
				refused.Add(1)
				return
			}
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(50 * time.Microsecond)
			running.Add(-1)
			admitted.Add(1)
			rel(false)
			rel(false) // extra releases are harmless
		}()
	}
	wg.Wait()
	if peak.Load() > max {
		t.Fatalf("peak %d running, bound %d", peak.Load(), max)
	}
	if admitted.Load()+refused.Load() != 1000 || admitted.Load() < max {
		t.Fatalf("admitted %d refused %d", admitted.Load(), refused.Load())
	}
	if b.InFlight() != 0 {
		t.Fatalf("InFlight = %d at the end", b.InFlight())
	}
}

func TestBulkheadAdmitAllocatesNothing(t *testing.T) {
	if raceOn {
		t.Skip("sync.Pool drops items under the race detector")
	}
	b := NewBulkhead(4, time.Millisecond)
	ctx := context.Background()
	full := NewBulkhead(1, 0)
	hold := mustAcquire(t, full)
	defer hold(false)
	n := testing.AllocsPerRun(1000, func() {
		rel, _ := b.Acquire(ctx)
		rel(false)
		_, _ = full.Acquire(ctx) // refusal: the shared error
	})
	if n != 0 {
		t.Fatalf("%v allocations per admit+release+refusal, want 0", n)
	}
}

func BenchmarkBulkhead(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		bh := NewBulkhead(64, 0)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rel, _ := bh.Acquire(ctx)
			rel(false)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		bh := NewBulkhead(1<<20, 0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rel, _ := bh.Acquire(ctx)
				rel(false)
			}
		})
	})
}
