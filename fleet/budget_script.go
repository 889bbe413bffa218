package fleet

import "github.com/redis/go-redis/v9"

// slots is how many slots the sliding window is split into.
const slots = 10

// budgetScript counts first tries and takes tokens for retries and hedges
// in one round trip, on Redis's clock (TIME), so replica clocks do not
// matter. The budget is one hash: field "f<slot>" counts first tries and
// "e<slot>" extras (retries and hedges) in the slot of that index, where
// a slot index is Redis time in ms divided by the slot length. Fields a
// window or more from now, either way, are deleted; the key expires two
// windows after its last use.
//
// KEYS[1] the budget's hash
// ARGV[1] first tries to add
// ARGV[2] tokens wanted (0: only count first tries)
// ARGV[3] least tokens worth granting
// ARGV[4] ratio, ARGV[5] floor per second
// ARGV[6] slot length in ms, ARGV[7] number of slots
//
// It returns {granted, left}: tokens granted (0 or between least and
// wanted) and the whole tokens left in the window after the grant.
var budgetScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slotms = tonumber(ARGV[6])
local nslots = tonumber(ARGV[7])
local idx = math.floor(now / slotms)
local add = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local least = tonumber(ARGV[3])
local firsts, extras = add, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local f = fields[i]
  local n = tonumber(string.sub(f, 2))
  if n == nil or n <= idx - nslots or n >= idx + nslots then
    redis.call('HDEL', KEYS[1], f)
  elseif string.sub(f, 1, 1) == 'f' then
    firsts = firsts + tonumber(fields[i + 1])
  else
    extras = extras + tonumber(fields[i + 1])
  end
end
if add > 0 then
  redis.call('HINCRBY', KEYS[1], 'f' .. idx, add)
end
local allowed = tonumber(ARGV[4]) * firsts + tonumber(ARGV[5]) * slotms * nslots / 1000 - extras
local grant = 0
if want > 0 then
  grant = math.min(want, math.floor(allowed))
  if grant < least then
    grant = 0
  else
    redis.call('HINCRBY', KEYS[1], 'e' .. idx, grant)
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * slotms * nslots)
local left = math.floor(allowed - grant)
if left < 0 then left = 0 end
if left > 1e15 then left = 1e15 end
return {grant, left}
`)
