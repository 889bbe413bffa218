package fleet

import "github.com/redis/go-redis/v9"

// reportScript publishes one replica's view of one key's breaker and
// returns the fleet's, on Redis's clock. The key's hash has a field per
// replica, "1:<until>" (its own breaker is open or half-open) or
// "0:<until>" (closed, or held open by a signal), <until> being Redis time
// in ms after which the report no longer counts; expired reports are
// deleted, and the hash expires two report lifetimes after its last use.
//
// KEYS[1] the key's hash; ARGV[1] replica id; ARGV[2] "1" or "0";
// ARGV[3] report lifetime in ms. Returns {live, open}: replicas reporting,
// and of them those reporting open.
var reportScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + ttl))
local live, open = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local st, untilms = string.match(all[i + 1], '^([01]):(%d+)$')
  if untilms == nil or tonumber(untilms) < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live = live + 1
    if st == '1' then open = open + 1 end
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return {live, open}
`)

// indexScript keeps the sorted set of keys some replica reports open, so
// that replicas learn of a key before their own breaker for it opens.
// Scores are Redis time in ms until which the key stays listed.
//
// KEYS[1] the index; ARGV[1] listing lifetime in ms; ARGV[2…] keys to
// list (reported open now). Returns the keys listed.
var indexScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
end
return redis.call('ZRANGE', KEYS[1], 0, 999)
`)
