"""Key layout of the Redis backend: the one source of every key name it uses (DESIGN §8).

Layout (``P`` = prefix, ``B`` = the owner's bucket, ``O``/``T`` = owner and task id through
:func:`~taskstore.backends.base.encode_key_part`, ``id`` = the task id's UTF-8 bytes)::

    P:{B}:r:O:T   hash: v version, d data, o outcome, e expires_at_ms, s sort_ms, w write token
    P:{B}:i:O     zset: the owner's records, member id, score sort_ms (listing, quota)
    P:{B}:x:O     zset: the owner's expiring records, member id, score expires_at_ms (quota)
    P:{B}:due     zset: every expiring record of the bucket, member "O:id" (cleanup)
    P:{B}:all     zset: every record of the bucket, score 0, member "O:id" (scan)
    P:events      pub/sub channel: events and wake-ups of every write that carries an event

Why a bucket and not the owner in the hash tag: ``cleanup_expired`` must find expired records
of *every* owner in O(expired), and on Redis Cluster a script may only touch one slot, so no
single expiry index can be updated by every owner's writes. Owners are therefore spread over
1024 buckets (``crc32(O) % 1024``); every key of an owner and its bucket's ``due`` index share
the tag ``{bNNN}``, so each mutation keeps all indexes exact in one script call, and cleanup
probes the 1024 ``due`` indexes in one pipelined round trip (per cluster node) and then runs one
script per bucket that holds expired records. 1024 tags spread load evenly over clusters of up to
about a hundred primaries.

Why ``all``: a scan across owners (``RedisBackend.scan``) needs an order that survives writes,
failovers and resharding, which ``SCAN`` cursors (per node, duplicates allowed, page sizes a
hint) do not give. Members of a zset with equal scores sort by their bytes, so each bucket's
``all`` is a stable keyset order; a pass walks bucket after bucket, each in one slot. Like an
owner's listing next to its expiry index, ``all`` holds what ``due`` holds plus the records
that never expire, and follows the same native lifetime rules.

The Lua scripts receive every key of the record they write through ``KEYS`` and every prefix
through ``ARGV``, all built here. They derive keys only from zset members read inside the
script (records to list, reclaim or clean up), by the rules of :class:`KeyLayout` that
``lua/_lib.lua`` mirrors (``record_key``, ``owner_key``, ``owner_records``, ``due_member``);
the keys so derived share the bucket's hash tag, so they stay in the script's cluster slot.
The assertion at the end of this module pins the layout: change it only together with the Lua.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

from taskstore.backends.base import RecordKey, encode_key_part, key_bytes

__all__ = ["BUCKETS", "BucketKeys", "KeyLayout", "RecordKeys"]

#: How many buckets (hash tags) owners are spread over.
BUCKETS = 1024

#: Text that encode_key_part leaves as it is (RFC 3986 unreserved characters).
_UNENCODED = re.compile(r"[A-Za-z0-9_.~-]*")
#: Owners whose record key prefix a layout remembers.
_CACHED_OWNERS = 4096


class BucketKeys(NamedTuple):
    """The keys and key prefixes of one bucket (all share its hash tag)."""

    #: ``P:{B}:due``, the bucket's expiry index.
    due: str
    #: ``P:{B}:r:``: an owner's record key prefix is this, the owner part and ``:``.
    records: str
    #: ``P:{B}:i:``: an owner's listing key is this and the owner part.
    listings: str
    #: ``P:{B}:x:``: an owner's expiry key is this and the owner part.
    expiries: str
    #: ``P:{B}:all``, the bucket's index of every record (scan).
    all_records: str


class RecordKeys(NamedTuple):
    """Every key and identifier a write of one record needs."""

    record: str
    listing: str
    expiry: str
    due: str
    all_records: str
    #: ``P:{B}:r:O:``, the prefix of every record key of the owner.
    record_prefix: str
    #: ``O``, the encoded owner.
    owner: str
    #: The task id's UTF-8 bytes: its member in the owner's zsets (UTF-8 preserves code point
    #: order under memcmp, which the listing zset's tie-break on member bytes relies on).
    member: bytes
    #: ``O:T``, which names the record in pub/sub messages.
    wake: bytes

    @property
    def writes(self) -> tuple[str, str, str, str, str]:
        """``KEYS`` of every mutation script: record, listing, expiry, due and all."""
        return (self.record, self.listing, self.expiry, self.due, self.all_records)


def _bucket_keys(prefix: str, bucket: int) -> BucketKeys:
    # The hash tag {bNNN} is the only part of a key Redis Cluster hashes.
    base = f"{prefix}:{{b{bucket:03x}}}:"
    return BucketKeys(
        due=base + "due",
        records=base + "r:",
        listings=base + "i:",
        expiries=base + "x:",
        all_records=base + "all",
    )


class KeyLayout:
    """Builds every key of one prefix; immutable, thread-safe."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: The pub/sub channel of every event and wake-up under this prefix.
        self.channel = f"{prefix}:events"
        self._buckets = tuple(_bucket_keys(prefix, bucket) for bucket in range(BUCKETS))
        # Owner → the owner's record key prefix (see key_of); dict reads and writes are atomic.
        self._owner_records: dict[str, str] = {}

    @property
    def buckets(self) -> tuple[BucketKeys, ...]:
        """Every bucket, in bucket order."""
        return self._buckets

    def bucket(self, owner_part: str) -> BucketKeys:
        """The bucket of an encoded owner."""
        # crc32, not hash(): every process must agree on an owner's bucket.
        return self._buckets[zlib.crc32(owner_part.encode("ascii")) % BUCKETS]

    @staticmethod
    def owner_key(kind_prefix: str, owner_part: str) -> str:
        """An owner's listing or expiry key, from the bucket's prefix of that kind."""
        return kind_prefix + owner_part

    @staticmethod
    def owner_records(records_prefix: str, owner_part: str) -> str:
        """An owner's record key prefix, from the bucket's ``records`` prefix."""
        return f"{records_prefix}{owner_part}:"

    @staticmethod
    def record_key(owner_records: str, task_id: str) -> str:
        """A record's key, from the owner's record key prefix."""
        return owner_records + encode_key_part(task_id)

    @staticmethod
    def due_member(owner_part: str, member: bytes) -> bytes:
        """A record's member in its bucket's ``due`` and ``all`` indexes."""
        return owner_part.encode("ascii") + b":" + member

    def owner_listing(self, owner: str) -> tuple[str, str]:
        """The listing key and the record key prefix of ``owner``."""
        owner_part = encode_key_part(owner)
        bucket = self.bucket(owner_part)
        return (
            self.owner_key(bucket.listings, owner_part),
            self.owner_records(bucket.records, owner_part),
        )

    def key_of(self, key: RecordKey) -> str:
        """The key of the record hash at ``key`` (all that a read needs)."""
        # Every read builds one: the owner's part comes from a small cache, and ids made only
        # of characters the key encoding keeps (uuid4 ids are) skip the percent-encoder.
        owner, task_id = key
        records = self._owner_records.get(owner)
        if records is None:
            owner_part = encode_key_part(owner)
            records = self.owner_records(self.bucket(owner_part).records, owner_part)
            if len(self._owner_records) >= _CACHED_OWNERS:
                self._owner_records.clear()  # bounded; refilled by the owners still calling
            self._owner_records[owner] = records
        if _UNENCODED.fullmatch(task_id) is not None:
            return records + task_id
        return self.record_key(records, task_id)

    def record(self, key: RecordKey) -> RecordKeys:
        """Every key and identifier of the record at ``key``."""
        owner_part, task_part = encode_key_part(key[0]), encode_key_part(key[1])
        bucket = self.bucket(owner_part)
        records = self.owner_records(bucket.records, owner_part)
        return RecordKeys(
            record=self.record_key(records, key[1]),
            listing=self.owner_key(bucket.listings, owner_part),
            expiry=self.owner_key(bucket.expiries, owner_part),
            due=bucket.due,
            all_records=bucket.all_records,
            record_prefix=records,
            owner=owner_part,
            member=key_bytes(key[1]),
            wake=f"{owner_part}:{task_part}".encode("ascii"),
        )


# The layout, pinned in one place: the Lua scripts derive keys by the same rules, so a change
# here must go together with lua/_lib.lua (and makes existing data unreachable).
assert KeyLayout("P").record(("o", "t:{1}")) == RecordKeys(
    record="P:{b344}:r:o:t%3A%7B1%7D",
    listing="P:{b344}:i:o",
    expiry="P:{b344}:x:o",
    due="P:{b344}:due",
    all_records="P:{b344}:all",
    record_prefix="P:{b344}:r:o:",
    owner="o",
    member=b"t:{1}",
    wake=b"o:t%3A%7B1%7D",
), "the Redis key layout changed: keep lua/_lib.lua in step"
assert KeyLayout("P").key_of(("o", "t:{1}")) == "P:{b344}:r:o:t%3A%7B1%7D"
assert KeyLayout("P").key_of(("o", "a-Z_0.~")) == KeyLayout("P").record(("o", "a-Z_0.~")).record
