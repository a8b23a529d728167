-- put.lua: write a record unconditionally; a missing or expired key starts again at version 1.
--
-- KEYS[1]  record hash          P:{B}:r:O:T
-- KEYS[2]  owner listing zset   P:{B}:i:O
-- KEYS[3]  owner expiry zset    P:{B}:x:O
-- KEYS[4]  bucket due zset      P:{B}:due
-- ARGV[1]  id: raw task id bytes (zset member)
-- ARGV[2]  O: encoded owner
-- ARGV[3]  data
-- ARGV[4]  expires_at_ms, '' = never
-- ARGV[5]  sort_ms, '' = keep the live record's (now_ms for a new one)
-- ARGV[6]  '1' when ARGV[7] is a new outcome, '0' to keep the stored one
-- ARGV[7]  outcome
-- ARGV[8]  now_ms (the caller's clock)
-- ARGV[9]  grace_ms added to native lifetimes
-- ARGV[10] write token (a replayed call is recognised and answered with its first result)
-- ARGV[11] channel, '' = no event
-- ARGV[12] message to publish
--
-- Reply:  the new version

local rec, idx, exp, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, owner = ARGV[1], ARGV[2]
local now, grace = tonumber(ARGV[8]), tonumber(ARGV[9])
local member = owner .. ':' .. id
local expires, sort = ARGV[4], ARGV[5]

local current = redis.call('HMGET', rec, 'v', 'e', 's', 'w')
local live = is_live(current[1], current[2], now)
if live and current[4] == ARGV[10] then
  return tonumber(current[1])
end

local version = 1
local expiry_changed = true
if live then
  version = tonumber(current[1]) + 1
  if sort == '' then
    sort = current[3]
  end
  expiry_changed = (current[2] or '') ~= expires
else
  if current[1] then
    -- An expired record is absent: its key starts over, without its old outcome.
    redis.call('DEL', rec)
  end
  if sort == '' then
    sort = ARGV[8]
  end
end

redis.call('HSET', rec, 'v', version, 'd', ARGV[3], 's', sort, 'w', ARGV[10])
if ARGV[6] == '1' then
  redis.call('HSET', rec, 'o', ARGV[7])
end
redis.call('ZADD', idx, sort, id)
if expiry_changed then
  set_expiry(rec, idx, exp, due, id, member, expires, now, grace)
end
notify(ARGV[11], ARGV[12])
return version
