"""Redis backend: one Lua script call per mutation, cross-process safe, Redis Cluster ready
(DESIGN §8).

Layout (``P`` = prefix, ``B`` = the owner's bucket, ``O``/``T`` = owner and task id through
:func:`~taskstore.backends.base.encode_key_part`, ``id`` = the raw task id bytes)::

    P:{B}:r:O:T   hash: v version, d data, o outcome, e expires_at_ms, s sort_ms, w write token
    P:{B}:i:O     zset: the owner's records, member id, score sort_ms (listing, quota)
    P:{B}:x:O     zset: the owner's expiring records, member id, score expires_at_ms (quota)
    P:{B}:due     zset: every expiring record of the bucket, member "O:id" (cleanup)
    P:events      pub/sub channel: events and wake-ups of every write that carries an event

Why a bucket and not the owner in the hash tag: ``cleanup_expired`` must find expired records
of *every* owner in O(expired), and on Redis Cluster a script may only touch one slot, so no
single expiry index can be updated by every owner's writes. Owners are therefore spread over
1024 buckets (``crc32(O) % 1024``); every key of an owner and its bucket's ``due`` index share
the tag ``{bNNN}``, so each mutation keeps all indexes exact in one script call, and cleanup
probes the 1024 ``due`` indexes in one pipelined round trip (per cluster node) and then runs one
script per bucket that holds expired records. 1024 tags spread load evenly over clusters of up to
about a hundred primaries.

Costs: :meth:`~RedisBackend.get` is one ``HMGET`` that never transfers the outcome; every
mutation is one ``EVALSHA`` (quota check, compare-and-set, index upkeep and ``PUBLISH``
included); a :meth:`~RedisBackend.list_by_prefix` page is one ``EVALSHA`` whatever its size.

Expiry is judged against the caller's ``now_ms`` (the store's injectable clock) in every read
and script, never against the server's clock, so an expired record is absent everywhere before
Redis deletes it. Native lifetimes only reclaim space: each key gets a relative ``PEXPIRE`` of
``expires_at_ms - now_ms + reclaim_delay_ms`` (relative, so clock skew between hosts or a
manual clock in tests can never make Redis drop a record the store still considers live).
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn, Union
from urllib.parse import quote, urlsplit

from taskstore.backends._options import to_bool, to_float, to_int, to_str, url_options
from taskstore.backends.base import (
    KEEP,
    EventListener,
    Keep,
    Listeners,
    ListPosition,
    RecordKey,
    VersionedRecord,
    encode_key_part,
)
from taskstore.errors import (
    BackendError,
    ConfigurationError,
    MissingDependencyError,
    QuotaExceededError,
    RecordNotFound,
    VersionConflict,
)

try:
    import redis
    import redis.exceptions
    from redis.backoff import EqualJitterBackoff
    from redis.cluster import RedisCluster
    from redis.commands.core import Script
    from redis.retry import Retry
except ImportError:
    raise MissingDependencyError(
        "The 'redis' package is needed for the Redis backend: pip install 'taskstore[redis]'"
    ) from None

__all__ = ["RedisBackend"]

_log = logging.getLogger("taskstore.backends.redis")

#: A redis-py client the backend can drive.
RedisClient = Union["redis.Redis", RedisCluster]

_BUCKETS = 1024
_CLEANUP_BATCH = 500
_SCRIPTS = ("create", "put", "put_if_version", "delete", "list", "cleanup")
# How long add_listener waits for the subscription to be confirmed, so that events of writes
# made right after it returns are delivered.
_SUBSCRIBE_TIMEOUT_S = 5.0
# The listener thread pings a silent subscription this often and reconnects when even the ping
# goes unanswered for as long again (a peer that vanished without closing the socket).
_PING_AFTER_S = 10.0
_POLL_S = 0.1

# Every exception class redis-py defines, not only RedisError's subtree: RedisClusterException
# (cluster routing) and ChildDeadlockedError live outside it. OSError covers anything the
# socket layer lets through unwrapped.
_DRIVER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    *sorted(
        {
            value
            for value in vars(redis.exceptions).values()
            if isinstance(value, type) and issubclass(value, Exception)
        },
        key=lambda cls: cls.__name__,
    ),
)


def _to_timeout(value: object) -> float | None:
    # None (as a keyword) means no timeout at all, as in redis-py.
    return None if value is None else to_float(value)


# Options of from_url passed on to the redis-py client, and those of the backend itself, each
# with the converter that turns a query-string value (or a keyword value) into its type.
_CLIENT_OPTIONS: dict[str, Callable[[object], object]] = {
    "socket_timeout": _to_timeout,
    "socket_connect_timeout": _to_timeout,
    "socket_keepalive": to_bool,
    "max_connections": to_int,
    "health_check_interval": to_float,
    "client_name": to_str,
    "username": to_str,
    "password": to_str,
    "db": to_int,
    "protocol": to_int,
    "ssl_cert_reqs": to_str,
    "ssl_ca_certs": to_str,
    "ssl_certfile": to_str,
    "ssl_keyfile": to_str,
    "ssl_check_hostname": to_bool,
}
_CONSTRUCTOR_OPTIONS = ("prefix", "reclaim_delay_ms", "wait_slice_s")
_BACKEND_OPTIONS: dict[str, Callable[[object], object]] = {
    "prefix": to_str,
    "cluster": to_bool,
    "reclaim_delay_ms": to_int,
    "wait_slice_s": to_float,
    "retries": to_int,
}


@functools.cache
def _script_source(name: str) -> str:
    """The Lua source of primitive ``name``: the shared helpers followed by the script."""
    folder = importlib.resources.files("taskstore.backends").joinpath("lua")
    helpers = folder.joinpath("_lib.lua").read_text(encoding="utf-8")
    return helpers + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _key_part(text: str) -> str:
    """:func:`encode_key_part`, made total: a string holding lone surrogates (which strict
    UTF-8 refuses) is encoded through ``surrogatepass`` instead, still injectively."""
    try:
        return encode_key_part(text)
    except UnicodeEncodeError:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _raw(text: str) -> bytes:
    # surrogatepass keeps every str encodable and preserves code point order under memcmp, which
    # is what the listing zset's tie-break on member bytes relies on.
    return text.encode("utf-8", "surrogatepass")


def _now(now_ms: int | None) -> int:
    return time.time_ns() // 1_000_000 if now_ms is None else now_ms


def _bucket(owner_part: str) -> int:
    # crc32, not hash(): every process must agree on an owner's bucket.
    return zlib.crc32(owner_part.encode("ascii")) % _BUCKETS


class _Keys(NamedTuple):
    """Every key and identifier a write of one record needs."""

    record: str
    listing: str
    expiry: str
    due: str
    record_prefix: str
    owner: str
    member: bytes
    wake: bytes


def _error_code(exc: Exception) -> tuple[str, str] | None:
    """Split one of our script errors ("TSCONFLICT 3") into code and argument, else None."""
    text = str(exc)
    code, _, argument = text.partition(" ")
    if code in ("TSCONFLICT", "TSQUOTA", "TSNOTFOUND"):
        return code, argument.strip()
    return None


def _untyped(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` as a plain callable.

    redis-py's annotations change between releases (``pubsub`` and ``get_nodes`` were untyped
    until 8.x, ``Script.__call__`` narrows its key types in some): calling through this keeps
    the type check independent of the installed release, with no ``type: ignore`` that is
    wrong on the next one.
    """
    return method


class _Conflict(NamedTuple):
    """A ``TSCONFLICT`` script error, returned so the caller can name expected and actual."""

    actual: int


class _Notifier:
    """The backend's single pub/sub subscription, read by a daemon thread started on first use.

    It delivers events to listeners and wakes :meth:`RedisBackend.wait_for_change` callers.
    Whenever the subscription is (re)confirmed or lost, every waiter is woken: messages
    published while it was down are gone, and waking makes the caller re-read instead.
    """

    def __init__(self, client: RedisClient, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._lock = threading.Lock()
        self._waiters: dict[bytes, set[threading.Event]] = {}
        self.listeners = Listeners()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # Also restarts a thread that is gone: threads do not survive os.fork().
            if self._thread is None or not self._thread.is_alive():
                self._subscribed.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"taskstore-redis-events:{self._channel}", daemon=True
                )
                self._thread.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(max(timeout_s, 0.0))

    def add_waiter(self, wake: bytes) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(wake, set()).add(event)
        return event

    def remove_waiter(self, wake: bytes, event: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get(wake)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[wake]

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self.listeners.clear()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._wake_all()

    def _wake_all(self) -> None:
        with self._lock:
            waiting = [event for events in self._waiters.values() for event in events]
        for event in waiting:
            event.set()

    def _deliver(self, message: bytes) -> None:
        # b"e<O>:<T>\n<event>" carries an event; b"w<O>:<T>\n" only wakes waiters (a delete).
        head, _, event = message.partition(b"\n")
        with self._lock:
            waiting = list(self._waiters.get(head[1:], ()))
        for waiter in waiting:
            waiter.set()
        if head[:1] == b"e":
            self.listeners.publish(event)

    def _run(self) -> None:
        delay = 0.05
        while not self._stopping.is_set():
            try:
                self._listen()
                delay = 0.05
            except Exception as exc:  # noqa: BLE001 - the thread outlives any failure, reconnects
                # Say it once per outage; the reconnect attempts that follow stay quiet.
                log = _log.warning if self._subscribed.is_set() else _log.debug
                log("taskstore event subscription lost, reconnecting: %r", exc)
            finally:
                self._subscribed.clear()
                self._wake_all()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, 1.0)

    def _listen(self) -> None:
        pubsub = _untyped(self._client.pubsub)(ignore_subscribe_messages=False)
        try:
            pubsub.subscribe(self._channel)
            last_seen = time.monotonic()
            pinged = False
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=_POLL_S)
                now = time.monotonic()
                if message is None:
                    silent = now - last_seen
                    if silent > 2 * _PING_AFTER_S:
                        return  # even the ping went unanswered: reconnect
                    if silent > _PING_AFTER_S and not pinged:
                        pubsub.ping()
                        pinged = True
                    continue
                last_seen, pinged = now, False
                kind = message.get("type")
                if kind == "subscribe":
                    # Confirmed on every (re)subscription, including redis-py's silent
                    # reconnects: what was published meanwhile is lost, so waiters re-read.
                    self._subscribed.set()
                    self._wake_all()
                elif kind == "message" and isinstance(message.get("data"), bytes):
                    self._deliver(message["data"])
        finally:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; ignore
                _log.debug("closing the taskstore event subscription failed", exc_info=True)


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
        applying twice.
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
        self._channel = f"{prefix}:events"
        self._scripts: dict[str, Script] = {
            name: client.register_script(_script_source(name)) for name in _SCRIPTS
        }
        self._due_keys = [f"{prefix}:{{b{bucket:03x}}}:due" for bucket in range(_BUCKETS)]
        self._notifier = _Notifier(client, self._channel)
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
        ``retries`` (redis-py retries of a failed call, default 1; replays are safe). Client
        options: ``socket_timeout`` and ``socket_connect_timeout`` (seconds, default 5),
        ``max_connections``, ``health_check_interval``, ``socket_keepalive``, ``client_name``,
        ``username``, ``password``, ``db``, ``protocol`` and the ``ssl_*`` options of rediss.
        The backend owns this client and closes it in :meth:`close`.

        :raises ConfigurationError: another scheme, an unknown option or a bad value.
        :raises BackendError: ``cluster=true`` and the cluster cannot be reached.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"RedisBackend URLs start with redis://, rediss:// or unix://, got {url!r}"
            )
        converted = url_options(url, options, {**_CLIENT_OPTIONS, **_BACKEND_OPTIONS})
        client_options = {k: v for k, v in converted.items() if k in _CLIENT_OPTIONS}
        backend_options = {
            k: v for k, v in converted.items() if k in _CONSTRUCTOR_OPTIONS
        }
        cluster = bool(converted.get("cluster", False))
        retries = int(converted.get("retries", 1))
        if retries < 0:
            raise ConfigurationError("retries must not be negative")
        # Redis Cluster has only database 0, and RedisCluster refuses even an explicit db=0.
        cluster_db = client_options.pop("db", 0) if cluster else 0
        if cluster and (cluster_db != 0 or parts.path.strip("/") not in ("", "0")):
            raise ConfigurationError("Redis Cluster has only database 0")
        client_options.setdefault("socket_timeout", 5.0)
        client_options.setdefault("socket_connect_timeout", 5.0)
        # A short, jittered retry rides out a dropped connection without turning an outage into
        # a long stall; the scripts' write tokens make a replayed mutation harmless.
        client_options["retry"] = Retry(EqualJitterBackoff(cap=0.1, base=0.01), retries)
        # Query options were consumed above; redis-py only sees the address part.
        base_url = url.split("?", 1)[0].split("#", 1)[0]
        client: RedisClient
        try:
            if cluster:
                client = RedisCluster.from_url(base_url, **client_options)
            else:
                client = redis.Redis.from_url(base_url, **client_options)
        except _DRIVER_ERRORS as exc:
            raise BackendError(f"Cannot connect to Redis: {type(exc).__name__}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"Bad Redis URL or option: {exc}") from exc
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

    def _base(self, owner_part: str) -> str:
        return f"{self._prefix}:{{b{_bucket(owner_part):03x}}}:"

    def _record_key(self, key: RecordKey) -> str:
        owner_part = _key_part(key[0])
        return f"{self._base(owner_part)}r:{owner_part}:{_key_part(key[1])}"

    def _keys(self, key: RecordKey) -> _Keys:
        owner_part, task_part = _key_part(key[0]), _key_part(key[1])
        base = self._base(owner_part)
        return _Keys(
            record=f"{base}r:{owner_part}:{task_part}",
            listing=f"{base}i:{owner_part}",
            expiry=f"{base}x:{owner_part}",
            due=f"{base}due",
            record_prefix=f"{base}r:{owner_part}:",
            owner=owner_part,
            member=_raw(key[1]),
            wake=f"{owner_part}:{task_part}".encode("ascii"),
        )

    @staticmethod
    def _fail(operation: str, exc: BaseException) -> NoReturn:
        raise BackendError(f"Redis {operation} failed: {type(exc).__name__}: {exc}") from exc

    def _call(
        self, name: str, key: RecordKey, keys: Sequence[str], args: Sequence[object]
    ) -> Any:
        """Run script ``name``; our error replies become contract errors, anything else from
        the driver a :class:`BackendError`."""
        try:
            return _untyped(self._scripts[name])(keys=keys, args=args)
        except redis.exceptions.ResponseError as exc:
            parsed = _error_code(exc)
            if parsed is None:
                self._fail(name, exc)
            code, argument = parsed
            if code == "TSCONFLICT":
                return _Conflict(int(argument))
            if code == "TSQUOTA":
                limit = int(argument)
                raise QuotaExceededError(
                    f"Task quota exceeded: at most {limit} live tasks per owner",
                    data={"limit": limit},
                ) from None
            raise RecordNotFound(key) from None
        except _DRIVER_ERRORS as exc:
            self._fail(name, exc)

    def _message(self, keys: _Keys, event: bytes | None) -> tuple[str, bytes]:
        if event is None:
            return "", b""
        return self._channel, b"e" + keys.wake + b"\n" + event

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
        now = _now(now_ms)
        fields = ("v", "d", "e", "s", "o") if include_outcome else ("v", "d", "e", "s")
        try:
            values: list[Any] = self._client.hmget(self._record_key(key), fields)
        except _DRIVER_ERRORS as exc:
            self._fail("get", exc)
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
        keys = self._keys(key)
        channel, message = self._message(keys, event)
        reply = self._call(
            "put",
            key,
            (keys.record, keys.listing, keys.expiry, keys.due),
            (
                keys.member,
                keys.owner,
                data,
                "" if expires_at_ms is None else str(expires_at_ms),
                "" if sort_ms is None else str(sort_ms),
                "0" if outcome is None else "1",
                b"" if outcome is None else outcome,
                str(_now(now_ms)),
                self._grace,
                secrets.token_bytes(12),
                channel,
                message,
            ),
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
        keys = self._keys(key)
        channel, message = self._message(keys, event)
        if expires_at_ms is KEEP:
            expires = "keep"
        else:
            expires = "" if expires_at_ms is None else str(expires_at_ms)
        reply = self._call(
            "put_if_version",
            key,
            (keys.record, keys.listing, keys.expiry, keys.due),
            (
                keys.member,
                keys.owner,
                data,
                str(expected),
                expires,
                "0" if outcome is None else "1",
                b"" if outcome is None else outcome,
                str(_now(now_ms)),
                self._grace,
                secrets.token_bytes(12),
                channel,
                message,
            ),
        )
        if isinstance(reply, _Conflict):
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
        keys = self._keys(key)
        channel, message = self._message(keys, event)
        reply = self._call(
            "create",
            key,
            (keys.record, keys.listing, keys.expiry, keys.due),
            (
                keys.member,
                keys.owner,
                data,
                "" if expires_at_ms is None else str(expires_at_ms),
                str(sort_ms),
                "" if max_live is None else str(max_live),
                str(_now(now_ms)),
                self._grace,
                secrets.token_bytes(12),
                channel,
                message,
                keys.record_prefix,
            ),
        )
        if isinstance(reply, _Conflict):
            raise VersionConflict((key[0], key[1]), 0, reply.actual)
        return int(reply)

    def delete(self, key: RecordKey) -> bool:
        """See :meth:`StorageBackend.delete <taskstore.backends.base.StorageBackend.delete>`.

        One script call; waiters on the key are woken (listeners get no event).

        :raises BackendError: the driver failed.
        """
        self._check_open()
        keys = self._keys(key)
        reply = self._call(
            "delete",
            key,
            (keys.record, keys.listing, keys.expiry, keys.due),
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
        owner_part = _key_part(owner)
        base = self._base(owner_part)
        record_prefix = f"{base}r:{owner_part}:"
        keys = [f"{base}i:{owner_part}"]
        args: list[object] = [str(_now(now_ms)), str(max(limit, 0)), record_prefix]
        if after is not None:
            keys.append(record_prefix + _key_part(after.task_id))
            args += [_raw(after.task_id), str(after.sort_ms)]
        key = (owner, after.task_id if after is not None else "")
        reply: list[bytes] = self._call("list", key, keys, args)
        page: list[VersionedRecord] = []
        for at in range(0, len(reply), 5):
            task_id, version, data, expires, sort = reply[at : at + 5]
            page.append(
                VersionedRecord(
                    key=(owner, task_id.decode("utf-8", "surrogatepass")),
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
        now = str(_now(now_ms))
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for due in self._due_keys:
                    pipe.zcount(due, "-inf", now)
                counts: list[int] = pipe.execute()
        except _DRIVER_ERRORS as exc:
            self._fail("cleanup_expired", exc)
        removed = 0
        for due, count in zip(self._due_keys, counts, strict=True):
            more = bool(count)
            while more:
                reply = self._call(
                    "cleanup",
                    ("", ""),
                    (due,),
                    (now, due[: -len("due")], str(_CLEANUP_BATCH), self._grace),
                )
                removed += int(reply[0])
                more = bool(int(reply[1]))
        return removed

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
        woken = self._notifier.add_waiter(keys.wake)
        try:
            subscribed = self._notifier.wait_subscribed(min(timeout_s, self._wait_slice_s))
            try:
                current = self._client.hget(keys.record, "v")
            except _DRIVER_ERRORS as exc:
                self._fail("wait_for_change", exc)
            if int(current or 0) != version:
                return
            remaining = deadline - time.monotonic()
            if remaining > 0:
                woken.wait(min(remaining, self._wait_slice_s if subscribed else 0.05))
        finally:
            self._notifier.remove_waiter(keys.wake, woken)

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
        if not self._notifier.wait_subscribed(_SUBSCRIBE_TIMEOUT_S):
            _log.warning("taskstore event subscription not confirmed yet; events may be missed")
        return remove

    def close(self) -> None:
        """Stop the event thread and, for a backend built by :meth:`from_url`, close its client
        (a client passed to the constructor stays open: its owner closes it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._notifier.stop()
        if self._owns_client:
            self._client.close()
            if isinstance(self._client, RedisCluster):
                # RedisCluster.close() leaves its nodes' pools connected (redis-py builds the
                # node clients of a from_url cluster with auto_close_connection_pool off), so
                # their sockets would outlive the backend: disconnect them here.
                for node in _untyped(self._client.get_nodes)():
                    if node.redis_connection is not None:
                        node.redis_connection.connection_pool.disconnect()
