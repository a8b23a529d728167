-- list.lua: one page of an owner's live records, newest first, after a keyset anchor.
--
-- The owner's listing zset orders members by (sort_ms, raw task id bytes), which is exactly the
-- contract's order reversed (UTF-8 byte order is code point order), so a page is a reverse
-- rank range starting just past the anchor's rank. Expired records are skipped, so the cost is
-- the page plus the expired records it steps over (cleanup keeps those few).
--
-- KEYS[1]  owner listing zset   P:{B}:i:O
-- KEYS[2]  anchor record hash   P:{B}:r:O:T (only when paging after an anchor)
-- ARGV[1]  now_ms (the caller's clock)
-- ARGV[2]  limit (>= 1)
-- ARGV[3]  record key prefix of the owner, P:{B}:r:O:
-- ARGV[4]  anchor id: raw task id bytes (only with KEYS[2])
-- ARGV[5]  anchor sort_ms (only with KEYS[2])
--
-- Reply:  flat array, 5 entries per record: id, version, data, expires_at_ms ('' = never),
--         sort_ms
-- Errors: "TSNOTFOUND"  the anchor is no longer live (or moved): a stale cursor must never
--         silently restart or skip

local idx = KEYS[1]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = 0
if KEYS[2] then
  local anchor = redis.call('HMGET', KEYS[2], 'v', 'e', 's')
  if not is_live(anchor[1], anchor[2], now) or tonumber(anchor[3]) ~= tonumber(ARGV[5]) then
    return redis.error_reply('TSNOTFOUND')
  end
  local rank = redis.call('ZREVRANK', idx, ARGV[4])
  if not rank then
    return redis.error_reply('TSNOTFOUND')
  end
  start = rank + 1
end

local page, found = {}, 0
local batch = limit
if batch < 16 then
  batch = 16
end
while found < limit do
  local ids = redis.call('ZREVRANGE', idx, start, start + batch - 1)
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', record_key(ARGV[3], id), 'v', 'd', 'e', 's')
    if is_live(f[1], f[3], now) then
      page[#page + 1] = id
      page[#page + 1] = f[1]
      page[#page + 1] = f[2]
      page[#page + 1] = f[3] or ''
      page[#page + 1] = f[4]
      found = found + 1
      if found == limit then
        break
      end
    end
  end
  if #ids < batch then
    break
  end
  start = start + batch
end
return page
