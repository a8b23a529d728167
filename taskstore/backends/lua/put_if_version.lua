-- put_if_version.lua: compare-and-set; write only if the live version is the expected one.
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
-- ARGV[9]  expires_at_ms: 'keep' = unchanged, '' = never, else epoch ms
-- ARGV[10] expected version
-- ARGV[11] '1' when ARGV[12] is a new outcome, '0' to keep the stored one
-- ARGV[12] outcome
--
-- Reply:  the new version (expected + 1)
-- Errors: "TSCONFLICT <actual>"  the live version is <actual> (0: missing or expired)

local rec, idx, exp, due, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, owner = ARGV[1], ARGV[2]
local now, grace, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local expires = ARGV[9]

local current = redis.call('HMGET', rec, 'v', 'e', 'w')
local actual = 0
if is_live(current[1], current[2], now) then
  actual = tonumber(current[1])
end
if actual == 0 or actual ~= tonumber(ARGV[10]) then
  if actual ~= 0 and current[3] == token then
    -- Our own write, replayed after its reply was lost: it already succeeded.
    return actual
  end
  return redis.error_reply('TSCONFLICT ' .. actual)
end

redis.call('HSET', rec, 'v', actual + 1, 'd', ARGV[3], 'w', token)
if ARGV[11] == '1' then
  redis.call('HSET', rec, 'o', ARGV[12])
end
if expires ~= 'keep' and (current[2] or '') ~= expires then
  set_expiry(rec, idx, exp, due, all, id, due_member(owner, id), expires, now, grace)
end
notify(ARGV[7], ARGV[8])
return actual + 1
