-- cleanup.lua: remove a batch of one bucket's expired records.
--
-- The bucket's due zset lists every expiring record of the bucket's owners by expiry, so this
-- costs O(log n) per removed record. A due entry whose record has since been rewritten with a
-- later (or no) expiry is corrected instead of counted; the writes keep both in step, so this
-- is only a safety net.
--
-- KEYS[1]  bucket due zset      P:{B}:due
-- ARGV[1]  now_ms (the caller's clock)
-- ARGV[2]  bucket key prefix    P:{B}:
-- ARGV[3]  batch size
-- ARGV[4]  grace_ms added to native lifetimes
--
-- Reply:  {removed, more}: records removed, and 1 when a full batch was seen (call again)

local due = KEYS[1]
local now, base = tonumber(ARGV[1]), ARGV[2]
local members = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local removed = 0
for _, member in ipairs(members) do
  local sep = string.find(member, ':', 1, true)
  local owner, id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local rec = base .. 'r:' .. owner .. ':' .. encode_part(id)
  local idx, exp = base .. 'i:' .. owner, base .. 'x:' .. owner
  local current = redis.call('HMGET', rec, 'v', 'e')
  if is_live(current[1], current[2], now) then
    set_expiry(rec, idx, exp, due, id, member, current[2] or '', now, tonumber(ARGV[4]))
  else
    drop(rec, idx, exp, due, id, member)
    removed = removed + 1
  end
end
local more = 0
if #members == tonumber(ARGV[3]) then
  more = 1
end
return {removed, more}
