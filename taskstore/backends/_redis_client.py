"""The Redis backend's client from a URL: options, timeouts, the connection classes that let
the backend tell a mutation that never left from one whose reply was lost."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Union
from urllib.parse import urlsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from taskstore.backends._options import to_bool, to_float, to_int, to_str, url_options
from taskstore.backends._redis_faults import DRIVER_ERRORS, counts_mutations, tracking_connection
from taskstore.errors import BackendError, ConfigurationError

__all__ = ["RedisClient", "ThreadClients", "client_from_url", "tracks_sends"]

#: A redis-py client the backend can drive.
RedisClient = Union["redis.Redis", RedisCluster]


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


def client_from_url(url: str, options: Mapping[str, Any]) -> tuple[RedisClient, dict[str, Any]]:
    """Build the client of ``RedisBackend.from_url(url, **options)``; return it and the
    options meant for the backend's constructor.

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
    retries = int(converted.get("retries", 0))
    if retries < 0:
        raise ConfigurationError("retries must not be negative")
    # Redis Cluster has only database 0, and RedisCluster refuses even an explicit db=0.
    cluster_db = client_options.pop("db", 0) if cluster else 0
    if cluster and (cluster_db != 0 or parts.path.strip("/") not in ("", "0")):
        raise ConfigurationError("Redis Cluster has only database 0")
    client_options.setdefault("socket_timeout", 5.0)
    client_options.setdefault("socket_connect_timeout", 5.0)
    # The backend retries transient faults itself, until its deadline (_redis_faults): by
    # default redis-py makes one attempt per call, so every failed attempt is seen there.
    client_options["retry"] = Retry(EqualJitterBackoff(cap=0.1, base=0.01), retries)
    scheme = parts.scheme.lower()
    base_class = {
        "unix": redis.UnixDomainSocketConnection,
        "rediss": redis.SSLConnection,
    }.get(scheme, redis.Connection)
    client_options["connection_class"] = tracking_connection(base_class)
    # Query options were consumed above; redis-py only sees the address part.
    base_url = url.split("?", 1)[0].split("#", 1)[0]
    client: RedisClient
    try:
        if cluster:
            client = RedisCluster.from_url(base_url, **client_options)
        else:
            client = redis.Redis.from_url(base_url, **client_options)
    except DRIVER_ERRORS as exc:
        raise BackendError(f"Cannot connect to Redis: {type(exc).__name__}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"Bad Redis URL or option: {exc}") from exc
    return client, backend_options


def tracks_sends(client: RedisClient) -> bool:
    """Whether ``client``'s connections count the mutations they send
    (:func:`~taskstore.backends._redis_faults.tracking_connection`), as the clients
    :func:`client_from_url` builds do."""
    if isinstance(client, RedisCluster):
        connection_class = client.nodes_manager.connection_kwargs.get("connection_class")
    else:
        connection_class = client.connection_pool.connection_class
    return counts_mutations(connection_class)


class _Forks:
    """Counts the forks this process came out of: a thread's client from before the last one
    holds the parent's socket. (Read on every command: a plain attribute, where ``getpid``
    would be a system call.)"""

    generation = 0

    @classmethod
    def forked(cls) -> None:
        cls.generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Forks.forked)


class ThreadClients:
    """The client each thread sends its commands through: a single-connection client of its
    own on the shared client's pool, while the pool has room for it, else the shared client.

    Why: a command through the shared client checks a connection out of the pool and back in,
    and redis-py checks every checked-out connection with two ``poll`` calls (closed? unread
    data?). With the server's threads all waiting on sockets those system calls, each a hand-
    over of the GIL, cost more than the command: with 8 threads a ``get`` took about 95 µs of
    CPU through the pool and 63 µs on a connection of the thread's own. A kept connection that
    went stale (a server restart) fails its next command, which the backend's retries redo on
    a fresh connection, as for any dropped connection.

    At most half the pool's ``max_connections`` are kept by threads (a thread keeps its
    connection while it lives), so the shared client always has the other half; threads past
    that use the shared client. Only for a plain ``redis.Redis`` with its own pool (not Redis
    Cluster, fakeredis, or a client already on one connection). A thread's connection goes
    back to the pool when the thread ends; after a fork the child makes its own. Thread-safe.
    """

    def __init__(self, client: RedisClient, *, enabled: bool = True) -> None:
        self.shared = client
        pool = getattr(client, "connection_pool", None)
        usable = (
            enabled
            and type(client) is redis.Redis
            and client.connection is None
            and type(pool) is redis.ConnectionPool
        )
        self._pool = pool
        self._limit = int(getattr(pool, "max_connections", 0)) // 2 if usable else 0
        self._kept = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._clients: weakref.WeakSet[redis.Redis] = weakref.WeakSet()
        self._closed = False

    def kept(self) -> int:
        """How many threads hold a connection of their own now."""
        with self._lock:
            return self._kept

    def get(self) -> RedisClient:
        """The calling thread's client (made on first use; the shared one when threads hold
        their share of the pool already, or when it cannot be made, e.g. while Redis is down:
        the caller's retries then see the failure)."""
        if not self._limit:
            return self.shared
        local = self._local
        client: redis.Redis | None = getattr(local, "client", None)
        if client is not None:
            if local.generation == _Forks.generation:
                return client
            client.connection = None  # inherited across a fork: the parent's socket
            local.client = None
        with self._lock:
            if self._closed or self._kept >= self._limit:
                return self.shared
            self._kept += 1
        try:
            client = redis.Redis(connection_pool=self._pool, single_connection_client=True)
        except DRIVER_ERRORS:
            self._release()
            return self.shared
        weakref.finalize(client, self._release)  # the thread ended (or forked away)
        with self._lock:
            self._clients.add(client)
        local.client, local.generation = client, _Forks.generation
        return client

    def close(self) -> None:
        """Give every thread's connection back to the pool (threads that live on would keep
        them: a pool passed in by the caller outlives the backend); later calls use the
        shared client. Idempotent."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            client.close()

    def _release(self) -> None:
        with self._lock:
            self._kept -= 1
