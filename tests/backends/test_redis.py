"""Redis-specific behaviour of ``RedisBackend`` beyond the shared contract suite: URLs and
options, driver error mapping, round trips per operation, key layout and native lifetimes,
pub/sub wake-ups, and replay safety. Cross-process races live in ``test_redis_processes.py``,
server faults in ``test_redis_faults.py``.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import need_modules, require_modules

require_modules("redis", "fakeredis", markers=["redis"])

import fakeredis
import redis
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

import taskstore
from support.backends import REDIS_PARAMS
from support.redis_support import (
    RedisServer,
    fresh_prefix,
    start_redis_server,
)
from taskstore import ManualClock, StoreConfig, TaskStatus, TaskStore
from taskstore.backends import open_backend
from taskstore.backends._redis_client import ThreadClients
from taskstore.backends._redis_faults import Retrier, is_transient, was_refused
from taskstore.backends._redis_keys import KeyLayout
from taskstore.backends.base import (
    ListPosition,
    StorageBackend,
    encode_scan_cursor,
    retrying_until,
)
from taskstore.backends.redis import RedisBackend
from taskstore.errors import (
    BackendError,
    ConfigurationError,
    InvalidCursorError,
    MissingDependencyError,
    QuotaExceededError,
    RecordNotFound,
    VersionConflict,
)
from taskstore.testing import T0
from taskstore.testing._scan import scan_all

pytestmark = pytest.mark.redis

FUTURE = T0 + 3_600_000
RedisFactory = Callable[..., RedisBackend]
server_only = pytest.mark.redis_server


@pytest.fixture(params=REDIS_PARAMS)
def redis_factory(request: pytest.FixtureRequest) -> RedisFactory:
    """``make(**options)`` for each Redis flavour: fakeredis, redis-server, Redis Cluster."""
    factory: RedisFactory = request.getfixturevalue(f"backend_factory_{request.param}")
    return factory


@pytest.fixture
def rbackend(redis_factory: RedisFactory) -> RedisBackend:
    """A fresh RedisBackend of each flavour (closed by its factory)."""
    return redis_factory()


@pytest.fixture
def server_backend(backend_factory_redis: RedisFactory) -> RedisBackend:
    """A fresh RedisBackend on the session's real redis-server."""
    return backend_factory_redis()


# -- construction and URLs -------------------------------------------------------------------


def test_import_without_redis_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the backend without redis-py raises MissingDependencyError (an ImportError)
    naming pip install 'taskstore[redis]', with no chained cause."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "taskstore.backends.redis")
    with pytest.raises(MissingDependencyError) as info:
        importlib.import_module("taskstore.backends.redis")
    assert "pip install 'taskstore[redis]'" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_backend_satisfies_the_protocol(rbackend: RedisBackend) -> None:
    """RedisBackend is a StorageBackend with no backend-specific size caps."""
    assert isinstance(rbackend, StorageBackend)
    assert rbackend.max_variable_bytes is None
    assert rbackend.max_result_bytes is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": ""}, "prefix"),
        ({"prefix": "a{b"}, "prefix"),
        ({"prefix": "a}b"}, "prefix"),
        ({"reclaim_delay_ms": -1}, "reclaim_delay_ms"),
        ({"wait_slice_s": 0}, "wait_slice_s"),
    ],
)
def test_constructor_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    """Bad prefixes (empty or with hash-tag braces) and bad timings are ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        RedisBackend(fakeredis.FakeRedis(), **options)


def test_constructor_rejects_decoding_and_foreign_clients() -> None:
    """A client with decode_responses=True, or something that is not a redis-py client, is
    refused: records are bytes."""
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisBackend(fakeredis.FakeRedis(decode_responses=True))
    with pytest.raises(ConfigurationError, match=r"redis\.Redis"):
        RedisBackend(object())  # type: ignore[arg-type]


def test_from_url_options_keywords_beat_query() -> None:
    """Query parameters configure backend and client; keyword options win over them."""
    backend = RedisBackend.from_url(
        "redis://127.0.0.1:1/3?prefix=fromquery&socket_timeout=2.5&max_connections=7"
        "&reclaim_delay_ms=5&wait_slice_s=0.5",
        prefix="fromkw",
        socket_connect_timeout=1,
    )
    try:
        kwargs = backend.client.get_connection_kwargs()
        assert backend.prefix == "fromkw"
        assert kwargs["socket_timeout"] == 2.5
        assert kwargs["socket_connect_timeout"] == 1.0
        assert kwargs["db"] == 3
        assert backend.client.connection_pool.max_connections == 7
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://h?nonsense=1", {}, "nonsense"),
        ("redis://h", {"decode_responses": True}, "decode_responses"),
        ("redis://h?socket_timeout=soon", {}, "socket_timeout|number"),
        ("redis://h?max_connections=1.5", {}, "max_connections|integer"),
        ("redis://h?cluster=maybe", {}, "boolean"),
        ("redis://h?retries=-1", {}, "retries"),
        ("redis://h?prefix=a{b}", {}, "prefix"),
        ("redis://h/2?cluster=true", {}, "database 0"),
        ("memcached://h", {}, "redis://"),
    ],
)
def test_from_url_rejects_unknown_and_bad_options(
    url: str, options: dict[str, Any], message: str
) -> None:
    """Unknown options, badly typed values and foreign schemes are ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        RedisBackend.from_url(url, **options)


def test_rediss_and_unix_urls_build_matching_clients() -> None:
    """rediss:// builds a TLS connection pool and unix:// a Unix-socket one (no I/O yet)."""
    tls = RedisBackend.from_url("rediss://example.invalid:6380/0?ssl_cert_reqs=none")
    unix = RedisBackend.from_url("unix:///tmp/taskstore-test.sock?db=2")
    try:
        # Subclasses that count the mutations they send (see taskstore.backends._redis_faults).
        assert issubclass(tls.client.connection_pool.connection_class, redis.SSLConnection)
        assert issubclass(
            unix.client.connection_pool.connection_class, redis.UnixDomainSocketConnection
        )
        assert unix.client.get_connection_kwargs()["db"] == 2
    finally:
        tls.close()
        unix.close()


@server_only
def test_unix_socket_url_round_trip(tmp_path: Path) -> None:
    """A store opened with a unix:// URL works against a server listening on that socket."""
    socket_path = tmp_path / "redis.sock"
    server = start_redis_server(tmp_path, extra=("--unixsocket", str(socket_path)))
    try:
        with taskstore.open(f"unix://{socket_path}?prefix={fresh_prefix()}") as store:
            record = store.create("alice")
            assert store.get(record.task_id, "alice").task_id == record.task_id
            assert issubclass(
                store.backend.client.connection_pool.connection_class,
                redis.UnixDomainSocketConnection,
            )
    finally:
        server.stop()


@server_only
def test_open_builds_a_store_over_redis(redis_server: RedisServer) -> None:
    """taskstore.open(redis://…) gives a working TaskStore over RedisBackend; store options in
    the query go to the store, backend options to the backend."""
    prefix = fresh_prefix()
    url = f"{redis_server.url}?prefix={prefix}&max_tasks_per_owner=1&socket_timeout=3"
    with taskstore.open(url) as store:
        assert isinstance(store.backend, RedisBackend)
        assert store.backend.prefix == prefix
        assert store.security.max_tasks_per_owner == 1
        record = store.create("alice")
        with pytest.raises(taskstore.QuotaExceededError):
            store.create("alice")
        assert store.complete(record.task_id, "alice", {"ok": 1}).status is TaskStatus.COMPLETED


def test_from_url_cluster_unreachable_is_backend_error() -> None:
    """cluster=true against a port nobody listens on fails with BackendError, cause chained."""
    with pytest.raises(BackendError) as info:
        open_backend(
            "redis://127.0.0.1:1/0?cluster=true", socket_connect_timeout=0.2, socket_timeout=0.2
        )
    assert info.value.__cause__ is not None


def test_close_keeps_a_passed_client_and_refuses_further_use() -> None:
    """close() leaves a caller's client open, stops the event thread, and the backend refuses
    work afterwards."""
    client = fakeredis.FakeRedis()
    backend = RedisBackend(client, prefix=fresh_prefix())
    backend.add_listener(lambda _: None)
    backend.close()
    backend.close()  # idempotent
    assert client.ping()
    assert not [t for t in threading.enumerate() if t.name.endswith(backend._channel)]
    with pytest.raises(ConfigurationError):
        backend.get(("a", "b"))
    with pytest.raises(ConfigurationError):
        backend.put(("a", "b"), b"x", None)
    client.close()


# A store's round on a real server, in a fresh interpreter: argv[1] is the URL, argv[2]
# "blocked" hides hiredis (import hiredis then raises ImportError, as when it is absent).
_HIREDIS_ROUND = """
import sys
if sys.argv[2] == "blocked":
    sys.modules["hiredis"] = None
import redis.utils
import taskstore
store = taskstore.open(sys.argv[1], max_tasks_per_owner=1)
record = store.create("alice", ttl_ms=60_000)
assert store.get(record.task_id, "alice").task_id == record.task_id
try:
    store.create("alice")
except taskstore.QuotaExceededError as exc:
    assert exc.to_jsonrpc()["code"] == -32010
else:
    raise AssertionError("quota not enforced")
store.complete(record.task_id, "alice", {"content": []})
assert store.wait(record.task_id, "alice", timeout=5).status.value == "completed"
assert store.get_result(record.task_id, "alice").result == {"content": []}
store.close()
print("hiredis" if redis.utils.HIREDIS_AVAILABLE else "python")
"""


@server_only
@pytest.mark.parametrize("hiredis", ["installed", "blocked"])
def test_works_with_and_without_hiredis(redis_server: RedisServer, hiredis: str) -> None:
    """The backend works on hiredis (redis-py's C parser, which the ``redis`` extra installs)
    and on redis-py's own Python parser alike: reads, a script's quota error reply, writes,
    the wait and the outcome."""
    if hiredis == "installed":
        need_modules("hiredis")
    url = f"{redis_server.url}?prefix={fresh_prefix()}"
    done = subprocess.run(
        [sys.executable, "-c", _HIREDIS_ROUND, url, hiredis],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hiredis" if hiredis == "installed" else "python"]


@server_only
def test_resp2_clients_work(backend_factory_redis: RedisFactory) -> None:
    """A client speaking RESP2 (protocol=2, redis-py's default before 8.0) drives every
    operation, the error replies and the event subscription the same way as RESP3."""
    backend = backend_factory_redis(protocol=2, wait_slice_s=30)
    received: list[bytes] = []
    remove = backend.add_listener(received.append)
    key = ("alice", "t")
    assert backend.create(key, b"1", FUTURE, sort_ms=T0, max_live=1, now_ms=T0) == 1
    with pytest.raises(QuotaExceededError):
        backend.create(("alice", "u"), b"1", FUTURE, sort_ms=T0, max_live=1, now_ms=T0)
    with pytest.raises(VersionConflict) as conflict:
        backend.put_if_version(key, b"2", 5, now_ms=T0)
    assert conflict.value.actual == 1
    assert backend.put_if_version(key, b"2", 1, event=b"ev", now_ms=T0) == 2
    assert [r.data for r in backend.list_by_prefix("alice", now_ms=T0)] == [b"2"]
    with pytest.raises(RecordNotFound):
        backend.list_by_prefix("alice", ListPosition(T0, "gone"), now_ms=T0)
    started = time.monotonic()
    backend.wait_for_change(key, 1, 30.0)  # already at version 2: the re-read returns at once
    assert time.monotonic() - started < 10.0  # long before the 30 s timeout and slice
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert received == [b"ev"]
    assert backend.cleanup_expired(FUTURE) == 1
    remove()


# -- driver errors ---------------------------------------------------------------------------


def _driver_exception_classes() -> list[type[BaseException]]:
    """Every exception class redis-py defines: RedisError's whole subtree (walked, as httpx's
    test does) plus the module's classes outside it (RedisClusterException, …)."""
    found: set[type[BaseException]] = set()
    pending: list[type[BaseException]] = [redis.exceptions.RedisError]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.add(cls)
            pending.extend(cls.__subclasses__())
    found.update(
        value
        for value in vars(redis.exceptions).values()
        if inspect.isclass(value) and issubclass(value, Exception)
    )
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


def _instance(cls: type[BaseException]) -> BaseException:
    for args in (("1234 127.0.0.1:7000",), ()):
        try:
            return cls(*args)
        except Exception:
            continue
    raise AssertionError(f"cannot build {cls}")


class _RaisingPipeline:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __enter__(self) -> _RaisingPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "execute":
                raise self.error
            return self

        return call


_OPERATIONS: dict[str, Callable[[RedisBackend], object]] = {
    "get": lambda b: b.get(("alice", "t"), now_ms=T0),
    "put": lambda b: b.put(("alice", "t"), b"{}", None, now_ms=T0),
    "put_if_version": lambda b: b.put_if_version(("alice", "t"), b"{}", 1, now_ms=T0),
    "create": lambda b: b.create(("alice", "t"), b"{}", None, sort_ms=T0, now_ms=T0),
    "delete": lambda b: b.delete(("alice", "t")),
    "list_by_prefix": lambda b: b.list_by_prefix("alice", now_ms=T0),
    "list_after": lambda b: b.list_by_prefix("alice", ListPosition(T0, "t"), now_ms=T0),
    "cleanup_expired": lambda b: b.cleanup_expired(T0),
    "wait_for_change": lambda b: b.wait_for_change(("alice", "t"), 1, 0.05),
}


@pytest.mark.parametrize(
    "error_class", _driver_exception_classes(), ids=lambda cls: cls.__qualname__
)
def test_every_driver_exception_is_mapped(
    monkeypatch: pytest.MonkeyPatch, error_class: type[BaseException]
) -> None:
    """Whatever redis-py raises, every backend operation raises BackendError with the driver's
    exception as __cause__ (never a bare redis exception)."""
    error = _instance(error_class)
    client = fakeredis.FakeRedis()

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(client, "execute_command", fail)
    monkeypatch.setattr(client, "pipeline", lambda *a, **k: _RaisingPipeline(error))
    backend = RedisBackend(client, prefix=fresh_prefix())
    try:
        for name, operation in _OPERATIONS.items():
            # A deadline already passed: one attempt each, transient faults included.
            with pytest.raises(BackendError) as info, retrying_until(time.monotonic()):
                operation(backend)
            assert info.value.__cause__ is error, name
            assert info.value.transient is is_transient(error), name
            # Reads never apply anything; this client does not count what it sends, so a
            # failed write is unknown unless the server refused it before running it.
            writes = name in ("put", "put_if_version", "create", "delete")  # cleanup counts first
            expected = None if writes and not was_refused(error) else False
            assert info.value.applied is expected, name
    finally:
        backend.close()
        client.close()


def test_retrier_retries_transient_faults_until_the_deadline() -> None:
    """The retry loop: a transient fault is tried again (with backoff) until the call
    succeeds or the deadline passes; a permanent one and a contract error end the call at
    once; a write is reported applied only when it may have left (tracked clients)."""
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise redis.exceptions.ConnectionError("reset")
        return "ok"

    with retrying_until(time.monotonic() + 5):
        assert Retrier(tracked=True).call("get", flaky) == "ok"
    assert attempts == 3

    def down() -> None:
        raise redis.exceptions.TimeoutError("slow")

    started = time.monotonic()
    with retrying_until(started + 0.2), pytest.raises(BackendError) as info:
        Retrier(tracked=True).call("put", down, write=True)
    assert 0.2 <= time.monotonic() - started < 2
    # Nothing counted as sent on a tracked client: the write cannot have been applied.
    assert info.value.transient and info.value.applied is False
    with retrying_until(time.monotonic()), pytest.raises(BackendError) as info:
        Retrier(tracked=False).call("put", down, write=True)
    assert info.value.applied is None  # an untracked client cannot tell

    permanent_attempts = 0

    def refused() -> None:
        nonlocal permanent_attempts
        permanent_attempts += 1
        raise redis.exceptions.AuthenticationError("denied")

    with retrying_until(time.monotonic() + 5), pytest.raises(BackendError) as info:
        Retrier(tracked=True).call("get", refused)
    assert permanent_attempts == 1 and not info.value.transient

    def missing() -> None:
        raise RecordNotFound(("alice", "t"))

    with retrying_until(time.monotonic() + 5), pytest.raises(RecordNotFound):
        Retrier(tracked=True).call("get", missing)


@server_only
def test_foreign_script_and_type_errors_are_backend_errors(server_backend: RedisBackend) -> None:
    """A key of the wrong type (someone else's data under our prefix) makes reads and scripts
    fail with BackendError wrapping the ResponseError, not a contract error."""
    key = ("alice", "t1")
    record_key = server_backend._record_key(key)
    server_backend.client.set(record_key, b"not a hash")
    for operation in (
        lambda: server_backend.get(key, now_ms=T0),
        lambda: server_backend.put(key, b"{}", None, now_ms=T0),
        lambda: server_backend.put_if_version(key, b"{}", 1, now_ms=T0),
    ):
        with pytest.raises(BackendError) as info:
            operation()
        assert isinstance(info.value.__cause__, redis.exceptions.ResponseError)


# -- round trips -------------------------------------------------------------------------------


class _Counter:
    """Counts what a redis-py client sends: one packed send is one round trip."""

    def __init__(self) -> None:
        self.sends = 0
        self.commands: list[bytes] = []

    def connection_class(self) -> type[redis.Connection]:
        counter = self

        class CountingConnection(redis.Connection):
            def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                counter.sends += 1
                chunks = [command] if isinstance(command, (bytes, str)) else list(command)
                head = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)[:64]
                counter.commands.append(head.split(b"\r\n")[2] if b"\r\n" in head else head)
                super().send_packed_command(command, check_health)

        return CountingConnection

    def measure(self, action: Callable[[], object]) -> tuple[int, list[bytes]]:
        self.sends, self.commands = 0, []
        action()
        return self.sends, list(self.commands)


@pytest.fixture
def counted(redis_server: RedisServer) -> Iterator[tuple[RedisBackend, _Counter]]:
    """A RedisBackend on the real server whose client counts round trips."""
    counter = _Counter()
    pool = redis.ConnectionPool(
        connection_class=counter.connection_class(),
        host="127.0.0.1",
        port=redis_server.port,
        retry=Retry(NoBackoff(), 0),
    )
    client = redis.Redis(connection_pool=pool)
    backend = RedisBackend(client, prefix=fresh_prefix())
    yield backend, counter
    backend.close()
    client.close()
    pool.disconnect()


@server_only
def test_round_trips_per_operation(counted: tuple[RedisBackend, _Counter]) -> None:
    """get is 1 round trip (HMGET), every mutation 1 EVALSHA, a list page 1 EVALSHA whatever its
    size, once the scripts are loaded."""
    backend, counter = counted
    for i in range(300):  # also loads every script the first time
        backend.create(("alice", f"t{i:03d}"), b"{}", T0 + (50 if i % 3 else 10**9), sort_ms=T0 + i,
                       max_live=1000, now_ms=T0)
    backend.put(("alice", "p"), b"{}", None, now_ms=T0)
    backend.put_if_version(("alice", "p"), b"{}", 1, now_ms=T0)
    backend.delete(("nobody", "x"))
    backend.list_by_prefix("alice", ListPosition(T0 + 299, "t299"), 1, now_ms=T0)
    key = ("alice", "t000")
    checks: dict[str, tuple[Callable[[], object], bytes]] = {
        "get": (lambda: backend.get(key, now_ms=T0), b"HMGET"),
        "get+outcome": (lambda: backend.get(key, include_outcome=True, now_ms=T0), b"HMGET"),
        "create": (lambda: backend.create(("alice", "new"), b"{}", FUTURE, sort_ms=T0,
                                          max_live=1000, now_ms=T0), b"EVALSHA"),
        "put": (lambda: backend.put(key, b"{}", FUTURE, now_ms=T0), b"EVALSHA"),
        "put_if_version": (lambda: backend.put_if_version(key, b"{}", 2, event=b"{}",
                                                          now_ms=T0), b"EVALSHA"),
        "delete": (lambda: backend.delete(("alice", "new")), b"EVALSHA"),
        "list 1": (lambda: backend.list_by_prefix("alice", limit=1, now_ms=T0 + 50), b"EVALSHA"),
        "list 50": (lambda: backend.list_by_prefix("alice", limit=50, now_ms=T0 + 50), b"EVALSHA"),
        "list 200 after": (lambda: backend.list_by_prefix(
            "alice", ListPosition(T0 + 297, "t297"), 200, now_ms=T0 + 50), b"EVALSHA"),
    }
    for name, (action, command) in checks.items():
        sends, commands = counter.measure(action)
        assert (sends, commands) == (1, [command]), name

    def stale_write() -> None:
        with pytest.raises(VersionConflict):
            backend.put_if_version(key, b"{}", 1, now_ms=T0)

    assert counter.measure(stale_write) == (1, [b"EVALSHA"])
    page = backend.list_by_prefix("alice", limit=200, now_ms=T0 + 50)
    assert len(page) == 101  # "p" and 100 live "t…": the 200 expired ones are skipped inside


@server_only
def test_each_mutation_is_one_script_call_on_the_server(server_backend: RedisBackend) -> None:
    """INFO commandstats agrees: each mutation adds exactly one EVALSHA call and nothing else
    from the client (the commands inside the script count separately)."""
    backend = server_backend
    backend.create(("alice", "warm"), b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    backend.put(("alice", "warm"), b"{}", FUTURE, now_ms=T0)
    backend.put_if_version(("alice", "warm"), b"{}", 2, now_ms=T0)
    backend.delete(("alice", "gone"))

    def evalsha_calls() -> int:
        stats: dict[str, Any] = backend.client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    for mutation in (
        lambda: backend.create(("alice", "t"), b"{}", FUTURE, sort_ms=T0, max_live=5, now_ms=T0),
        lambda: backend.put(("alice", "t"), b"{}", FUTURE, now_ms=T0),
        lambda: backend.put_if_version(("alice", "t"), b"{}", 2, event=b"{}", now_ms=T0),
        lambda: backend.delete(("alice", "t")),
    ):
        before = evalsha_calls()
        mutation()
        assert evalsha_calls() - before == 1


@server_only
def test_get_and_list_never_transfer_outcomes(server_backend: RedisBackend) -> None:
    """With 300 KB outcomes stored, get and a list page move only a few KB over the wire."""
    backend = server_backend
    big = b'{"kind":"result","result":"' + b"x" * 300_000 + b'"}'
    for i in range(10):
        backend.put(("alice", f"t{i}"), b'{"small":true}', FUTURE, sort_ms=T0 + i, outcome=big,
                    now_ms=T0)

    def sent_bytes() -> int:
        stats: dict[str, Any] = backend.client.info("stats")
        return int(stats["total_net_output_bytes"])

    before = sent_bytes()
    backend.get(("alice", "t0"), now_ms=T0)
    backend.list_by_prefix("alice", limit=10, now_ms=T0)
    assert sent_bytes() - before < 20_000
    before = sent_bytes()
    assert backend.get(("alice", "t0"), include_outcome=True, now_ms=T0).outcome == big
    assert sent_bytes() - before > 300_000


# -- layout, listing order and expiry ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(owner=st.text(), task_id=st.text())
def test_read_keys_match_the_write_keys(owner: str, task_id: str) -> None:
    """The read path's record key (a cached owner part, plain ids left unencoded) is the key
    every write script gets, for any owner and id, on a cold and a warm cache."""
    layout = KeyLayout("P")
    for _ in range(2):
        assert layout.key_of((owner, task_id)) == layout.record((owner, task_id)).record


def test_owner_keys_share_one_slot_and_owners_spread(rbackend: RedisBackend) -> None:
    """Every key a write touches for one owner hashes to one cluster slot; owners spread over
    many slots."""
    from redis.crc import key_slot

    slots = set()
    for owner in ["", "a", "{a}", "a}b{", "ü", *(f"owner-{i}" for i in range(200))]:
        keys = rbackend._keys((owner, "{task}:1"))
        owner_slots = {
            key_slot(k.encode()) for k in keys.writes
        }
        assert len(owner_slots) == 1, owner
        slots |= owner_slots
    assert len(slots) > 100


# One fakeredis server for every example; each example still gets a fresh prefix.
_HYPOTHESIS_SERVER = fakeredis.FakeServer()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.integers(min_value=0, max_value=3)),
        min_size=1,
        max_size=12,
        unique_by=lambda item: item[0],
    )
)
def test_listing_order_and_key_encoding_match_python(items: list[tuple[str, int]]) -> None:
    """For arbitrary Unicode task ids, the Lua side finds every record (its key encoding equals
    encode_key_part) and pages in exactly Python's (sort_ms, task_id) descending order."""
    client = fakeredis.FakeRedis(server=_HYPOTHESIS_SERVER)
    backend = RedisBackend(client, prefix=fresh_prefix())
    try:
        for task_id, sort in items:
            backend.put(("ö:{o}", task_id), task_id.encode("utf-8", "surrogatepass"), FUTURE,
                        sort_ms=T0 + sort, now_ms=T0)
        expected = sorted(((T0 + s, t) for t, s in items), reverse=True)
        seen: list[tuple[int, str]] = []
        after = None
        while True:
            page = backend.list_by_prefix("ö:{o}", after, 2, now_ms=T0)
            seen += [(r.sort_ms, r.key[1]) for r in page]
            if len(page) < 2:
                break
            after = ListPosition(page[-1].sort_ms, page[-1].key[1])
        assert seen == expected
        assert backend.cleanup_expired(FUTURE) == len(items)
    finally:
        backend.close()
        client.close()


@pytest.mark.redis_cluster
@pytest.mark.slow
def test_cluster_spreads_owners_and_events_reach_every_node(
    backend_factory_redis_cluster: RedisFactory,
) -> None:
    """On Redis Cluster, owners land on every node, and one listener receives the events of
    scripts run on all of them (PUBLISH from a script reaches the whole cluster)."""
    backend = backend_factory_redis_cluster()
    received: list[bytes] = []
    remove = backend.add_listener(received.append)
    nodes = set()
    for i in range(30):
        key = (f"owner-{i}", "t")
        nodes.add(backend.client.get_node_from_key(backend._keys(key).record).name)
        backend.put(key, b"{}", None, sort_ms=T0, event=f"e{i}".encode(), now_ms=T0)
    assert len(nodes) == 3
    deadline = time.monotonic() + 5
    while len(received) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(received) == sorted(f"e{i}".encode() for i in range(30))
    remove()


def test_surrogate_task_ids_round_trip(rbackend: RedisBackend) -> None:
    """Task ids holding lone surrogates (invalid UTF-8) are stored, listed and removed like any
    other id instead of failing to encode."""
    task_id = "a\ud800b"
    rbackend.put(("alice", task_id), b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    assert rbackend.get(("alice", task_id), now_ms=T0).key == ("alice", task_id)
    assert [r.key[1] for r in rbackend.list_by_prefix("alice", now_ms=T0)] == [task_id]
    assert rbackend.delete(("alice", task_id)) is True


def test_native_lifetimes_follow_the_callers_clock(rbackend: RedisBackend) -> None:
    """Keys get a native lifetime of expires_at - now + reclaim delay (so a clock far behind the
    server's never makes Redis drop a live record); never-expiring records have none."""
    client = rbackend.client
    rbackend.create(("alice", "short"), b"{}", T0 + 1_000, sort_ms=T0, now_ms=T0)
    keys = rbackend._keys(("alice", "short"))
    ttl = client.pttl(keys.record)
    assert 50_000 < ttl <= 61_000  # 1 s left + the 60 s reclaim delay, minus time since
    for index in (keys.listing, keys.expiry, keys.due, keys.all_records):  # absolute times
        assert client.pexpiretime(index) >= client.pexpiretime(keys.record)
    rbackend.create(("alice", "long"), b"{}", T0 + 10_000_000, sort_ms=T0, now_ms=T0)
    assert client.pttl(keys.listing) > 10_000_000
    rbackend.create(("alice", "forever"), b"{}", None, sort_ms=T0, now_ms=T0)
    assert client.pttl(rbackend._keys(("alice", "forever")).record) == -1
    assert client.pttl(keys.listing) == -1  # holds a record that never expires
    assert client.pttl(keys.all_records) == -1
    rbackend.put_if_version(("alice", "forever"), b"{}", 1, T0 + 5_000, now_ms=T0)
    assert client.pttl(keys.listing) > 10_000_000  # back to the latest expiry
    assert client.pttl(keys.all_records) > 10_000_000
    rbackend.put_if_version(("alice", "short"), b"{}", 1, None, now_ms=T0)
    assert client.pttl(keys.record) == -1
    assert client.zscore(keys.due, b"alice:short") is None


@server_only
@pytest.mark.slow
def test_redis_reclaims_expired_keys_natively(backend_factory_redis: RedisFactory) -> None:
    """With reclaim_delay_ms=0 and a real clock, Redis itself deletes a record's keys after it
    expires; cleanup_expired still counts it."""
    backend = backend_factory_redis(reclaim_delay_ms=0)
    now = time.time_ns() // 1_000_000
    backend.create(("alice", "t"), b"{}", now + 150, sort_ms=now, now_ms=now)
    keys = backend._keys(("alice", "t"))
    assert backend.client.exists(*keys.writes) == 5
    deadline = time.monotonic() + 5
    while backend.client.exists(*keys.writes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.client.exists(*keys.writes) == 0
    assert backend.list_by_prefix("alice", now_ms=now) == []


def test_create_reclaims_the_owners_expired_records(rbackend: RedisBackend) -> None:
    """create removes the owner's expired records (hash and index entries) even if nobody calls
    cleanup_expired, and cleanup then has nothing left to count for that owner."""
    for i in range(5):
        rbackend.create(("alice", f"old{i}"), b"{}", T0 + 10, sort_ms=T0, now_ms=T0)
    rbackend.create(("alice", "new"), b"{}", FUTURE, sort_ms=T0 + 10, max_live=1, now_ms=T0 + 10)
    client = rbackend.client
    assert not client.exists(*(rbackend._keys(("alice", f"old{i}")).record for i in range(5)))
    assert client.zcard(rbackend._keys(("alice", "new")).listing) == 1
    assert rbackend.cleanup_expired(T0 + 10) == 0


def test_cleanup_spans_owners_buckets_and_batches(rbackend: RedisBackend) -> None:
    """cleanup_expired removes expired records of many owners across buckets, more than one
    script batch in a single bucket, and leaves live ones alone."""
    for i in range(40):
        rbackend.put((f"owner-{i}", "a"), b"{}", T0 + 5, sort_ms=T0, now_ms=T0)
        rbackend.put((f"owner-{i}", "b"), b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    for i in range(520):  # more than one cleanup.lua batch (500)
        rbackend.put(("bulk", f"t{i}"), b"{}", T0 + 5, sort_ms=T0, now_ms=T0)
    assert rbackend.cleanup_expired(T0 + 4) == 0
    assert rbackend.cleanup_expired(T0 + 5) == 560
    assert rbackend.cleanup_expired(T0 + 5) == 0
    assert all(
        [r.key[1] for r in rbackend.list_by_prefix(f"owner-{i}", now_ms=T0)] == ["b"]
        for i in range(40)
    )
    assert not rbackend.client.exists(rbackend._keys(("bulk", "t0")).listing)


def test_cleanup_repairs_a_stale_due_entry(rbackend: RedisBackend) -> None:
    """A due-index entry that disagrees with its live record is corrected, not counted."""
    key = ("alice", "t")
    rbackend.put(key, b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    keys = rbackend._keys(key)
    rbackend.client.zadd(keys.due, {keys.owner.encode() + b":" + keys.member: T0})
    assert rbackend.cleanup_expired(T0 + 1) == 0
    assert rbackend.client.zscore(keys.due, keys.owner.encode() + b":" + keys.member) == FUTURE
    assert rbackend.get(key, now_ms=T0 + 1).version == 1


# -- replay safety -----------------------------------------------------------------------------


@server_only
def test_replayed_writes_after_a_lost_reply_apply_once(redis_server: RedisServer) -> None:
    """When a script's reply is lost and redis-py retries it, the write token makes the replay
    answer with the first result: no version conflict, no double increment."""
    lose = {"next": False}

    class LossyConnection(redis.Connection):
        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            response = super().read_response(*args, **kwargs)
            if lose["next"]:
                lose["next"] = False
                self.disconnect()
                raise redis.ConnectionError("reply lost")
            return response

    pool = redis.ConnectionPool(
        connection_class=LossyConnection,
        host="127.0.0.1",
        port=redis_server.port,
        retry=Retry(NoBackoff(), 1),
    )
    client = redis.Redis(connection_pool=pool)
    backend = RedisBackend(client, prefix=fresh_prefix())
    try:
        key = ("alice", "t")
        backend.create(("alice", "warm"), b"{}", None, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "warm"), b"{}", None, now_ms=T0)
        backend.put_if_version(("alice", "warm"), b"{}", 2, now_ms=T0)
        lose["next"] = True
        assert backend.create(key, b"1", None, sort_ms=T0, max_live=10, now_ms=T0) == 1
        lose["next"] = True
        assert backend.put_if_version(key, b"2", 1, now_ms=T0) == 2
        lose["next"] = True
        assert backend.put(key, b"3", None, now_ms=T0) == 3
        stored = backend.get(key, now_ms=T0)
        assert (stored.version, stored.data) == (3, b"3")
        with pytest.raises(VersionConflict):  # a genuinely stale CAS still conflicts
            backend.put_if_version(key, b"x", 2, now_ms=T0)
    finally:
        backend.close()
        client.close()
        pool.disconnect()


# -- events and waiting ------------------------------------------------------------------------


def _settle(backend: RedisBackend, received: list[bytes]) -> None:
    """Make sure ``backend``'s event subscription is confirmed and its confirmation has been
    handled (it wakes every waiter once): a round trip of an event through the listener
    appending to ``received``, on a scratch key."""
    backend.put(("settle", "t"), b"{}", None, sort_ms=T0, event=b"settled", now_ms=T0)
    deadline = time.monotonic() + 10
    while b"settled" not in received:
        assert time.monotonic() < deadline, "the event subscription never delivered"
        time.sleep(0.01)


def _settled_backend(factory: RedisFactory, **options: Any) -> tuple[RedisBackend, list[bytes]]:
    """A backend with a 30 s wait slice (only a wake-up can end a wait early) and a settled
    event subscription; also returns what its listener received so far."""
    backend = factory(wait_slice_s=30, **options)
    received: list[bytes] = []
    backend.add_listener(received.append)
    _settle(backend, received)
    return backend, received


def test_waiter_is_woken_by_the_write_event(redis_factory: RedisFactory) -> None:
    """A wait_for_change caller returns after another thread's write with an event, woken by
    that event: long before its 20 s timeout or 30 s slice, never before the write. (How fast
    it wakes is measured in benchmarks/, not asserted here.)"""
    backend, _ = _settled_backend(redis_factory)
    key = ("alice", "t")
    backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)
    for version in range(1, 4):
        stamp: list[float] = []

        def write(v: int = version) -> None:
            time.sleep(0.05)  # lets the waiter block; no outcome depends on this sleep
            stamp.append(time.monotonic())
            backend.put_if_version(key, b"{}", v, event=b"{}", now_ms=T0)

        thread = threading.Thread(target=write)
        started = time.monotonic()
        thread.start()
        try:
            backend.wait_for_change(key, version, 20.0)
            returned = time.monotonic()
        finally:
            thread.join(30)
        assert stamp and returned >= stamp[0], "returned before the write"
        assert returned - started < 10.0, f"woke only after {returned - started:.2f}s"
        assert backend.get(key, now_ms=T0).version == version + 1


def test_wait_returns_at_once_when_already_changed(redis_factory: RedisFactory) -> None:
    """A write between the caller's read and its wait is never missed: the re-read after
    subscribing sees it and returns, long before the 30 s slice or timeout."""
    backend, _ = _settled_backend(redis_factory)
    key = ("alice", "t")
    backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)
    backend.put(key, b"{}", None, now_ms=T0)
    started = time.monotonic()
    backend.wait_for_change(key, 1, 30.0)
    assert time.monotonic() - started < 10.0


def test_lost_message_only_delays_by_one_slice(redis_factory: RedisFactory) -> None:
    """A write whose message never arrives (here: written without an event) is noticed by the
    bounded re-poll: with a 0.2 s wait_slice_s the caller sees it long before its 30 s
    timeout."""
    backend = redis_factory(wait_slice_s=0.2)
    key = ("alice", "t")
    backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)
    timer = threading.Timer(0.05, lambda: backend.put(key, b"{}", None, now_ms=T0))
    timer.start()
    started = time.monotonic()
    try:
        while backend.get(key, now_ms=T0).version == 1 and time.monotonic() - started < 30:
            backend.wait_for_change(key, 1, 30.0)
    finally:
        timer.join()
    assert backend.get(key, now_ms=T0).version == 2
    assert time.monotonic() - started < 10.0


def test_delete_wakes_waiters_without_an_event(redis_factory: RedisFactory) -> None:
    """delete wakes waiters on the key (long before their 30 s slice or 20 s timeout, never
    before the delete) but gives listeners no event."""
    backend, received = _settled_backend(redis_factory)
    key = ("alice", "t")
    backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)
    deleted_at: list[float] = []

    def delete() -> None:
        deleted_at.append(time.monotonic())
        backend.delete(key)

    timer = threading.Timer(0.1, delete)
    started = time.monotonic()
    timer.start()
    try:
        backend.wait_for_change(key, 1, 20.0)
        returned = time.monotonic()
    finally:
        timer.join()
    assert deleted_at and returned >= deleted_at[0], "returned before the delete"
    assert returned - started < 10.0, f"woke only after {returned - started:.2f}s"
    # A later event on the same key: once it arrived, anything the delete sent had too.
    backend.put(key, b"{}", None, sort_ms=T0, event=b"marker", now_ms=T0)
    deadline = time.monotonic() + 10
    while b"marker" not in received:
        assert time.monotonic() < deadline, "the marker event never arrived"
        time.sleep(0.01)
    assert received == [b"settled", b"marker"]


def test_store_subscribe_and_wait_over_two_backends(redis_factory: RedisFactory) -> None:
    """Two backends sharing a prefix (as two processes would) see each other's events: a
    subscriber gets the status change, and a waiter returns the completed task long before its
    30 s poll interval and slice could have it re-read: woken through pub/sub."""
    prefix = fresh_prefix()
    clock = ManualClock(T0)
    writer = TaskStore(redis_factory(prefix=prefix), clock=clock)
    reader = TaskStore(
        redis_factory(prefix=prefix, wait_slice_s=30),
        config=StoreConfig(poll_interval_ms=30_000),
        clock=clock,
    )
    seen: list[dict[str, Any]] = []
    reader.subscribe(seen.append)
    record = writer.create("alice")
    timer = threading.Timer(0.1, lambda: writer.complete(record.task_id, "alice", {"n": 1}))
    timer.start()
    started = time.monotonic()
    done = reader.wait(record.task_id, "alice", timeout=20)
    timer.join()
    assert done.status is TaskStatus.COMPLETED
    assert time.monotonic() - started < 10.0
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(e["taskId"], e["status"]) for e in seen] == [(record.task_id, "completed")]
    writer.close()
    reader.close()


def test_quota_error_carries_the_limit(rbackend: RedisBackend) -> None:
    """The quota error from the script carries data={"limit": n}, exactly like memory's."""
    rbackend.create(("alice", "a"), b"{}", None, sort_ms=T0, max_live=1, now_ms=T0)
    with pytest.raises(QuotaExceededError) as info:
        rbackend.create(("alice", "b"), b"{}", None, sort_ms=T0, max_live=1, now_ms=T0)
    assert info.value.data == {"limit": 1}


def test_stale_anchor_with_a_moved_sort_key_is_not_found(rbackend: RedisBackend) -> None:
    """An anchor whose record still exists but under another sort key is stale too."""
    rbackend.put(("alice", "t"), b"{}", None, sort_ms=T0, now_ms=T0)
    with pytest.raises(RecordNotFound):
        rbackend.list_by_prefix("alice", ListPosition(T0 + 1, "t"), 5, now_ms=T0)
    assert rbackend.list_by_prefix("alice", ListPosition(T0, "t"), 5, now_ms=T0) == []


# -- the scan across owners ----------------------------------------------------------------------


def all_members(backend: RedisBackend, owner: str) -> set[bytes]:
    """The members of the ``all`` scan index of ``owner``'s bucket that belong to ``owner``."""
    keys = backend._keys((owner, ""))
    members: list[bytes] = backend.client.zrange(keys.all_records, 0, -1)
    return {m for m in members if m.startswith(keys.owner.encode() + b":")}


def test_scan_index_follows_every_write(rbackend: RedisBackend) -> None:
    """create and put add a record to its bucket's scan index, delete, cleanup and create's
    reclaim of expired records take it out; the index disappears with its last member."""
    rbackend.create(("alice", "c"), b"{}", T0 + 10, sort_ms=T0, now_ms=T0)
    rbackend.put(("alice", "p"), b"{}", None, sort_ms=T0, now_ms=T0)
    rbackend.put(("alice", "q"), b"{}", T0 + 10, sort_ms=T0, now_ms=T0)
    assert all_members(rbackend, "alice") == {b"alice:c", b"alice:p", b"alice:q"}
    assert rbackend.delete(("alice", "p"))
    assert all_members(rbackend, "alice") == {b"alice:c", b"alice:q"}
    rbackend.create(("alice", "n"), b"{}", FUTURE, sort_ms=T0, now_ms=T0 + 10)  # reclaims
    assert all_members(rbackend, "alice") == {b"alice:n"}
    rbackend.put(("alice", "n"), b"{}", T0 + 20, now_ms=T0 + 10)
    assert rbackend.cleanup_expired(T0 + 20) == 1
    assert not rbackend.client.exists(rbackend._keys(("alice", "n")).all_records)


def test_scan_steps_over_index_members_whose_record_is_gone(rbackend: RedisBackend) -> None:
    """Members whose hash Redis reclaimed natively (before a cleanup) are skipped; a call
    steps over at most 1000 of them beyond its page, so a page may come back short with a
    cursor, and the pass still ends with exactly the live records."""
    for i in range(1_200):
        key = ("alice", f"a{i:04d}")
        rbackend.put(key, b"{}", FUTURE, sort_ms=T0, now_ms=T0)
        rbackend.client.delete(rbackend._keys(key).record)  # as a native reclaim would
    rbackend.put(("alice", "z"), b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    first = rbackend.scan(None, 1, now_ms=T0)
    assert first.records == [] and first.next_cursor is not None
    second = rbackend.scan(first.next_cursor, 1, now_ms=T0)
    assert [r.key for r in second.records] == [("alice", "z")]
    records, pages = scan_all(rbackend, 1, T0)
    assert [r.key for r in records] == [("alice", "z")]
    assert len(pages) >= 2


@pytest.mark.parametrize("bucket", [-1, 1024, 10**9])
def test_scan_cursor_outside_the_buckets_is_invalid(rbackend: RedisBackend, bucket: int) -> None:
    """A well-formed cursor naming a bucket the layout does not have is InvalidCursorError."""
    with pytest.raises(InvalidCursorError):
        rbackend.scan(encode_scan_cursor(("r1", bucket, b"")), 5, now_ms=T0)


@server_only
def test_scan_round_trips_per_page(counted: tuple[RedisBackend, _Counter]) -> None:
    """A scan page that continues in its bucket is one EVALSHA whatever its size; moving on to
    the next bucket adds one pipelined probe round trip; the empty rest of the pass is probed
    in at most four more."""
    backend, counter = counted
    for i in range(120):
        backend.create(("alice", f"t{i:03d}"), b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    # Unmeasured: loads the script and opens the connections a page uses (the thread's own
    # and a pooled one for the pipelined probe), which a fresh server or pool adds once.
    backend.scan(None, 50, now_ms=T0)
    first_sends, first = counter.measure(lambda: backend.scan(None, 50, now_ms=T0))
    assert first.count(b"EVALSHA") == 1 and first_sends <= 5
    one = backend.scan(None, 50, now_ms=T0)
    assert one.next_cursor is not None
    sends, commands = counter.measure(lambda: backend.scan(one.next_cursor, 50, now_ms=T0))
    assert (sends, commands) == (1, [b"EVALSHA"])
    two = backend.scan(one.next_cursor, 50, now_ms=T0)
    three = backend.scan(two.next_cursor, 50, now_ms=T0)
    assert (len(three.records), three.next_cursor) == (20, None)


# -- the connection each thread keeps (ThreadClients) ----------------------------------------


def _hold_threads(count: int, clients: ThreadClients) -> tuple[list[Any], list[bool]]:
    """``count`` threads each take their client twice and ping through it, then wait together
    until all have, so that none ends (and gives its connection back) before the others ask."""
    taken: list[Any] = [None] * count
    same: list[bool] = [False] * count
    arrived = threading.Barrier(count)

    def work(index: int) -> None:
        client = clients.get()
        client.ping()
        taken[index], same[index] = client, clients.get() is client
        arrived.wait()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken, same


@server_only
def test_each_thread_keeps_a_connection_of_its_own(redis_server: RedisServer) -> None:
    """Threads send through single-connection clients of their own on the shared pool, the
    same one every time; a thread's connection goes back to the pool when the thread ends."""
    shared = redis.Redis.from_url(redis_server.url)
    clients = ThreadClients(shared)
    try:
        taken, same = _hold_threads(4, clients)
        assert all(same)
        assert len({id(client) for client in taken}) == 4
        assert all(client is not shared and client.connection is not None for client in taken)
        assert len({id(client.connection) for client in taken}) == 4
        del taken
        gc.collect()
        assert clients.kept() == 0
        assert clients.get().ping()  # the main thread's own
        assert clients.kept() == 1
    finally:
        shared.close()


@server_only
def test_threads_keep_at_most_half_the_pool(redis_server: RedisServer) -> None:
    """With max_connections=4 two threads keep connections; the others use the shared
    client, which so always has half the pool."""
    shared = redis.Redis.from_url(redis_server.url, max_connections=4)
    clients = ThreadClients(shared)
    try:
        taken, _ = _hold_threads(4, clients)
        assert sum(client is shared for client in taken) == 2
        assert clients.kept() == 2
    finally:
        shared.close()


def test_fakeredis_and_a_disabled_helper_use_the_shared_client() -> None:
    """A client that is not a plain redis.Redis on its own pool (fakeredis), or the helper
    turned off, hands out the shared client to every thread."""
    fake = fakeredis.FakeRedis()
    assert ThreadClients(fake).get() is fake
    plain = redis.Redis()
    assert ThreadClients(plain, enabled=False).get() is plain
    plain.close()


@server_only
def test_closing_gives_the_threads_connections_back(redis_server: RedisServer) -> None:
    """close() returns every thread's connection to the pool, even of threads that live on
    (a pool the caller passed in outlives the backend); later calls use the shared client."""
    shared = redis.Redis.from_url(redis_server.url)
    clients = ThreadClients(shared)
    taken: list[Any] = []
    ready = threading.Barrier(4)
    done = threading.Event()

    def work() -> None:
        client = clients.get()
        client.ping()
        taken.append(client)
        ready.wait(30)
        done.wait(30)

    threads = [threading.Thread(target=work) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        ready.wait(30)
        assert len(taken) == 3 and clients.kept() == 3
        assert all(client.connection is not None for client in taken)
        clients.close()
        assert all(client.connection is None for client in taken)
        assert clients.get() is shared
    finally:
        done.set()
        for thread in threads:
            thread.join()
        shared.close()


def _ping_in_child(clients: ThreadClients, out: Any) -> None:
    client = clients.get()
    # redis-py stamps each connection with the pid of the process that made it.
    out.put((client.ping(), client.connection.pid == os.getpid(), clients.kept()))


@server_only
def test_a_forked_child_keeps_a_connection_of_its_own(redis_server: RedisServer) -> None:
    """After a fork the child does not send through the connection it inherited (the parent's
    socket): its thread makes a client of its own, which works; the parent's still works."""
    shared = redis.Redis.from_url(redis_server.url)
    clients = ThreadClients(shared)
    try:
        mine = clients.get()
        assert mine.ping()
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_ping_in_child, args=(clients, out))
        child.start()
        pinged, fresh, kept = out.get(timeout=30)
        child.join(30)
        assert child.exitcode == 0
        assert pinged is True and fresh is True and kept >= 1
        assert clients.get() is mine and mine.ping()
    finally:
        shared.close()
