-- _lib.lua: helpers shared by every taskstore script.
--
-- RedisBackend prepends this file to each primitive before registering it, so every script
-- stays self-contained on the server (one EVALSHA, no server-side state). Everything here is
-- `local`: a script that writes a global is refused by Redis and poisons fakeredis's shared
-- Lua state for every later script.
--
-- Key layout: taskstore/backends/_redis_keys.py is its one source (drawn in its docstring,
-- pinned by the assertion at its end). Scripts get the keys of the record they write through
-- KEYS and key prefixes through ARGV; the only keys built here are those of records found in
-- zset members, by the rules below, which mirror KeyLayout's methods of the same names (keep
-- them in step). Derived keys keep the bucket's hash tag, so a script only ever touches one
-- cluster slot.
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

-- KeyLayout.record_key: a record's key, from its owner's record key prefix (P:{B}:r:O:) and
-- the raw task id.
local function record_key(owner_records, id)
  return owner_records .. encode_part(id)
end

-- KeyLayout.owner_key: an owner's listing or expiry key, from the bucket's prefix of that
-- kind (P:{B}:i: or P:{B}:x:) and the encoded owner.
local function owner_key(kind_prefix, owner)
  return kind_prefix .. owner
end

-- KeyLayout.owner_records: an owner's record key prefix, from the bucket's (P:{B}:r:).
local function owner_records(records_prefix, owner)
  return records_prefix .. owner .. ':'
end

-- KeyLayout.due_member: a record's member in its bucket's due and all zsets, "O:id". The
-- encoded owner holds no ':', so the first ':' splits it again (split_due_member).
local function due_member(owner, id)
  return owner .. ':' .. id
end

local function split_due_member(member)
  local sep = string.find(member, ':', 1, true)
  return string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
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
-- lifetimes) at `expires` ('' = never). The listing `idx` and the bucket's `all` hold every
-- record, `exp` and `due` the expiring ones: holding more than their expiring counterpart
-- means holding a record that never expires, so no native lifetime.
local function set_expiry(rec, idx, exp, due, all, id, member, expires, now, grace)
  if expires == '' then
    redis.call('HDEL', rec, 'e')
    redis.call('PERSIST', rec)
    redis.call('ZREM', exp, id)
    redis.call('ZREM', due, member)
    redis.call('PERSIST', idx)
    redis.call('PERSIST', all)
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
  expire_index(all, due, redis.call('ZCARD', all) > redis.call('ZCARD', due), ttl, now, grace)
end

-- Remove a record and its index entries (the record hash may already be gone).
local function drop(rec, idx, exp, due, all, id, member)
  redis.call('DEL', rec)
  redis.call('ZREM', idx, id)
  redis.call('ZREM', exp, id)
  redis.call('ZREM', due, member)
  redis.call('ZREM', all, member)
end

-- Publish `message` on `channel` unless the write carries no event ('' channel).
local function notify(channel, message)
  if channel ~= '' then
    redis.call('PUBLISH', channel, message)
  end
end
