"""In-process backend: lock-striped dicts with per-owner and expiry indexes (DESIGN §8).

An owner's records all live in one stripe, chosen by hashing the owner, so the quota check and
insert of :meth:`InMemoryBackend.create` and a page of :meth:`InMemoryBackend.list_by_prefix`
take one lock. Each stripe keeps, per owner, a sorted ``(sort_ms, task_id)`` index (listing costs
the page, never a scan) and a heap of expiry times (cleanup costs O(expired)). Bytes are encoded
and decoded by the store, outside these locks.

:meth:`InMemoryBackend.scan` (the optional
:class:`~taskstore.backends.base.ScanningBackend` capability) walks stripe by stripe, owners in
order within a stripe, each owner's records by that same index.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from taskstore.backends._options import to_int, url_options
from taskstore.backends.base import (
    KEEP,
    EventListener,
    Keep,
    Listeners,
    ListPosition,
    RecordKey,
    ScanPage,
    VersionedRecord,
    check_expiry,
    check_scan_limit,
    decode_scan_cursor,
    encode_scan_cursor,
    key_bytes,
    key_str,
    quota_exceeded,
)
from taskstore.backends.base import now_ms as _now_ms
from taskstore.errors import (
    ConfigurationError,
    InvalidCursorError,
    RecordNotFound,
    VersionConflict,
)

__all__ = ["InMemoryBackend"]

_log = logging.getLogger("taskstore.backends.memory")

# A scan position: format tag, stripe index, owner, sort_ms and task id of the last record
# returned (owner and task id as key bytes: surrogatepass keeps every str representable).
_SCAN_CURSOR = msgspec.msgpack.Decoder(tuple[Literal["m1"], int, bytes, int, bytes])


class _Entry:
    """A stored record: an immutable snapshot (what ``get`` returns) and the outcome blob.

    Writers replace ``record`` with one attribute store under the stripe lock, so a lock-free
    reader sees the record before or after a write, never a mix.
    """

    __slots__ = ("outcome", "record")

    def __init__(self, record: VersionedRecord, outcome: bytes | None) -> None:
        self.record = record
        self.outcome = outcome

    def live(self, now_ms: int) -> bool:
        expires_at_ms = self.record.expires_at_ms
        return expires_at_ms is None or expires_at_ms > now_ms


class _Shard:
    """One owner's records and their newest-last sorted index."""

    __slots__ = ("order", "records")

    def __init__(self) -> None:
        self.records: dict[str, _Entry] = {}
        self.order: list[tuple[int, str]] = []


class _Stripe:
    __slots__ = ("changed", "expiry", "lock", "records", "shards")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.shards: dict[str, _Shard] = {}
        self.records = 0
        # (expires_at_ms, owner, task_id); entries go stale when a record is rewritten or
        # deleted and are checked against the record when popped.
        self.expiry: list[tuple[int, str, str]] = []


class InMemoryBackend:
    """A thread-safe, process-local :class:`~taskstore.backends.base.StorageBackend`.

    Data lives as long as the object; nothing is shared across processes. Nothing here can
    fail transiently, so there is nothing to retry (the retry deadline is not consulted).

    :param stripes: number of lock stripes (default 64); owners are spread over them by hash.
    """

    max_variable_bytes: int | None = None
    max_result_bytes: int | None = None

    def __init__(self, *, stripes: int = 64) -> None:
        if isinstance(stripes, bool) or not isinstance(stripes, int) or stripes < 1:
            raise ConfigurationError("stripes must be a positive integer")
        self._stripes = [_Stripe() for _ in range(stripes)]
        self._listeners = Listeners()
        self._closed = False

    def __repr__(self) -> str:
        return f"InMemoryBackend(stripes={len(self._stripes)})"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InMemoryBackend:
        """Build from ``memory://`` (optionally ``?stripes=N``); keyword options win.

        :raises ConfigurationError: an option other than ``stripes``, or a bad value.
        """
        params = url_options(url, options, {"stripes": to_int})
        stripes = params.get("stripes", 64)
        return cls(stripes=stripes)

    # -- helpers ---------------------------------------------------------------------------

    def _stripe(self, owner: str) -> _Stripe:
        return self._stripes[hash(owner) % len(self._stripes)]

    @staticmethod
    def _remove(stripe: _Stripe, owner: str, task_id: str) -> _Entry | None:
        shard = stripe.shards.get(owner)
        if shard is None:
            return None
        entry = shard.records.pop(task_id, None)
        if entry is not None:
            stripe.records -= 1
            position = (entry.record.sort_ms, task_id)
            index = bisect.bisect_left(shard.order, position)
            if index < len(shard.order) and shard.order[index] == position:
                del shard.order[index]
            if not shard.records:
                del stripe.shards[owner]
        return entry

    def _insert(self, stripe: _Stripe, key: RecordKey, entry: _Entry) -> None:
        owner, task_id = key
        shard = stripe.shards.get(owner)
        if shard is None:
            shard = stripe.shards[owner] = _Shard()
        shard.records[task_id] = entry
        stripe.records += 1
        position = (entry.record.sort_ms, task_id)
        # New tasks are almost always the newest: appending keeps the insert O(1).
        if not shard.order or shard.order[-1] < position:
            shard.order.append(position)
        else:
            bisect.insort(shard.order, position)
        if entry.record.expires_at_ms is not None:
            heapq.heappush(stripe.expiry, (entry.record.expires_at_ms, owner, task_id))

    def _live_entry(self, stripe: _Stripe, key: RecordKey, now: int) -> _Entry | None:
        shard = stripe.shards.get(key[0])
        if shard is None:
            return None
        entry = shard.records.get(key[1])
        if entry is None or not entry.live(now):
            return None
        return entry

    def _purge(self, stripe: _Stripe, now: int) -> int:
        """Drop every expired record of ``stripe``; caller holds its lock."""
        removed = 0
        heap = stripe.expiry
        while heap and heap[0][0] <= now:
            expires_at_ms, owner, task_id = heapq.heappop(heap)
            shard = stripe.shards.get(owner)
            entry = shard.records.get(task_id) if shard is not None else None
            if entry is not None and entry.record.expires_at_ms == expires_at_ms:
                self._remove(stripe, owner, task_id)
                removed += 1
        return removed

    @staticmethod
    def _compact_expiry(stripe: _Stripe) -> None:
        """Rebuild the expiry heap once deletes left it mostly stale (caller holds the lock).

        Deleted records leave their heap entries behind until their old expiry; without this a
        create/delete churn would grow the heap without bound. Amortised O(1) per delete.
        """
        if len(stripe.expiry) <= 64 or len(stripe.expiry) <= 4 * stripe.records:
            return
        stripe.expiry = [
            (entry.record.expires_at_ms, owner, task_id)
            for owner, shard in stripe.shards.items()
            for task_id, entry in shard.records.items()
            if entry.record.expires_at_ms is not None
        ]
        heapq.heapify(stripe.expiry)

    def _publish(self, event: bytes | None) -> None:
        if event is not None:
            self._listeners.publish(event)

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this InMemoryBackend is closed")

    # -- the contract ----------------------------------------------------------------------

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """See :meth:`StorageBackend.get <taskstore.backends.base.StorageBackend.get>`.

        Without the outcome this takes no lock: records are immutable snapshots.
        """
        now = _now_ms(now_ms)
        stripe = self._stripe(key[0])
        if not include_outcome:
            shard = stripe.shards.get(key[0])
            entry = shard.records.get(key[1]) if shard is not None else None
            if entry is None or not entry.live(now):
                raise RecordNotFound(key)
            return entry.record
        with stripe.lock:
            entry = self._live_entry(stripe, key, now)
            if entry is None:
                raise RecordNotFound(key)
            return msgspec.structs.replace(entry.record, outcome=entry.outcome)

    def put(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        *,
        sort_ms: int | None = None,
        outcome: bytes | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """See :meth:`StorageBackend.put <taskstore.backends.base.StorageBackend.put>`."""
        self._check_open()
        check_expiry(expires_at_ms)
        now = _now_ms(now_ms)
        stripe = self._stripe(key[0])
        with stripe.lock:
            current = self._live_entry(stripe, key, now)
            if current is not None and sort_ms in (None, current.record.sort_ms):
                version = current.record.version + 1
                if current.record.expires_at_ms != expires_at_ms and expires_at_ms is not None:
                    heapq.heappush(stripe.expiry, (expires_at_ms, key[0], key[1]))
                current.record = VersionedRecord(
                    key=key,
                    data=data,
                    version=version,
                    expires_at_ms=expires_at_ms,
                    sort_ms=current.record.sort_ms,
                )
                if outcome is not None:
                    current.outcome = outcome
            else:
                version = current.record.version + 1 if current is not None else 1
                kept_outcome = current.outcome if current is not None else None
                self._remove(stripe, key[0], key[1])
                record = VersionedRecord(
                    key=key,
                    data=data,
                    version=version,
                    expires_at_ms=expires_at_ms,
                    sort_ms=now if sort_ms is None else sort_ms,
                )
                self._insert(
                    stripe, key, _Entry(record, outcome if outcome is not None else kept_outcome)
                )
            stripe.changed.notify_all()
        self._publish(event)
        return version

    def put_if_version(
        self,
        key: RecordKey,
        data: bytes,
        expected: int,
        expires_at_ms: int | Keep | None = KEEP,
        *,
        outcome: bytes | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """See :meth:`StorageBackend.put_if_version
        <taskstore.backends.base.StorageBackend.put_if_version>`."""
        self._check_open()
        if not isinstance(expires_at_ms, Keep):
            check_expiry(expires_at_ms)
        now = _now_ms(now_ms)
        stripe = self._stripe(key[0])
        with stripe.lock:
            entry = self._live_entry(stripe, key, now)
            actual = entry.record.version if entry is not None else 0
            if entry is None or actual != expected:
                raise VersionConflict(key, expected, actual)
            current = entry.record
            new_expiry = current.expires_at_ms if expires_at_ms is KEEP else expires_at_ms
            if new_expiry != current.expires_at_ms and new_expiry is not None:
                heapq.heappush(stripe.expiry, (new_expiry, key[0], key[1]))
            version = actual + 1
            entry.record = VersionedRecord(
                key=key,
                data=data,
                version=version,
                expires_at_ms=new_expiry,
                sort_ms=current.sort_ms,
            )
            if outcome is not None:
                entry.outcome = outcome
            stripe.changed.notify_all()
        self._publish(event)
        return version

    def create(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        *,
        sort_ms: int,
        max_live: int | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """See :meth:`StorageBackend.create <taskstore.backends.base.StorageBackend.create>`."""
        self._check_open()
        check_expiry(expires_at_ms)
        now = _now_ms(now_ms)
        stripe = self._stripe(key[0])
        with stripe.lock:
            existing = self._live_entry(stripe, key, now)
            if existing is not None:
                raise VersionConflict(key, 0, existing.record.version)
            # Expired records are absent: reclaim them so the owner's count is its live count.
            self._purge(stripe, now)
            self._remove(stripe, key[0], key[1])
            if max_live is not None:
                shard = stripe.shards.get(key[0])
                if shard is not None and len(shard.records) >= max_live:
                    raise quota_exceeded(max_live)
            record = VersionedRecord(
                key=key, data=data, version=1, expires_at_ms=expires_at_ms, sort_ms=sort_ms
            )
            self._insert(stripe, key, _Entry(record, None))
            stripe.changed.notify_all()
        self._publish(event)
        return 1

    def delete(self, key: RecordKey) -> bool:
        """See :meth:`StorageBackend.delete <taskstore.backends.base.StorageBackend.delete>`."""
        stripe = self._stripe(key[0])
        with stripe.lock:
            removed = self._remove(stripe, key[0], key[1]) is not None
            if removed:
                self._compact_expiry(stripe)
                stripe.changed.notify_all()
            return removed

    def list_by_prefix(
        self,
        owner: str,
        after: ListPosition | None = None,
        limit: int = 50,
        *,
        now_ms: int | None = None,
    ) -> list[VersionedRecord]:
        """See :meth:`StorageBackend.list_by_prefix
        <taskstore.backends.base.StorageBackend.list_by_prefix>`."""
        now = _now_ms(now_ms)
        stripe = self._stripe(owner)
        page: list[VersionedRecord] = []
        with stripe.lock:
            shard = stripe.shards.get(owner)
            if after is not None:
                anchor = self._live_entry(stripe, (owner, after.task_id), now)
                if anchor is None or anchor.record.sort_ms != after.sort_ms:
                    raise RecordNotFound((owner, after.task_id))
            if shard is None or limit <= 0:
                return page
            order = shard.order
            index = len(order) if after is None else bisect.bisect_left(order, tuple(after))
            while index > 0 and len(page) < limit:
                index -= 1
                task_id = order[index][1]
                entry = shard.records[task_id]
                if entry.live(now):
                    page.append(entry.record)
        return page

    def scan(
        self, cursor: str | None = None, limit: int = 100, *, now_ms: int | None = None
    ) -> ScanPage:
        """See :meth:`ScanningBackend.scan <taskstore.backends.base.ScanningBackend.scan>`.

        Order: stripe by stripe; within a stripe by owner, then by ``(sort_ms, task_id)``
        ascending (the listing index). The cursor is that position of the last record
        returned, so it survives writes and deletes; it is only meaningful to this backend
        object (stripes follow this process's string hashing). Pages are always full until
        the last one, which carries no cursor. Cost of a page: sorting the owners of each
        stripe it visits, plus the records it steps over; one stripe lock at a time.

        :raises InvalidCursorError: a cursor this backend did not issue.
        :raises InvalidParamsError: ``limit`` below 1.
        """
        check_scan_limit(limit)
        now = _now_ms(now_ms)
        first = 0
        position: tuple[str, int, str] | None = None
        if cursor is not None:
            _, first, owner_raw, sort_ms, task_raw = decode_scan_cursor(cursor, _SCAN_CURSOR)
            if not 0 <= first < len(self._stripes):
                raise InvalidCursorError("Invalid scan cursor")
            position = (key_str(owner_raw), sort_ms, key_str(task_raw))
        # One more than asked for: whether it exists tells if this is the last page.
        found: list[tuple[int, VersionedRecord]] = []
        for index in range(first, len(self._stripes)):
            stripe = self._stripes[index]
            with stripe.lock:
                self._scan_stripe(stripe, index, position, now, limit + 1, found)
            position = None
            if len(found) > limit:
                break
        if len(found) <= limit:
            return ScanPage([record for _, record in found], None)
        index, last = found[limit - 1]
        next_cursor = encode_scan_cursor(
            ("m1", index, key_bytes(last.key[0]), last.sort_ms, key_bytes(last.key[1]))
        )
        return ScanPage([record for _, record in found[:limit]], next_cursor)

    @staticmethod
    def _scan_stripe(
        stripe: _Stripe,
        index: int,
        position: tuple[str, int, str] | None,
        now: int,
        wanted: int,
        found: list[tuple[int, VersionedRecord]],
    ) -> None:
        """Append ``stripe``'s live records after ``position`` to ``found`` until it holds
        ``wanted`` (caller holds the stripe's lock)."""
        owners = sorted(
            stripe.shards if position is None else (o for o in stripe.shards if o >= position[0])
        )
        for owner in owners:
            shard = stripe.shards[owner]
            order = shard.order
            at = 0
            if position is not None and owner == position[0]:
                at = bisect.bisect_right(order, (position[1], position[2]))
            while at < len(order):
                entry = shard.records[order[at][1]]
                at += 1
                if entry.live(now):
                    found.append((index, entry.record))
                    if len(found) >= wanted:
                        return

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """See :meth:`StorageBackend.cleanup_expired
        <taskstore.backends.base.StorageBackend.cleanup_expired>`."""
        now = _now_ms(now_ms)
        removed = 0
        for stripe in self._stripes:
            if stripe.expiry and stripe.expiry[0][0] <= now:
                with stripe.lock:
                    removed += self._purge(stripe, now)
        return removed

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """See :meth:`StorageBackend.wait_for_change
        <taskstore.backends.base.StorageBackend.wait_for_change>`."""
        stripe = self._stripe(key[0])
        with stripe.lock:
            shard = stripe.shards.get(key[0])
            entry = shard.records.get(key[1]) if shard is not None else None
            current = entry.record.version if entry is not None else 0
            # Checked under the lock writers notify under: a write after the caller's read
            # either shows here or notifies us after we start waiting, never in between.
            if current == version and timeout_s > 0:
                stripe.changed.wait(timeout_s)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """See :meth:`StorageBackend.add_listener
        <taskstore.backends.base.StorageBackend.add_listener>`."""
        return self._listeners.add(listener)

    def close(self) -> None:
        """Drop every record and listener; further writes raise ``ConfigurationError``."""
        self._closed = True
        self._listeners.clear()
        for stripe in self._stripes:
            with stripe.lock:
                stripe.shards.clear()
                stripe.expiry.clear()
                stripe.records = 0
                stripe.changed.notify_all()
