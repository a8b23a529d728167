-- delete.lua: remove a record, its outcome and its index entries.
--
-- KEYS[1]  record hash          P:{B}:r:O:T
-- KEYS[2]  owner listing zset   P:{B}:i:O
-- KEYS[3]  owner expiry zset    P:{B}:x:O
-- KEYS[4]  bucket due zset      P:{B}:due
-- KEYS[5]  bucket all zset      P:{B}:all
-- ARGV[1]  id: raw task id bytes (zset member)
-- ARGV[2]  O: encoded owner
-- ARGV[3]  channel ('' = nobody to wake)
-- ARGV[4]  wake-up message (wakes waiters on the key; carries no listener event)
--
-- Reply:  1 if a record was removed, else 0

local removed = redis.call('EXISTS', KEYS[1])
drop(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], due_member(ARGV[2], ARGV[1]))
if removed == 1 then
  notify(ARGV[3], ARGV[4])
end
return removed
