-- _lib.lua: helpers shared by every taskstore script.
--
-- RedisBackend prepends this file to each primitive before registering it, so every script
-- stays self-contained on the server (one EVALSHA, no server-side state). Everything here is
-- `local`: a script that writes a global is refused by Redis and poisons fakeredis's shared
-- Lua state for every later script.
--
-- Key layout (P = prefix, B = the owner's bucket tag, O = encoded owner, T = encoded task id,
-- id = the raw task id bytes):
--   P:{B}:r:O:T   record hash: v = version, d = data, o = outcome, e = expires_at_ms (absent:
--                 never), s = sort_ms, w = token of the last write
--   P:{B}:i:O     zset of the owner's records: member id, score sort_ms (listing, quota)
--   P:{B}:x:O     zset of the owner's expiring records: member id, score expires_at_ms
--   P:{B}:due     zset of the bucket's expiring records: member "O:id", score expires_at_ms
-- Every key of a bucket shares the hash tag {B}, so a script only ever touches one cluster
-- slot; keys derived here from zset members are in that same slot.
--
-- Time never comes from the server: `now` is always the caller's clock (ARGV), so expiry
-- agrees with the store's injectable clock. Numbers stay strings where they are stored, so no
-- float formatting can creep into a field.

-- True when a record read with HMGET (false = missing field) is live at `now`.
local function is_live(version, expires, now)
  return version ~= false and version ~= nil
    and (expires == false or expires == nil or tonumber(expires) > now)
end

-- Percent-encoding identical to Python's urllib.parse.quote(raw_bytes, safe=""), i.e. to
-- taskstore.backends.base.encode_key_part: task ids in key names are always encoded.
local function encode_part(raw)
  return (string.gsub(raw, '[^A-Za-z0-9_%.%-~]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

-- Native lifetime (PEXPIRE ms) for something logically expiring at `expires_at`: relative to
-- this write and padded by `grace`, so Redis reclaims space only after the caller's clock says
-- the record is gone, whatever the skew between the caller's and the server's clocks.
local function native_ttl(expires_at, now, grace)
  local ttl = expires_at - now + grace
  if ttl < 1 then
    return 1
  end
  return ttl
end

-- Keep the index `key` alive at least `ttl` ms, the native lifetime of the record just
-- written (PERSIST instead when it also holds records that never expire). Lifetimes only ever
-- grow, so an index outlives every record it lists; a key without one (new, or no longer
-- needing persistence) takes the latest expiry among `scores`.
local function expire_index(key, scores, persist, ttl, now, grace)
  if persist then
    redis.call('PERSIST', key)
    return
  end
  local current = redis.call('PTTL', key)
  if current == -1 then
    local last = redis.call('ZRANGE', scores, -1, -1, 'WITHSCORES')
    if last[2] ~= nil then
      local latest = native_ttl(tonumber(last[2]), now, grace)
      if latest > ttl then
        ttl = latest
      end
    end
  elseif current >= ttl then
    return
  end
  redis.call('PEXPIRE', key, ttl)
end

-- Point a record's expiry (field e, the owner's and the bucket's expiry indexes and the native
-- lifetimes) at `expires` ('' = never).
local function set_expiry(rec, idx, exp, due, id, member, expires, now, grace)
  if expires == '' then
    redis.call('HDEL', rec, 'e')
    redis.call('PERSIST', rec)
    redis.call('ZREM', exp, id)
    redis.call('ZREM', due, member)
    redis.call('PERSIST', idx)
    return
  end
  redis.call('HSET', rec, 'e', expires)
  redis.call('ZADD', exp, expires, id)
  redis.call('ZADD', due, expires, member)
  local ttl = native_ttl(tonumber(expires), now, grace)
  redis.call('PEXPIRE', rec, ttl)
  expire_index(idx, exp, redis.call('ZCARD', idx) > redis.call('ZCARD', exp), ttl, now, grace)
  expire_index(exp, exp, false, ttl, now, grace)
  expire_index(due, due, false, ttl, now, grace)
end

-- Remove a record and its index entries (the record hash may already be gone).
local function drop(rec, idx, exp, due, id, member)
  redis.call('DEL', rec)
  redis.call('ZREM', idx, id)
  redis.call('ZREM', exp, id)
  redis.call('ZREM', due, member)
end

-- Publish `message` on `channel` unless the write carries no event ('' channel).
local function notify(channel, message)
  if channel ~= '' then
    redis.call('PUBLISH', channel, message)
  end
end
