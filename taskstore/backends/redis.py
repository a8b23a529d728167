"""Redis backend: one Lua script call per mutation, cross-process safe, Redis Cluster ready
(DESIGN §8).

The key layout (one bucket hash tag per owner group, so the backend works on Redis Cluster) lives
in :mod:`taskstore.backends._redis_keys`, the scripts in :mod:`taskstore.backends._redis_scripts`,
the retries of transient faults and the one mapping of driver errors in
:mod:`taskstore.backends._redis_faults`, and the event subscription in
:mod:`taskstore.backends._redis_events`.

Faults: every call retries connection errors, timeouts, ``LOADING`` and cluster failovers with
jittered backoff until the retry deadline of the store operation making it (``StoreConfig.
retry_deadline_ms``); a mutation replayed after a lost reply recognises its own write token and
answers with its first result. A call that still fails raises ``BackendError`` whose
``applied`` is ``False`` when no attempt's script was sent (or the server refused it), else
``None``.

Costs: :meth:`~RedisBackend.get` is one ``HMGET`` that never transfers the outcome; every
mutation is one ``EVALSHA`` (quota check, compare-and-set, index upkeep and ``PUBLISH``
included); a :meth:`~RedisBackend.list_by_prefix` page is one ``EVALSHA`` whatever its size;
a :meth:`~RedisBackend.scan` page (across owners) is one ``EVALSHA`` per bucket it draws
records from, plus pipelined probes for the next non-empty buckets.

Expiry is judged against the caller's ``now_ms`` (the store's injectable clock) in every read
and script, never against the server's clock, so an expired record is absent everywhere before
Redis deletes it. Native lifetimes only reclaim space: each key gets a relative ``PEXPIRE`` of
``expires_at_ms - now_ms + reclaim_delay_ms`` (relative, so clock skew between hosts or a
manual clock in tests can never make Redis drop a record the store still considers live).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import msgspec

from taskstore.backends._redis_events import Notifier
from taskstore.backends._redis_keys import BUCKETS, KeyLayout, RecordKeys
from taskstore.backends.base import (
    KEEP,
    EventListener,
    Keep,
    ListPosition,
    RecordKey,
    ScanPage,
    VersionedRecord,
    check_expiry,
    check_scan_limit,
    decode_key_part,
    decode_scan_cursor,
    encode_scan_cursor,
    key_bytes,
    key_str,
    write_token,
)
from taskstore.backends.base import now_ms as _now_ms
from taskstore.errors import (
    ConfigurationError,
    InvalidCursorError,
    MissingDependencyError,
    RecordNotFound,
    VersionConflict,
)

try:
    import redis
    from redis.cluster import RedisCluster
except ImportError:
    raise MissingDependencyError(
        "The 'redis' package is needed for the Redis backend: pip install 'taskstore[redis]'"
    ) from None

from taskstore.backends._redis_client import (
    RedisClient,
    ThreadClients,
    client_from_url,
    tracks_sends,
)
from taskstore.backends._redis_faults import Retrier
from taskstore.backends._redis_scripts import Conflict, Scripts, untyped

__all__ = ["RedisBackend"]

_log = logging.getLogger("taskstore.backends.redis")

_CLEANUP_BATCH = 500
# Members of a bucket's `all` index one scan.lua call may step over beyond the records it
# returns (dead members of records reclaimed natively before a cleanup): bounds a call's time.
_SCAN_SLACK = 1000
# The first probe of a scan for non-empty buckets covers this many; each next one four times
# more, so a dense store probes a few buckets per page and an empty one all 1024 in 4 trips.
_SCAN_FIRST_PROBE = 16
# A scan position: format tag, bucket, the last `all` member returned (b"": the bucket's start).
_SCAN_CURSOR = msgspec.msgpack.Decoder(tuple[Literal["r1"], int, bytes])
# The record hash's fields a read asks for (version, data, expiry, sort; outcome), as bytes:
# the driver sends bytes as they are, where it would encode text on every call.
_FIELDS = (b"v", b"d", b"e", b"s")
_FIELDS_WITH_OUTCOME = (*_FIELDS, b"o")
# How long add_listener waits for the subscription to be confirmed, so that events of writes
# made right after it returns are delivered.
_SUBSCRIBE_TIMEOUT_S = 5.0


class RedisBackend:
    """A :class:`~taskstore.backends.base.StorageBackend` on Redis or Redis Cluster, shared by
    every thread and process using the same server and prefix.

    Thread-safe (redis-py clients are). Events travel over Redis pub/sub, so listeners and
    waiters in every process see every write that carries one; a background thread holding one
    subscription starts on the first :meth:`add_listener` or :meth:`wait_for_change`.

    :param client: a ``redis.Redis`` (also a fakeredis client) or ``redis.cluster.RedisCluster``
        with ``decode_responses=False``. The caller keeps ownership: :meth:`close` does not close
        it. Its retry policy is safe to keep: a mutation script that redis-py replays after a
        lost reply recognises its own write token and answers with its first result instead of
        applying twice. The backend retries transient faults on top of it, until the retry
        deadline; since such a client does not count what it sends, a failed mutation is
        reported ``applied=None`` unless the server refused it (clients from :meth:`from_url`
        tell ``False`` too).
    :param prefix: namespace of every key and of the event channel; must not contain ``{`` or
        ``}`` (the hash tag is the backend's).
    :param reclaim_delay_ms: how long after a record's expiry (as the writer's clock saw it)
        Redis reclaims its keys natively. Expired records are invisible at once regardless.
    :param wait_slice_s: the longest single sleep of :meth:`wait_for_change`; bounds the delay a
        pub/sub message lost to a broken connection can cause (the store then re-reads).
    :raises ConfigurationError: bad prefix or option, or a client that decodes responses.
    """

    max_variable_bytes: int | None = None
    max_result_bytes: int | None = None

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "taskstore",
        reclaim_delay_ms: int = 60_000,
        wait_slice_s: float = 1.0,
    ) -> None:
        if not isinstance(client, (redis.Redis, RedisCluster)):
            raise ConfigurationError(
                "RedisBackend needs a redis.Redis or redis.cluster.RedisCluster client, "
                f"got {type(client).__name__}"
            )
        if client.get_connection_kwargs().get("decode_responses"):
            raise ConfigurationError(
                "RedisBackend needs a client with decode_responses=False (records are bytes)"
            )
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"prefix must be a non-empty string without '{{' or '}}', got {prefix!r}"
            )
        if isinstance(reclaim_delay_ms, bool) or not isinstance(reclaim_delay_ms, int) or (
            reclaim_delay_ms < 0
        ):
            raise ConfigurationError("reclaim_delay_ms must be a non-negative integer")
        if isinstance(wait_slice_s, bool) or not isinstance(wait_slice_s, (int, float)) or not (
            wait_slice_s > 0
        ):
            raise ConfigurationError("wait_slice_s must be a positive number of seconds")
        self._client: RedisClient = client
        self._prefix = prefix
        self._grace = str(reclaim_delay_ms)
        self._wait_slice_s = float(wait_slice_s)
        self._layout = KeyLayout(prefix)
        self._channel = self._layout.channel
        self._retrier = Retrier(tracks_sends(client))
        self._clients = ThreadClients(client)
        self._scripts = Scripts(client, self._retrier, self._clients.get)
        self._notifier = Notifier(
            lambda: untyped(client.pubsub)(ignore_subscribe_messages=False), self._channel
        )
        self._owns_client = False
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self._prefix!r})"

    @property
    def client(self) -> RedisClient:
        """The redis-py client this backend drives."""
        return self._client

    @property
    def prefix(self) -> str:
        """The key prefix (namespace) of this backend."""
        return self._prefix

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """Build from ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS) or
        ``unix:///path/to/socket``; query parameters are options, keyword options win.

        Backend options: ``prefix`` (default ``taskstore``), ``cluster`` (``true`` builds a
        ``RedisCluster`` from the URL's node), ``reclaim_delay_ms``, ``wait_slice_s`` and
        ``retries`` (redis-py's own immediate retries within one attempt, default 0: the
        backend retries transient faults itself, with backoff, until the retry deadline). Client
        options: ``socket_timeout`` and ``socket_connect_timeout`` (seconds, default 5),
        ``max_connections``, ``health_check_interval``, ``socket_keepalive``, ``client_name``,
        ``username``, ``password``, ``db``, ``protocol`` and the ``ssl_*`` options of rediss.
        The backend owns this client and closes it in :meth:`close`. How long calls retry
        transient faults is the store's ``retry_deadline_ms`` (a query option of
        :func:`taskstore.open` for every URL), handed to each call; see
        :func:`~taskstore.backends.base.retrying_until`.

        :raises ConfigurationError: another scheme, an unknown option or a bad value.
        :raises BackendError: ``cluster=true`` and the cluster cannot be reached.
        """
        client, backend_options = client_from_url(url, options)
        try:
            backend = cls(client, **backend_options)
        except BaseException:
            client.close()
            raise
        backend._owns_client = True
        return backend

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this RedisBackend is closed")

    def _record_key(self, key: RecordKey) -> str:
        return self._layout.key_of(key)

    def _keys(self, key: RecordKey) -> RecordKeys:
        return self._layout.record(key)

    def _write(
        self,
        script: str,
        key: RecordKey,
        keys: RecordKeys,
        data: bytes,
        event: bytes | None,
        now_ms: int | None,
        *specific: object,
    ) -> Any:
        """Run mutation ``script`` on the record at ``key``: its four keys, then the arguments
        every write script opens with (ARGV[1] to ARGV[8], see ``put.lua``), then the script's
        own ``specific`` ones (ARGV[9] on)."""
        channel, message = self._message(keys, event)
        args = (
            keys.member,
            keys.owner,
            data,
            str(_now_ms(now_ms)),
            self._grace,
            write_token(),
            channel,
            message,
            *specific,
        )
        return self._scripts.run(script, key, keys.writes, args)

    def _message(self, keys: RecordKeys, event: bytes | None) -> tuple[str, bytes]:
        if event is None:
            return "", b""
        return self._channel, b"e" + keys.wake + b"\n" + event

    @staticmethod
    def _expiry(expires_at_ms: int | None) -> str:
        return "" if expires_at_ms is None else str(expires_at_ms)

    @staticmethod
    def _outcome(outcome: bytes | None) -> tuple[str, bytes]:
        return ("0", b"") if outcome is None else ("1", outcome)

    # -- the contract ----------------------------------------------------------------------

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """See :meth:`StorageBackend.get <taskstore.backends.base.StorageBackend.get>`.

        One ``HMGET``; the outcome field is only named when ``include_outcome`` is set.

        :raises RecordNotFound: absent or expired at ``now_ms``.
        :raises BackendError: the driver failed.
        """
        self._check_open()
        now = _now_ms(now_ms)
        fields = _FIELDS_WITH_OUTCOME if include_outcome else _FIELDS
        record_key = self._record_key(key)
        values: list[Any] = self._retrier.call(
            "get", lambda: self._clients.get().hmget(record_key, fields)
        )
        version, data, expires, sort = values[0], values[1], values[2], values[3]
        if version is None or (expires is not None and int(expires) <= now):
            raise RecordNotFound(key)
        return VersionedRecord(
            key=(key[0], key[1]),
            data=bytes(data),
            version=int(version),
            expires_at_ms=None if expires is None else int(expires),
            sort_ms=int(sort),
            outcome=values[4] if include_outcome else None,
        )

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
        """See :meth:`StorageBackend.put <taskstore.backends.base.StorageBackend.put>`.

        One script call (``put.lua``), ``PUBLISH`` of ``event`` included.

        :raises BackendError: the driver failed.
        """
        self._check_open()
        check_expiry(expires_at_ms)
        reply = self._write(
            "put",
            key,
            self._keys(key),
            data,
            event,
            now_ms,
            self._expiry(expires_at_ms),
            "" if sort_ms is None else str(sort_ms),
            *self._outcome(outcome),
        )
        return int(reply)

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
        <taskstore.backends.base.StorageBackend.put_if_version>`.

        One script call (``put_if_version.lua``), ``PUBLISH`` of ``event`` included.

        :raises VersionConflict: the live version is not ``expected`` (0: absent or expired).
        :raises BackendError: the driver failed.
        """
        self._check_open()
        if not isinstance(expires_at_ms, Keep):
            check_expiry(expires_at_ms)
        expires = "keep" if isinstance(expires_at_ms, Keep) else self._expiry(expires_at_ms)
        reply = self._write(
            "put_if_version",
            key,
            self._keys(key),
            data,
            event,
            now_ms,
            expires,
            str(expected),
            *self._outcome(outcome),
        )
        if isinstance(reply, Conflict):
            raise VersionConflict((key[0], key[1]), expected, reply.actual)
        return int(reply)

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
        """See :meth:`StorageBackend.create <taskstore.backends.base.StorageBackend.create>`.

        One script call (``create.lua``): the live-key check, the quota count (the owner's
        listing zset minus its expired entries, O(log n)), the insert, the index upkeep and the
        ``PUBLISH`` are one atomic step on the server, so racing processes admit exactly
        ``max_live``.

        :raises VersionConflict: the key is live (``actual`` = its version).
        :raises QuotaExceededError: the owner already holds ``max_live`` live records.
        :raises BackendError: the driver failed.
        """
        self._check_open()
        check_expiry(expires_at_ms)
        keys = self._keys(key)
        reply = self._write(
            "create",
            key,
            keys,
            data,
            event,
            now_ms,
            self._expiry(expires_at_ms),
            str(sort_ms),
            "" if max_live is None else str(max_live),
            keys.record_prefix,
        )
        if isinstance(reply, Conflict):
            raise VersionConflict((key[0], key[1]), 0, reply.actual)
        return int(reply)

    def delete(self, key: RecordKey) -> bool:
        """See :meth:`StorageBackend.delete <taskstore.backends.base.StorageBackend.delete>`.

        One script call; waiters on the key are woken (listeners get no event).

        :raises BackendError: the driver failed.
        """
        self._check_open()
        keys = self._keys(key)
        reply = self._scripts.run(
            "delete",
            key,
            keys.writes,
            (keys.member, keys.owner, self._channel, b"w" + keys.wake + b"\n"),
        )
        return bool(reply)

    def list_by_prefix(
        self,
        owner: str,
        after: ListPosition | None = None,
        limit: int = 50,
        *,
        now_ms: int | None = None,
    ) -> list[VersionedRecord]:
        """See :meth:`StorageBackend.list_by_prefix
        <taskstore.backends.base.StorageBackend.list_by_prefix>`.

        One script call (``list.lua``) returns the whole page: the anchor check, the walk of
        the owner's listing zset from the anchor's rank and the records' fields (never their
        outcomes). Cost: the page plus the expired records it steps over.

        :raises RecordNotFound: ``after`` names a record that is no longer live.
        :raises BackendError: the driver failed.
        """
        self._check_open()
        if limit <= 0 and after is None:
            return []
        listing, records = self._layout.owner_listing(owner)
        keys = [listing]
        args: list[object] = [str(_now_ms(now_ms)), str(max(limit, 0)), records]
        if after is not None:
            keys.append(KeyLayout.record_key(records, after.task_id))
            args += [key_bytes(after.task_id), str(after.sort_ms)]
        key = (owner, after.task_id if after is not None else "")
        reply: list[bytes] = self._scripts.run("list", key, keys, args)
        page: list[VersionedRecord] = []
        for at in range(0, len(reply), 5):
            task_id, version, data, expires, sort = reply[at : at + 5]
            page.append(
                VersionedRecord(
                    key=(owner, key_str(task_id)),
                    data=bytes(data),
                    version=int(version),
                    expires_at_ms=int(expires) if expires else None,
                    sort_ms=int(sort),
                )
            )
        return page

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """See :meth:`StorageBackend.cleanup_expired
        <taskstore.backends.base.StorageBackend.cleanup_expired>`.

        One pipelined ``ZCOUNT`` over the 1024 bucket indexes (one round trip per cluster
        node), then ``cleanup.lua`` once per batch of up to 500 expired records in each bucket
        that has some: O(expired) beyond that fixed probe.

        :raises BackendError: the driver failed.
        """
        self._check_open()
        now = str(_now_ms(now_ms))
        buckets = self._layout.buckets

        def count_due() -> list[int]:
            with self._client.pipeline(transaction=False) as pipe:
                for bucket in buckets:
                    pipe.zcount(bucket.due, "-inf", now)
                counts: list[int] = pipe.execute()
            return counts

        counts = self._retrier.call("cleanup_expired", count_due)
        removed = 0
        for bucket, count in zip(buckets, counts, strict=True):
            more = bool(count)
            while more:
                reply = self._scripts.run(
                    "cleanup",
                    ("", ""),
                    (bucket.due, bucket.all_records),
                    (
                        now,
                        str(_CLEANUP_BATCH),
                        self._grace,
                        bucket.records,
                        bucket.listings,
                        bucket.expiries,
                    ),
                )
                removed += int(reply[0])
                more = bool(int(reply[1]))
        return removed

    def scan(
        self, cursor: str | None = None, limit: int = 100, *, now_ms: int | None = None
    ) -> ScanPage:
        """See :meth:`ScanningBackend.scan <taskstore.backends.base.ScanningBackend.scan>`.

        Order: bucket by bucket (the 1024 hash tags of the key layout), within a bucket by the
        bytes of ``"<encoded owner>:<task id>"``, from the bucket's ``all`` index. The cursor
        is ``(bucket, last member returned)``: a keyset position that needs no node-local
        state, so it works unchanged on Redis Cluster, across failovers and resharding (each
        bucket is one slot; ``SCAN`` cursors are per node, may repeat keys and cannot bound
        a page, see :mod:`~taskstore.backends._redis_keys`).

        Cost of a page: one ``scan.lua`` call (``ZRANGEBYLEX`` + one ``HMGET`` per member,
        outcomes never read) per bucket it draws records from, plus pipelined ``ZCARD``
        probes (one round trip per node each) for the next non-empty buckets, 16 at first,
        then 64, 256, 1024. A call steps over at most 1000 dead index members (records Redis
        reclaimed natively before a cleanup) beyond its page, so a page may come back short
        with a cursor.

        :raises InvalidCursorError: a cursor no Redis backend issued.
        :raises InvalidParamsError: ``limit`` below 1.
        :raises BackendError: the driver failed (reads are retried until the deadline).
        """
        self._check_open()
        check_scan_limit(limit)
        now = str(_now_ms(now_ms))
        bucket, position = 0, b""
        if cursor is not None:
            _, bucket, position = decode_scan_cursor(cursor, _SCAN_CURSOR)
            if not 0 <= bucket < BUCKETS:
                raise InvalidCursorError("Invalid scan cursor")
        records: list[VersionedRecord] = []
        if position:
            last, more = self._scan_bucket(bucket, position, limit, now, records)
            if more:
                return ScanPage(records, encode_scan_cursor(("r1", bucket, last)))
            bucket += 1
        for index in self._nonempty_buckets(bucket):
            if len(records) == limit:
                return ScanPage(records, encode_scan_cursor(("r1", index, b"")))
            last, more = self._scan_bucket(index, b"", limit - len(records), now, records)
            if more:
                return ScanPage(records, encode_scan_cursor(("r1", index, last)))
        return ScanPage(records, None)

    def _scan_bucket(
        self, bucket: int, position: bytes, limit: int, now: str, records: list[VersionedRecord]
    ) -> tuple[bytes, bool]:
        """Append up to ``limit`` live records of ``bucket`` after ``position`` to
        ``records``; return the last member examined and whether members remain after it."""
        keys = self._layout.buckets[bucket]
        reply: list[Any] = self._scripts.run(
            "scan",
            ("", ""),
            (keys.all_records,),
            (now, str(limit), position, keys.records, str(limit + _SCAN_SLACK)),
        )
        for at in range(2, len(reply), 6):
            owner_part, task_id, version, data, expires, sort = reply[at : at + 6]
            records.append(
                VersionedRecord(
                    key=(decode_key_part(bytes(owner_part).decode("ascii")), key_str(task_id)),
                    data=bytes(data),
                    version=int(version),
                    expires_at_ms=int(expires) if expires else None,
                    sort_ms=int(sort),
                )
            )
        return bytes(reply[0]), bool(int(reply[1]))

    def _nonempty_buckets(self, start: int) -> Iterator[int]:
        """The buckets from ``start`` on whose ``all`` index holds members, in order, probed
        in growing pipelined batches."""
        buckets = self._layout.buckets
        size = _SCAN_FIRST_PROBE
        while start < BUCKETS:
            end = min(start + size, BUCKETS)

            def probe(low: int = start, high: int = end) -> list[int]:
                with self._client.pipeline(transaction=False) as pipe:
                    for keys in buckets[low:high]:
                        pipe.zcard(keys.all_records)
                    counts: list[int] = pipe.execute()
                return counts

            counts = self._retrier.call("scan", probe)
            for index, count in zip(range(start, end), counts, strict=True):
                if count:
                    yield index
            start, size = end, size * 4

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """See :meth:`StorageBackend.wait_for_change
        <taskstore.backends.base.StorageBackend.wait_for_change>`.

        Registers as a waiter, makes sure the event subscription is live, *then* re-reads the
        version (one ``HGET``), so a write either shows in that read or wakes the waiter. Sleeps
        at most ``wait_slice_s``: a message lost to a reconnect only delays the caller's
        re-read. Without a confirmed subscription it degrades to short polling.

        :raises BackendError: the re-read failed.
        """
        self._check_open()
        if timeout_s <= 0:
            return
        deadline = time.monotonic() + timeout_s
        keys = self._keys(key)
        self._notifier.ensure_started()
        woken = self._notifier.waiters.add(keys.wake)
        try:
            subscribed = self._notifier.wait_ready(min(timeout_s, self._wait_slice_s))
            # The wake-up every waiter gets when the subscription is (re)confirmed is for those
            # already past their read; this one reads next, so a write made until now shows in
            # that read, and only a later one should wake it.
            woken.clear()
            current = self._retrier.call(
                "wait_for_change", lambda: self._clients.get().hget(keys.record, "v")
            )
            if int(current or 0) != version:
                return
            remaining = deadline - time.monotonic()
            if remaining > 0:
                woken.wait(min(remaining, self._wait_slice_s if subscribed else 0.05))
        finally:
            self._notifier.waiters.remove(keys.wake, woken)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """See :meth:`StorageBackend.add_listener
        <taskstore.backends.base.StorageBackend.add_listener>`.

        Starts the event subscription if needed and waits (up to 5 s) until Redis confirms it,
        so the events of writes made after this returns are delivered. Listeners run on the
        backend's event thread.
        """
        self._check_open()
        remove = self._notifier.listeners.add(listener)
        self._notifier.ensure_started()
        if not self._notifier.wait_ready(_SUBSCRIBE_TIMEOUT_S):
            _log.warning("taskstore event subscription not confirmed yet; events may be missed")
        return remove

    def close(self) -> None:
        """Stop the event thread and, for a backend built by :meth:`from_url`, close its client
        (a client passed to the constructor stays open: its owner closes it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._notifier.stop()
        self._clients.close()
        if self._owns_client:
            self._client.close()
            if isinstance(self._client, RedisCluster):
                # RedisCluster.close() leaves its nodes' pools connected (redis-py builds the
                # node clients of a from_url cluster with auto_close_connection_pool off), so
                # their sockets would outlive the backend: disconnect them here.
                for node in untyped(self._client.get_nodes)():
                    if node.redis_connection is not None:
                        node.redis_connection.connection_pool.disconnect()
