-- scan.lua: one bucket's share of a scan page: its live records after a keyset position.
--
-- The bucket's all zset holds every record of the bucket at score 0, so its members ("O:id")
-- sort by their bytes: a stable order that writes elsewhere never shift, and a position (the
-- last member seen) that stays meaningful when that member is deleted. Members whose record
-- is gone (expired, or reclaimed natively before a cleanup) are stepped over; so that a bucket
-- full of those cannot make one call walk it all, a call examines at most `budget` members
-- and then reports where it stopped. Read-only. Outcomes never leave the server.
--
-- KEYS[1]  bucket all zset                  P:{B}:all
-- ARGV[1]  now_ms (the caller's clock)
-- ARGV[2]  limit: live records wanted (>= 1)
-- ARGV[3]  position: the last member seen, '' = from the start of the bucket
-- ARGV[4]  the bucket's record key prefix   P:{B}:r:
-- ARGV[5]  budget: most members to examine (>= limit)
--
-- Reply:  {last, more, O, id, version, data, expires_at_ms ('' = never), sort_ms, O, id, ...}:
--         last = the last member examined ('' if none), more = 1 when members remain after
--         it, then 6 entries per live record, in member order

local all = KEYS[1]
local now, limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
local start = '-'
if ARGV[3] ~= '' then
  start = '(' .. ARGV[3]
end

local reply = {'', 0}
local found, examined = 0, 0
local batch = limit
if batch < 16 then
  batch = 16
end
while true do
  local members = redis.call('ZRANGEBYLEX', all, start, '+', 'LIMIT', 0, batch)
  for i, member in ipairs(members) do
    examined = examined + 1
    reply[1] = member
    local owner, id = split_due_member(member)
    local f = redis.call('HMGET', record_key(owner_records(ARGV[4], owner), id), 'v', 'd', 'e', 's')
    if is_live(f[1], f[3], now) then
      reply[#reply + 1] = owner
      reply[#reply + 1] = id
      reply[#reply + 1] = f[1]
      reply[#reply + 1] = f[2]
      reply[#reply + 1] = f[3] or ''
      reply[#reply + 1] = f[4]
      found = found + 1
    end
    if found == limit or examined >= budget then
      if i < #members or #redis.call('ZRANGEBYLEX', all, '(' .. member, '+', 'LIMIT', 0, 1) > 0 then
        reply[2] = 1
      end
      return reply
    end
  end
  if #members < batch then
    return reply
  end
  start = '(' .. reply[1]
end
