-- put.lua: write a record unconditionally; a missing or expired key starts again at version 1.
--
-- KEYS[1]  record hash          P:{B}:r:O:T
-- KEYS[2]  owner listing zset   P:{B}:i:O
-- KEYS[3]  owner expiry zset    P:{B}:x:O
-- KEYS[4]  bucket due zset      P:{B}:due
-- KEYS[5]  bucket all zset      P:{B}:all
-- ARGV[1]  id: raw task id bytes (zset member)
-- ARGV[2]  O: encoded owner
-- ARGV[3]  data
-- ARGV[4]  now_ms (the caller's clock)
-- ARGV[5]  grace_ms added to native lifetimes
-- ARGV[6]  write token (a replayed call is recognised and answered with its first result)
-- ARGV[7]  channel, '' = no event
-- ARGV[8]  message to publish
-- ARGV[9]  expires_at_ms, '' = never
-- ARGV[10] sort_ms, '' = keep the live record's (now_ms for a new one)
-- ARGV[11] '1' when ARGV[12] is a new outcome, '0' to keep the stored one
-- ARGV[12] outcome
--
-- Reply:  the new version

local rec, idx, exp, due, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, owner = ARGV[1], ARGV[2]
local now, grace, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local member = due_member(owner, id)
local expires, sort = ARGV[9], ARGV[10]

local current = redis.call('HMGET', rec, 'v', 'e', 's', 'w')
local live = is_live(current[1], current[2], now)
if live and current[4] == token then
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
    sort = ARGV[4]
  end
end

redis.call('HSET', rec, 'v', version, 'd', ARGV[3], 's', sort, 'w', token)
if ARGV[11] == '1' then
  redis.call('HSET', rec, 'o', ARGV[12])
end
redis.call('ZADD', idx, sort, id)
redis.call('ZADD', all, 0, member)
if expiry_changed then
  set_expiry(rec, idx, exp, due, all, id, member, expires, now, grace)
end
notify(ARGV[7], ARGV[8])
return version
