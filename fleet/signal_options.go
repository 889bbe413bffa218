package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"math"
	"os"
	"strconv"
	"time"
)

// SignalOption configures a BreakerSignal of NewBreakerSignal.
type SignalOption func(*signalConfig)

// signalConfig is what the options set; NewBreakerSignal fills in the
// defaults.
type signalConfig struct {
	replica  string
	keys     []string
	poll     time.Duration
	ttl      time.Duration
	quorumN  int
	quorumF  float64
	prefix   string
	maxKeys  int
	setQuorN bool
}

// Defaults of NewBreakerSignal.
const (
	defaultPoll    = 250 * time.Millisecond
	defaultQuorumN = 3
	defaultQuorumF = 0.5
	defaultMaxKeys = 1000
)

// Replica names this replica in the fleet's reports (default: host name,
// process id and a random suffix). Each replica needs its own.
func Replica(id string) SignalOption { return func(c *signalConfig) { c.replica = id } }

// Keys names the keys to watch from the start. A BreakerSignal also
// watches keys whose breaker changes state on this replica (through its
// OnBreakerState) and keys any replica reports open.
func Keys(keys ...string) SignalOption {
	return func(c *signalConfig) { c.keys = append(c.keys, keys...) }
}

// PollInterval sets how often a BreakerSignal publishes this replica's
// breakers and reads the fleet's (default 250ms). A local breaker that
// opens is published at once.
func PollInterval(d time.Duration) SignalOption { return func(c *signalConfig) { c.poll = d } }

// ReportTTL sets how long a replica's report counts without being renewed
// (default 4 poll intervals, at least 1s): a replica that stops or loses
// Redis drops out of the quorum after it, and a replica that cannot reach
// Redis for that long releases the breakers it holds open.
func ReportTTL(d time.Duration) SignalOption { return func(c *signalConfig) { c.ttl = d } }

// Quorum sets when the fleet holds a key's breakers open: when at least
// replicas replicas report their own breaker open, or when at least
// fraction of the replicas reporting the key do (default 3 replicas or
// 50 %, whichever comes first). A zero or negative value turns that test
// off; with both off the signal never holds a breaker open.
func Quorum(replicas int, fraction float64) SignalOption {
	return func(c *signalConfig) { c.quorumN, c.quorumF, c.setQuorN = replicas, fraction, true }
}

// SignalKeyPrefix sets the prefix of the signal's Redis keys (default
// "recourse:fleet:"): prefix + "{" + key + "}:breaker" per key, and
// prefix + "{breakers}:open" for the index of keys reported open.
func SignalKeyPrefix(p string) SignalOption { return func(c *signalConfig) { c.prefix = p } }

// MaxKeys bounds the keys a BreakerSignal watches (default 1000); keys
// beyond it that the fleet reports are ignored.
func MaxKeys(n int) SignalOption { return func(c *signalConfig) { c.maxKeys = n } }

// normalize fills in defaults and clamps values out of range.
func (c *signalConfig) normalize() {
	if c.replica == "" {
		host, _ := os.Hostname()
		var r [4]byte
		_, _ = rand.Read(r[:])
		c.replica = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(r[:])
	}
	if c.poll <= 0 {
		c.poll = defaultPoll
	}
	c.poll = max(c.poll, time.Millisecond)
	if c.ttl <= 0 {
		c.ttl = max(4*c.poll, time.Second)
	}
	c.ttl = max(c.ttl, c.poll+time.Millisecond).Truncate(time.Millisecond)
	if !c.setQuorN {
		c.quorumN, c.quorumF = defaultQuorumN, defaultQuorumF
	}
	if math.IsNaN(c.quorumF) || c.quorumF < 0 {
		c.quorumF = 0
	}
	if c.prefix == "" {
		c.prefix = defaultPrefix
	}
	if c.maxKeys <= 0 {
		c.maxKeys = defaultMaxKeys
	}
}
