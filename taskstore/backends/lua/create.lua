-- create.lua: insert a new record at version 1 if its key is not live and the owner holds
-- fewer than max_live live records. Both checks and the insert are one atomic step, which is
-- what makes the quota exact under any number of racing processes.
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
-- ARGV[10] sort_ms
-- ARGV[11] max_live, '' = no quota
-- ARGV[12] record key prefix of the owner, P:{B}:r:O: (to reclaim expired records)
--
-- Reply:  1, the new version
-- Errors: "TSCONFLICT <actual>"  the key is live at version <actual>
--         "TSQUOTA <max_live>"   the owner already holds max_live live records

local rec, idx, exp, due, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, owner = ARGV[1], ARGV[2]
local now, grace, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local member = due_member(owner, id)

local current = redis.call('HMGET', rec, 'v', 'e', 'w')
if is_live(current[1], current[2], now) then
  if current[3] == token then
    return tonumber(current[1])
  end
  return redis.error_reply('TSCONFLICT ' .. current[1])
end
if current[1] then
  -- An expired record is absent: its key starts over, without its old outcome.
  drop(rec, idx, exp, due, all, id, member)
end

-- Reclaim a bounded batch of the owner's expired records, so an owner's indexes stay small
-- even where nobody calls cleanup_expired; the ZCOUNT below keeps the count exact regardless.
local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 100)
for _, old in ipairs(expired) do
  drop(record_key(ARGV[12], old), idx, exp, due, all, old, due_member(owner, old))
end

if ARGV[11] ~= '' then
  local limit = tonumber(ARGV[11])
  local live = redis.call('ZCARD', idx) - redis.call('ZCOUNT', exp, '-inf', now)
  if live >= limit then
    return redis.error_reply('TSQUOTA ' .. ARGV[11])
  end
end

redis.call('HSET', rec, 'v', 1, 'd', ARGV[3], 's', ARGV[10], 'w', token)
redis.call('ZADD', idx, ARGV[10], id)
redis.call('ZADD', all, 0, member)
set_expiry(rec, idx, exp, due, all, id, member, ARGV[9], now, grace)
notify(ARGV[7], ARGV[8])
return 1
