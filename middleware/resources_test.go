package middleware

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recourse-go/recourse/endpoint"
)

// heldResponse stands for a response holding a resource (an open body).
type heldResponse struct {
	mu        sync.Mutex
	discarded bool
	cancels   []context.CancelFunc
	ctx       context.Context
}

func (h *heldResponse) Discard() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.discarded = true
	for _, c := range h.cancels {
		c()
	}
}

func (h *heldResponse) AdoptCancel(c context.CancelFunc) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancels = append(h.cancels, c)
	return true
}

func TestRetryDiscardsResponsesOfFailedAttempts(t *testing.T) {
	var resps []*heldResponse
	var n atomic.Int32
	ep := Retry(MaxAttempts(3), WithBackoff(BackoffConfig{Initial: time.Microsecond, Max: time.Microsecond, Multiplier: 1}))(
		func(context.Context, any) (any, error) {
			r := &heldResponse{}
			resps = append(resps, r)
			if n.Add(1) < 3 {
				return r, errFlaky
			}
			return r, nil
		})
	got, err := ep(context.Background(), nil)
	if err != nil || got != resps[2] {
		t.Fatalf("got %v, %v", got, err)
	}
	if !resps[0].discarded || !resps[1].discarded || resps[2].discarded {
		t.Fatalf("discarded = %v %v %v, want true true false", resps[0].discarded, resps[1].discarded, resps[2].discarded)
	}
}

func TestTimeoutHandsItsCancelToAStreamedResponse(t *testing.T) {
	for name, mw := range map[string]endpoint.Middleware{"attempt": Timeout(time.Hour), "overall": OverallTimeout(time.Hour)} {
		t.Run(name, func(t *testing.T) {
			ep := mw(func(ctx context.Context, _ any) (any, error) { return &heldResponse{ctx: ctx}, nil })
			resp, _ := ep(context.Background(), nil)
			h := resp.(*heldResponse)
			if h.ctx.Err() != nil {
				t.Fatal("returning cut off the response's context: its body could not be read")
			}
			h.Discard()
			if h.ctx.Err() == nil {
				t.Fatal("closing the response did not release its context")
			}
		})
	}
}

func TestAtMostOnceMakesOneAttempt(t *testing.T) {
	var calls atomic.Int32
	ep := chain(scripted(&calls, errFlaky, errFlaky), MaxAttempts(3))
	_, err := ep(endpoint.AtMostOnce(context.Background()), nil)
	if err != errFlaky || calls.Load() != 1 {
		t.Fatalf("err %v calls %d", err, calls.Load())
	}
}
