"""Transient faults on real servers, driven through a TCP proxy the tests control
(``support.proxy``): outages shorter and longer than the retry deadline, stalls, lost replies,
and a wait across an outage. Every store under test talks to its server through the proxy;
what was stored is checked through a second store that talks to the server directly.

Runs on redis-server, a 3-node Redis Cluster, DynamoDB Local and PostgreSQL (the session
cluster; its real stops and restarts are in ``test_postgres_faults.py``). Cluster redirects
name node addresses, so each cluster node sits behind its own proxy and announces the proxy's
port (``cluster-announce-port``; the cluster bus stays direct): clients discover, and only
ever reach, the proxies, which fail together. The cluster's "direct" store maps the announced
addresses back to the nodes' own (redis-py's ``address_remap``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from support.proxy import Proxy, ProxyGroup
from taskstore import (
    BackendError,
    InvalidTransitionError,
    SecurityConfig,
    StoreConfig,
    TaskNotFoundError,
    TaskStatus,
    TaskStore,
)
from taskstore.backends.base import StorageBackend
from taskstore.record import TaskRecord
from taskstore.testing import run_barrier_threads

OWNER = "alice"
#: Socket (PostgreSQL: statement) timeouts of the stores under test: a stalled request fails
#: fast, so a test that outlasts the retry deadline takes seconds, not minutes.
TIMEOUT_S = 0.5
THREADS = 8
#: The shortest retry deadline a store allows.
DEADLINE_MS = 1_000
#: The deadline, one attempt bounded by the 0.5 s timeout, plus slack for a busy machine:
#: well under the 10 s default deadline, so only the configured one explains a pass.
_FAIL_FAST_BUDGET_S = DEADLINE_MS / 1000 + TIMEOUT_S + 2.5

_STORE_FIELDS = frozenset(StoreConfig.__struct_fields__)


@dataclass
class Rig:
    """A server behind a proxy: stores through the proxy, and one straight to the server."""

    name: str
    proxy: Proxy | ProxyGroup
    #: ``make(**fields)``: a store through the proxy (StoreConfig/SecurityConfig fields).
    make: Callable[..., TaskStore]
    #: The same namespace, straight to the server: what is stored, whatever the proxy does.
    direct: TaskStore
    #: The driver's root error classes: every transient failure chains one as its
    #: ``__cause__``.
    driver_error: type[BaseException] | tuple[type[BaseException], ...]
    #: ``spot(verb, marker)``: bytes that single out, for ``Proxy.drop_next_reply``, the
    #: request of backend write ``verb`` ("put", "put_if_version", "create") whose payload
    #: holds ``marker``.
    spot: Callable[[str, bytes], bytes]
    #: Connections an outage turns away before every one of THREADS busy threads has met it:
    #: 4 tries each where the calling threads connect, fewer where a pool's threads do.
    outage_rejections: int = 4 * THREADS


def _split(fields: dict[str, Any]) -> tuple[StoreConfig, SecurityConfig]:
    config = {k: v for k, v in fields.items() if k in _STORE_FIELDS}
    security = {k: v for k, v in fields.items() if k not in _STORE_FIELDS}
    security.setdefault("max_tasks_per_owner", None)
    return StoreConfig(**config), SecurityConfig(**security)


def _maker(
    backend: Callable[[], StorageBackend], stores: list[TaskStore]
) -> Callable[..., TaskStore]:
    """A rig's ``make``: a store on a new ``backend()``, configured by the StoreConfig and
    SecurityConfig fields it is given, and kept in ``stores`` for the rig to close."""

    def make(**fields: Any) -> TaskStore:
        config, security = _split(fields)
        store = TaskStore(backend(), config=config, security=security)
        stores.append(store)
        return store

    return make


def _redis_spot(verb: str, marker: bytes) -> bytes:
    """Every write is one script call."""
    return b"EVALSHA"


def _redis_rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    import redis

    from support.redis_support import fresh_prefix
    from taskstore.backends.redis import RedisBackend

    server = request.getfixturevalue("redis_server")
    prefix = fresh_prefix()
    stores: list[TaskStore] = []
    with Proxy(server.port) as proxy:

        def backend() -> StorageBackend:
            return RedisBackend.from_url(
                f"redis://127.0.0.1:{proxy.port}/0",
                prefix=prefix,
                socket_timeout=TIMEOUT_S,
                socket_connect_timeout=TIMEOUT_S,
            )

        make = _maker(backend, stores)

        direct = TaskStore(RedisBackend.from_url(server.url, prefix=prefix))
        yield Rig("redis", proxy, make, direct, redis.RedisError, _redis_spot)
        for store in [*stores, direct]:
            store.close()


#: Payloads travel base64-encoded: a write is spotted by its operation (X-Amz-Target). A put
#: over a live item that keeps its expiry, and a compare-and-set that keeps it, are one
#: UpdateItem; a create is one TransactWriteItems with the quota ledger.
_DYNAMODB_OPERATIONS = {
    "put": b"UpdateItem",
    "put_if_version": b"UpdateItem",
    "create": b"TransactWriteItems",
}


def _dynamodb_rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    from botocore.exceptions import BotoCoreError, ClientError

    from support.dynamodb_support import REGION, fresh_table_name
    from taskstore.backends.dynamodb import DynamoDbBackend

    request.getfixturevalue("aws_env")
    local = request.getfixturevalue("dynamodb_local")
    client = request.getfixturevalue("local_client")
    table = fresh_table_name()
    DynamoDbBackend.create_table(table, client=client, ttl=False)
    stores: list[TaskStore] = []
    with Proxy(local.port) as proxy:

        def backend() -> StorageBackend:
            # Two boto3 attempts per request: the backend's own retries until the deadline
            # are what is under test, and boto3's growing sleeps would only slow it down.
            return DynamoDbBackend(
                table,
                region=REGION,
                endpoint_url=f"http://127.0.0.1:{proxy.port}",
                connect_timeout=TIMEOUT_S,
                read_timeout=TIMEOUT_S,
                max_attempts=2,
            )

        make = _maker(backend, stores)

        direct = TaskStore(
            DynamoDbBackend(table, region=REGION, endpoint_url=local.endpoint_url)
        )
        yield Rig(
            "dynamodb_local",
            proxy,
            make,
            direct,
            (BotoCoreError, ClientError),
            lambda verb, marker: _DYNAMODB_OPERATIONS[verb],
        )
        for store in [*stores, direct]:
            store.close()
        client.delete_table(TableName=table)


def _postgres_rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    import psycopg

    from support.postgres_support import fresh_table
    from taskstore.backends.postgres import PostgresBackend

    server = request.getfixturevalue("postgres_server")
    table = fresh_table()
    stores: list[TaskStore] = []
    with Proxy(server.port) as proxy:

        def backend() -> StorageBackend:
            return PostgresBackend.from_url(
                f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres",
                table=table,
                timeout=TIMEOUT_S,
                connect_timeout=1,
            )

        make = _maker(backend, stores)

        direct = TaskStore(PostgresBackend.from_url(server.url, table=table))
        try:
            # Statements are prepared: only their parameters tell writes apart, so a write is
            # spotted by the marker in its payload. Connections are the pool's threads' to
            # open, and they back off: a dozen refusals show the outage has been met.
            yield Rig(
                "postgres",
                proxy,
                make,
                direct,
                psycopg.OperationalError,
                lambda verb, marker: marker,
                outage_rejections=12,
            )
        finally:
            proxy.resume()  # whatever a failed test left behind
            for store in [*stores, direct]:
                store.close()


@dataclass
class ProxiedCluster:
    """A Redis Cluster reachable only through ``proxies``; ``nodes`` maps each proxy's port
    (what the cluster announces) to its node's own port."""

    proxies: ProxyGroup
    nodes: dict[int, int]


@pytest.fixture(scope="module")
def proxied_cluster(request: pytest.FixtureRequest) -> Iterator[ProxiedCluster]:
    """A 3-node Redis Cluster whose nodes announce the ports of their proxies (a group):
    clients reach the cluster only through them. One per module; tests reset the counters."""
    import shutil
    import subprocess

    import redis

    from support.redis_support import RedisServer
    from support.servers import free_port, need_modules, unavailable

    need_modules("redis")
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        unavailable("redis-server and redis-cli are needed (apt-get install -y redis-server)")
    directory = request.getfixturevalue("redis_tmp_dir")
    ports = [free_port(bus=True) for _ in range(3)]
    group = ProxyGroup(ports)
    nodes: list[RedisServer] = []
    try:
        for port, proxy in zip(ports, group.proxies, strict=True):
            node = RedisServer(
                binary,
                port,
                directory,
                (
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", "5000",
                    "--cluster-announce-ip", "127.0.0.1",
                    "--cluster-announce-port", str(proxy.port),
                    "--cluster-announce-bus-port", str(port + 10000),
                ),
            )
            node.start()
            nodes.append(node)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p.port}" for p in group.proxies),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        for node in nodes:
            client = redis.Redis(port=node.port)
            try:
                group.wait_until(lambda c=client: b"cluster_state:ok" in _cluster_info(c), 60)
            finally:
                client.close()
        yield ProxiedCluster(
            group, {p.port: n.port for p, n in zip(group.proxies, nodes, strict=True)}
        )
    finally:
        group.close()
        for node in nodes:
            node.stop()


def _cluster_info(client: Any) -> bytes:
    info = client.execute_command("CLUSTER INFO")
    if isinstance(info, dict):  # redis-py may parse the reply into a dict
        return b"cluster_state:ok" if info.get("cluster_state") in ("ok", b"ok") else b""
    return bytes(info)


def _cluster_rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    import redis
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisClusterException

    from support.redis_support import fresh_prefix
    from taskstore.backends.redis import RedisBackend

    cluster: ProxiedCluster = request.getfixturevalue("proxied_cluster")
    group, nodes = cluster.proxies, cluster.nodes
    group.reset_counts()
    prefix = fresh_prefix()
    stores: list[TaskStore] = []

    def backend() -> StorageBackend:
        return RedisBackend.from_url(
            f"redis://127.0.0.1:{group.proxies[0].port}/0",
            cluster=True,
            prefix=prefix,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
        )

    make = _maker(backend, stores)

    def remap(address: tuple[str, int]) -> tuple[str, int]:
        return (address[0], nodes.get(address[1], address[1]))

    node_port = next(iter(nodes.values()))
    direct_client = RedisCluster(host="127.0.0.1", port=node_port, address_remap=remap)
    direct = TaskStore(RedisBackend(direct_client, prefix=prefix))
    try:
        # A cluster none of whose nodes answers fails as redis-py's cluster root, not RedisError.
        errors = (redis.RedisError, RedisClusterException)
        yield Rig("redis_cluster", group, make, direct, errors, _redis_spot)
    finally:
        group.resume()  # whatever a failed test left behind
        for store in [*stores, direct]:
            store.close()
        direct_client.close()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.redis_server]),
        pytest.param(
            "redis_cluster",
            marks=[pytest.mark.redis, pytest.mark.redis_cluster, pytest.mark.slow],
        ),
        pytest.param("dynamodb_local", marks=[pytest.mark.dynamodb, pytest.mark.dynamodb_local]),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """A server of each kind behind a fresh proxy (the cluster: behind its module's; the
    session's PostgreSQL cluster, with a fresh table)."""
    from support.servers import need_modules

    if request.param == "redis":
        need_modules("redis")
        yield from _redis_rig(request)
    elif request.param == "redis_cluster":
        yield from _cluster_rig(request)
    elif request.param == "dynamodb_local":
        need_modules("boto3")
        yield from _dynamodb_rig(request)
    else:
        need_modules("psycopg", "psycopg_pool")
        yield from _postgres_rig(request)


# -- an outage shorter than the deadline ---------------------------------------------------------


def test_outage_shorter_than_the_deadline_costs_no_errors(rig: Rig) -> None:
    """8 threads creating and completing tasks through an outage (connections reset, over
    and over) that ends well within the 10 s retry deadline: not one error, every reply is
    the right one, and every task is stored completed with its result exactly once."""
    store = rig.make()
    store.list(OWNER)  # connected: the outage has open connections to kill
    rounds = 3

    def work(index: int) -> list[tuple[str, TaskRecord, TaskRecord]]:
        owner = f"owner-{index}"
        done = []
        for round_ in range(rounds):
            created = store.create(owner, request={"i": index, "round": round_})
            completed = store.complete(created.task_id, owner, {"i": index, "round": round_})
            done.append((owner, created, completed))
        return done

    def end_outage() -> None:
        # Every thread's first call is under way: wait until the proxy has turned clients
        # away often enough for all of them to have met the outage, then end it.
        rig.proxy.wait_until(lambda: rig.proxy.rejected >= rig.outage_rejections)
        rig.proxy.resume()

    rig.proxy.outage(refuse=False)  # already down when the threads start
    results = run_barrier_threads(THREADS, work, during=end_outage)
    assert rig.proxy.rejected >= rig.outage_rejections
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    for index, done in enumerate(results):
        assert len(done) == rounds
        for round_, (owner, created, completed) in enumerate(done):
            assert (created.status, created.version) == (TaskStatus.WORKING, 1)
            assert (completed.status, completed.version) == (TaskStatus.COMPLETED, 2)
            assert completed.result == {"i": index, "round": round_}
            assert rig.direct.get(created.task_id, owner).version == 2
            assert rig.direct.get_result(created.task_id, owner).result == completed.result
        listed = rig.direct.list(f"owner-{index}").tasks
        assert sorted(t.task_id for t in listed) == sorted(c.task_id for _, c, _ in done)


# -- an outage longer than the deadline ----------------------------------------------------------


@pytest.mark.parametrize("fault", ["refused", "stalled"])
def test_longer_outage_every_error_resolves_as_applied_says(rig: Rig, fault: str) -> None:
    """4 creates and 4 completes through an outage longer than a 1 s retry deadline all
    fail, within the deadline plus one attempt, with a transient BackendError chaining the
    driver's error. Afterwards what is stored agrees with each error: ``applied=False`` was
    not stored; ``applied=None`` is resolved by reading the task. Refused connections send
    nothing, so all are False; a stall (requests sent, no answer; what it held reaches the
    server late) leaves unknown outcomes. The owner's live tasks (its quota) are exactly the
    creates that succeeded or resolved as applied."""
    store = rig.make(retry_deadline_ms=DEADLINE_MS)
    pending = [store.create(OWNER).task_id for _ in range(THREADS // 2)]

    def act(index: int) -> TaskRecord:
        if index < THREADS // 2:
            return store.create(OWNER, request={"i": index})
        return store.complete(pending[index - THREADS // 2], OWNER, {"i": index})

    if fault == "refused":
        rig.proxy.outage()
    else:
        rig.proxy.stall()
    started = time.monotonic()
    results = run_barrier_threads(THREADS, act)  # each fails after the deadline
    elapsed = time.monotonic() - started
    assert elapsed < _FAIL_FAST_BUDGET_S, f"took {elapsed:.2f}s"
    rig.proxy.resume()
    if fault == "stalled":
        # What the stall held reaches the server (or never will) once its clients are gone;
        # a pool (PostgreSQL's) would keep the connections it opened during the stall.
        store.close()
        rig.proxy.settle()

    stored_creates = 0
    unknown = 0
    for index, result in enumerate(results):
        assert isinstance(result, BackendError), result
        assert result.transient, result
        assert isinstance(result.__cause__, rig.driver_error), result.__cause__
        assert result.task_id is not None
        if result.applied is None:
            unknown += 1
        if index < THREADS // 2:
            try:
                created = rig.direct.get(result.task_id, OWNER)
            except TaskNotFoundError:
                applied = False
            else:
                applied = True
                assert created.request == {"i": index}
                stored_creates += 1
        else:
            assert result.task_id == pending[index - THREADS // 2]
            record = rig.direct.get(result.task_id, OWNER)
            applied = record.status is TaskStatus.COMPLETED
            if applied:
                assert rig.direct.get_result(result.task_id, OWNER).result == {"i": index}
            else:
                assert (record.status, record.version) == (TaskStatus.WORKING, 1)
        if result.applied is False:
            assert not applied, (index, result)
    if fault == "refused":
        assert unknown == 0
    assert len(rig.direct.list(OWNER).tasks) == len(pending) + stored_creates


def test_a_stalled_write_is_unknown_then_resolved_by_reading(rig: Rig) -> None:
    """A create sent on an open connection that a stall holds up fails after the deadline
    with applied=None; the stall then delivers it late, the server applies it, and reading
    the task the error names resolves the outcome: stored once, on every backend."""
    store = rig.make(retry_deadline_ms=DEADLINE_MS)
    store.get(store.create(OWNER).task_id, OWNER)  # an open connection, scripts loaded
    rig.proxy.stall()
    with pytest.raises(BackendError) as info:
        store.create(OWNER, request={"late": True})
    assert info.value.transient and info.value.applied is None
    rig.proxy.resume()
    store.close()  # a pool would keep the connections it opened during the stall
    rig.proxy.settle()
    late = rig.direct.get(info.value.task_id, OWNER)
    assert late.request == {"late": True}
    assert len(rig.direct.list(OWNER).tasks) == 2


# -- a lost reply ----------------------------------------------------------------------------


def test_a_lost_reply_is_recognised_on_retry(rig: Rig) -> None:
    """The server applies a create, then a complete, but the replies never arrive (the
    connection is reset after the request ran): the retry recognises its own write and
    returns the task (version 1, then 2), applied once."""
    store = rig.make()
    # Scripts loaded, statements prepared, connections open: the drop hits the write.
    warm = store.create(OWNER)
    store.complete(warm.task_id, OWNER, None)
    rig.proxy.drop_next_reply(rig.spot("create", b"marker-create"))
    created = store.create(OWNER, request={"x": "marker-create"})
    assert rig.proxy.dropped == 1
    assert (created.status, created.version) == (TaskStatus.WORKING, 1)
    listed = [t.task_id for t in rig.direct.list(OWNER).tasks]
    assert sorted(listed) == sorted([warm.task_id, created.task_id])
    assert rig.direct.get(created.task_id, OWNER).version == 1

    rig.proxy.drop_next_reply(rig.spot("put_if_version", b"marker-complete"))
    completed = store.complete(created.task_id, OWNER, {"ok": "marker-complete"})
    assert rig.proxy.dropped == 2
    assert (completed.status, completed.version) == (TaskStatus.COMPLETED, 2)
    assert completed.result == {"ok": "marker-complete"}
    assert rig.direct.get(created.task_id, OWNER).version == 2
    # A genuinely different second outcome is still refused.
    with pytest.raises(InvalidTransitionError):
        store.complete(created.task_id, OWNER, {"ok": False})


def test_a_lost_reply_of_a_backend_write_is_answered_as_the_first_attempt(rig: Rig) -> None:
    """At the backend level: put, put_if_version and create whose replies are lost return
    the versions their first attempts wrote (3, 4, 1), not a conflict, not a second write."""
    backend = rig.make().backend
    direct = rig.direct.backend
    backend.put((OWNER, "p"), b'{"n":0}', None)
    backend.put_if_version((OWNER, "p"), b'{"n":0}', 1)  # warm: prepared, connections open
    for verb, marker, write, version in (
        ("put", b"lost-put", lambda: backend.put((OWNER, "p"), b'{"m":"lost-put"}', None), 3),
        (
            "put_if_version",
            b"lost-cas",
            lambda: backend.put_if_version((OWNER, "p"), b'{"m":"lost-cas"}', 3),
            4,
        ),
        (
            "create",
            b"lost-new",
            lambda: backend.create((OWNER, "c"), b'{"m":"lost-new"}', None, sort_ms=0, max_live=5),
            1,
        ),
    ):
        dropped = rig.proxy.dropped
        rig.proxy.drop_next_reply(rig.spot(verb, marker))
        assert write() == version
        assert rig.proxy.dropped == dropped + 1, verb
    assert direct.get((OWNER, "p")).version == 4
    assert direct.get((OWNER, "c")).version == 1


# -- waiting across an outage -----------------------------------------------------------------


@pytest.mark.parametrize(("outage_s", "deadline_ms"), [(1.0, 10_000), (2.0, DEADLINE_MS)])
def test_wait_returns_the_completion_across_an_outage(
    rig: Rig, outage_s: float, deadline_ms: int
) -> None:
    """A wait blocked before an outage, whose task is completed during it (straight at the
    server: the waiter hears nothing, and its reads fail meanwhile), re-reads once the proxy
    is back and returns the completed task instead of failing: after a 1 s outage, and after
    a 2 s one that outlasts the 1 s retry deadline (a wait keeps its own timeout)."""
    # A wait re-reads every poll interval (DynamoDB's learns of changes only so): a short
    # one makes it read into the outage.
    store = rig.make(poll_interval_ms=100, retry_deadline_ms=deadline_ms)
    record = store.create(OWNER)
    results: list[Any] = []

    def wait() -> None:
        try:
            results.append(store.wait(record.task_id, OWNER, timeout=60))
        except BaseException as exc:
            results.append(exc)

    sent = rig.proxy.forwarded
    waiter = threading.Thread(target=wait)
    waiter.start()
    rig.proxy.wait_until(lambda: rig.proxy.forwarded > sent)  # the waiter has read the task
    time.sleep(0.2)  # into its wait; the outcome does not depend on it
    rig.proxy.outage(refuse=False)
    rig.direct.complete(record.task_id, OWNER, {"done": True})
    time.sleep(outage_s)  # the outage's length; the outcome must not depend on it
    resumed = time.monotonic()
    rig.proxy.resume()
    assert rig.proxy.rejected > 0  # the waiter's side did try the storage meanwhile
    waiter.join(60)
    assert results and isinstance(results[0], TaskRecord), results
    assert results[0].status is TaskStatus.COMPLETED
    # Woken by a re-read soon after the outage, long before the 60 s timeout.
    assert time.monotonic() - resumed < 15


def test_subscription_delivers_again_after_an_outage(rig: Rig) -> None:
    """A subscriber whose event connection an outage cut reconnects by itself: once the proxy
    is back, changes made by another process reach it again (Redis, and PostgreSQL's LISTEN;
    DynamoDB's events never leave the process, so there is no connection to lose)."""
    if rig.name == "dynamodb_local":
        pytest.skip("DynamoDB events stay within the backend object: no connection to lose")
    store = rig.make()
    seen: list[dict[str, Any]] = []
    store.subscribe(seen.append)  # returns once the subscription is confirmed
    rig.proxy.outage(refuse=False)
    rig.proxy.wait_until(lambda: rig.proxy.rejected > 0)  # the subscriber tried to reconnect
    rig.proxy.resume()

    # Events published before the subscription is back are lost by design: keep finishing
    # tasks until one is delivered (the reconnect takes at most about a second).
    def delivered() -> bool:
        task = rig.direct.create(OWNER)
        rig.direct.cancel(task.task_id, OWNER)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            if any(event["taskId"] == task.task_id for event in seen):
                return True
            time.sleep(0.01)
        return False

    rig.proxy.wait_until(delivered, 20)


def test_a_tool_result_is_stored_after_a_2_s_outage(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A tool that finishes during a 2 s outage (longer than the 1 s retry deadline: the
    runner's first write fails) still gets its result stored once the storage is back: the
    runner keeps retrying until the task expires, and the client then reads it completed."""
    from taskstore.mcp import Caller, McpServer, ToolContext

    store = rig.make(retry_deadline_ms=DEADLINE_MS)
    server = McpServer(store)
    finish = threading.Event()
    finished = threading.Event()

    @server.tool("slow", task_support="required")
    def slow(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        finish.wait(60)
        finished.set()
        return {"answer": 42}

    caller = Caller(owner=OWNER)
    caplog.set_level("WARNING", logger="taskstore.mcp")
    try:
        reply = server.handle(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "slow", "arguments": {}, "task": {"ttl": 60_000}},
            },
            caller=caller,
        )
        assert reply is not None and "result" in reply, reply
        task_id = reply["result"]["task"]["taskId"]
        rig.proxy.outage(refuse=True)  # fail fast: the 1 s deadline, not a socket timeout, decides
        finish.set()
        assert finished.wait(10)
        time.sleep(2.0)  # the outage's length; the outcome must not depend on it
        # The first write gave up at the 1 s deadline: the outcome went to the retries.
        assert any(
            "could not store the outcome of task " + task_id in r.getMessage()
            for r in caplog.records
        )
        rig.proxy.resume()
        deadline = time.monotonic() + 30
        while rig.direct.get(task_id, OWNER).status is not TaskStatus.COMPLETED:
            assert time.monotonic() < deadline, "the result was never stored"
            time.sleep(0.05)
        outcome = rig.direct.get_result(task_id, OWNER)
        assert outcome.kind == "result"
        assert outcome.result["structuredContent"] == {"answer": 42}
    finally:
        server.close()
