-- cleanup.lua: remove a batch of one bucket's expired records.
--
-- The bucket's due zset lists every expiring record of the bucket's owners by expiry, so this
-- costs O(log n) per removed record. A due entry whose record has since been rewritten with a
-- later (or no) expiry is corrected instead of counted; the writes keep both in step, so this
-- is only a safety net. Each due member names its owner and task ("O:id"); their keys are
-- derived from the bucket's key prefixes (see _lib.lua).
--
-- KEYS[1]  bucket due zset                  P:{B}:due
-- KEYS[2]  bucket all zset                  P:{B}:all
-- ARGV[1]  now_ms (the caller's clock)
-- ARGV[2]  batch size
-- ARGV[3]  grace_ms added to native lifetimes
-- ARGV[4]  the bucket's record key prefix   P:{B}:r:
-- ARGV[5]  the bucket's listing key prefix  P:{B}:i:
-- ARGV[6]  the bucket's expiry key prefix   P:{B}:x:
--
-- Reply:  {removed, more}: records removed, and 1 when a full batch was seen (call again)

local due, all = KEYS[1], KEYS[2]
local now, batch, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local members = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, batch)
local removed = 0
for _, member in ipairs(members) do
  local owner, id = split_due_member(member)
  local rec = record_key(owner_records(ARGV[4], owner), id)
  local idx, exp = owner_key(ARGV[5], owner), owner_key(ARGV[6], owner)
  local current = redis.call('HMGET', rec, 'v', 'e')
  if is_live(current[1], current[2], now) then
    set_expiry(rec, idx, exp, due, all, id, member, current[2] or '', now, grace)
  else
    drop(rec, idx, exp, due, all, id, member)
    removed = removed + 1
  end
end
local more = 0
if #members == batch then
  more = 1
end
return {removed, more}
