"""Faults on PostgreSQL: outages, stalls and lost replies through a TCP proxy the tests
control (``support.proxy``), and real server stops, crashes and restarts (``pg_ctl``) of a
cluster of the test's own.

Calls must retry transient faults until their deadline and then fail with a transient
``BackendError`` whose ``applied`` agrees with what was stored (never half-applied, never
applied twice), and work again as soon as the server is back: the first call after it is back
succeeds, events and wake-ups resume without help. What was stored is always checked through
a second store that talks to the server directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from support.servers import require_modules

require_modules("psycopg", "psycopg_pool", markers=["postgres"])

import psycopg

from support.postgres_support import PostgresServer, fresh_table
from support.proxy import Proxy
from taskstore import (
    BackendError,
    InvalidTransitionError,
    SecurityConfig,
    StoreConfig,
    TaskNotFoundError,
    TaskStatus,
    TaskStore,
)
from taskstore.backends.base import now_ms, retrying_until
from taskstore.backends.postgres import PostgresBackend
from taskstore.record import TaskRecord
from taskstore.testing import run_barrier_threads
from taskstore.testing._scan import scan_all

pytestmark = pytest.mark.postgres

OWNER = "alice"
#: The statement timeout of the stores under test: a stalled request fails fast.
TIMEOUT_S = 0.5
THREADS = 8
#: The shortest retry deadline a store allows.
DEADLINE_MS = 1_000
#: The deadline, one attempt bounded by the 0.5 s timeout, plus slack for a busy machine:
#: well under the 10 s default deadline, so only the configured one explains a pass.
_FAIL_FAST_BUDGET_S = DEADLINE_MS / 1000 + TIMEOUT_S + 2.5

_STORE_FIELDS = frozenset(StoreConfig.__struct_fields__)


def _split(fields: dict[str, Any]) -> tuple[StoreConfig, SecurityConfig]:
    config = {k: v for k, v in fields.items() if k in _STORE_FIELDS}
    security = {k: v for k, v in fields.items() if k not in _STORE_FIELDS}
    security.setdefault("max_tasks_per_owner", None)
    return StoreConfig(**config), SecurityConfig(**security)


@dataclass
class Rig:
    """A server reached through ``proxy`` by the stores ``make`` builds; ``direct`` talks to
    the same table straight."""

    proxy: Proxy
    make: Callable[..., TaskStore]
    direct: TaskStore


@pytest.fixture
def rig(postgres_server: PostgresServer) -> Iterator[Rig]:
    """The session cluster behind a fresh proxy, and a fresh table."""
    table = fresh_table()
    stores: list[TaskStore] = []
    with Proxy(postgres_server.port) as proxy:

        def make(**fields: Any) -> TaskStore:
            config, security = _split(fields)
            backend = PostgresBackend.from_url(
                f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres",
                table=table,
                timeout=TIMEOUT_S,
                connect_timeout=1,
            )
            store = TaskStore(backend, config=config, security=security)
            stores.append(store)
            return store

        direct = TaskStore(PostgresBackend.from_url(postgres_server.url, table=table))
        try:
            yield Rig(proxy, make, direct)
        finally:
            proxy.resume()  # whatever a failed test left behind
            for store in [*stores, direct]:
                store.close()


# -- through the proxy ---------------------------------------------------------------------------


def test_outage_shorter_than_the_deadline_costs_no_errors(rig: Rig) -> None:
    """8 threads creating and completing tasks through an outage (connections reset, over
    and over) that ends well within the 10 s retry deadline: not one error, every reply is
    the right one, and every task is stored completed with its result exactly once."""
    store = rig.make()
    store.list(OWNER)  # connected: the outage has pooled connections to kill
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
        # The pool's threads keep reconnecting: let them be turned away a dozen times.
        rig.proxy.wait_until(lambda: rig.proxy.rejected >= 12)
        rig.proxy.resume()

    rig.proxy.outage(refuse=False)  # already down when the threads start
    results = run_barrier_threads(THREADS, work, during=end_outage)
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


@pytest.mark.parametrize("fault", ["refused", "stalled"])
def test_longer_outage_every_error_resolves_as_applied_says(rig: Rig, fault: str) -> None:
    """4 creates and 4 completes through an outage longer than a 1 s retry deadline all
    fail with a transient BackendError. Afterwards what is stored agrees with each error:
    ``applied=False`` was not stored; ``applied=None`` is resolved by reading the task.
    Refused connections send nothing, so all are False; a stall (statements sent, no answer
    within the 0.5 s timeout; what it held reaches the server late) leaves unknown outcomes.
    The owner's live tasks are exactly the creates that succeeded or resolved as applied."""
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
    assert time.monotonic() - started < _FAIL_FAST_BUDGET_S
    rig.proxy.resume()
    if fault == "stalled":
        # What the stall held reaches the server (or never will) once its clients are gone;
        # the store's pool would keep the connections it opened during the stall.
        store.close()
        rig.proxy.settle()

    stored_creates = 0
    unknown = 0
    for index, result in enumerate(results):
        assert isinstance(result, BackendError), result
        assert result.transient, result
        assert isinstance(result.__cause__, psycopg.OperationalError)
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
    the task the error names resolves the outcome: stored once."""
    store = rig.make(retry_deadline_ms=DEADLINE_MS)
    store.get(store.create(OWNER).task_id, OWNER)  # an open connection
    rig.proxy.stall()
    with pytest.raises(BackendError) as info:
        store.create(OWNER, request={"late": True})
    assert info.value.transient and info.value.applied is None
    rig.proxy.resume()
    store.close()  # its pool would keep the connections it opened during the stall
    rig.proxy.settle()
    late = rig.direct.get(info.value.task_id, OWNER)
    assert late.request == {"late": True}
    assert len(rig.direct.list(OWNER).tasks) == 2


def test_a_lost_reply_is_recognised_on_retry(rig: Rig) -> None:
    """The server applies a create, then a complete, but the replies never arrive (the
    connection is reset after the statement ran): the retry recognises its own write token
    and returns the task (version 1, then 2), applied once."""
    store = rig.make()
    warm = store.create(OWNER)  # connections open and statements prepared: the drop hits a write
    store.complete(warm.task_id, OWNER, None)
    rig.proxy.drop_next_reply(b"marker-create")
    created = store.create(OWNER, request={"x": "marker-create"})
    assert rig.proxy.dropped == 1
    assert (created.status, created.version) == (TaskStatus.WORKING, 1)
    listed = [t.task_id for t in rig.direct.list(OWNER).tasks]
    assert sorted(listed) == sorted([warm.task_id, created.task_id])
    assert rig.direct.get(created.task_id, OWNER).version == 1

    rig.proxy.drop_next_reply(b"marker-complete")
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
    the versions their first attempts wrote (2, 3, 1), not a conflict, not a second write."""
    backend = rig.make().backend
    direct = rig.direct.backend
    backend.put((OWNER, "p"), b'{"n":0}', None)
    backend.put_if_version((OWNER, "p"), b'{"n":0}', 1)  # warm: prepared, connections open
    for marker, write, version in (
        (b"lost-put", lambda: backend.put((OWNER, "p"), b'{"m":"lost-put"}', None), 3),
        (b"lost-cas", lambda: backend.put_if_version((OWNER, "p"), b'{"m":"lost-cas"}', 3), 4),
        (b"lost-new", lambda: backend.create((OWNER, "c"), b'{"m":"lost-new"}', None,
                                             sort_ms=0, max_live=5), 1),
    ):
        dropped = rig.proxy.dropped
        rig.proxy.drop_next_reply(marker)
        assert write() == version
        assert rig.proxy.dropped == dropped + 1
    assert direct.get((OWNER, "p")).version == 4
    assert direct.get((OWNER, "c")).version == 1


def test_wait_returns_the_completion_across_an_outage(rig: Rig) -> None:
    """A wait blocked before an outage, whose task is completed during it (straight at the
    server: the waiter hears nothing, its reads fail meanwhile), re-reads once the proxy is
    back and returns the completed task instead of failing, though the 2 s outage outlasts
    the 1 s retry deadline."""
    store = rig.make(poll_interval_ms=100, retry_deadline_ms=DEADLINE_MS)
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
    time.sleep(2.0)  # the outage's length; the outcome must not depend on it
    resumed = time.monotonic()
    rig.proxy.resume()
    assert rig.proxy.rejected > 0  # the waiter's side did try the server meanwhile
    waiter.join(60)
    assert results and isinstance(results[0], TaskRecord), results
    assert results[0].status is TaskStatus.COMPLETED
    assert time.monotonic() - resumed < 15


def test_subscription_delivers_again_after_an_outage(rig: Rig) -> None:
    """A subscriber whose LISTEN connection an outage cut reconnects by itself: once the
    proxy is back, changes made elsewhere reach it again."""
    store = rig.make()
    seen: list[dict[str, Any]] = []
    store.subscribe(seen.append)  # returns once LISTEN is in place
    rig.proxy.outage(refuse=False)
    rig.proxy.wait_until(lambda: rig.proxy.rejected > 0)  # the listener tried to reconnect
    rig.proxy.resume()

    # Notifications sent before LISTEN is back are lost by design: keep finishing tasks until
    # one is delivered (the reconnect takes about a second at most).
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


# -- real server stops, crashes and restarts ----------------------------------------------------


def _store(server: PostgresServer, table: str, **fields: Any) -> TaskStore:
    config, security = _split({"retry_deadline_ms": DEADLINE_MS, **fields})
    backend = PostgresBackend.from_url(server.url, table=table, timeout=TIMEOUT_S)
    return TaskStore(backend, config=config, security=security)


def _fails_fast(action: Callable[[], object]) -> BackendError:
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        action()
    elapsed = time.monotonic() - started
    assert elapsed < _FAIL_FAST_BUDGET_S, f"took {elapsed:.2f}s"
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    return info.value


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stopped_server_fails_fast_then_the_first_call_after_restart_succeeds(
    dedicated_postgres_server: PostgresServer, mode: str
) -> None:
    """With the server stopped (or crashed) every store call raises a transient BackendError
    once its 1 s deadline has passed, with applied=False (nothing could be sent), and a wait
    rides the outage out until its own timeout; once the server is back on the same port,
    the very first call succeeds (the pool's dead connections replaced without costing it an
    attempt), and the data from before is all there."""
    server = dedicated_postgres_server
    table = fresh_table()
    with _store(server, table) as store:
        task = store.create(OWNER)
        server.stop(mode)
        actions: list[Callable[[], object]] = [
            lambda: store.get(task.task_id, OWNER),
            lambda: store.create(OWNER),
            lambda: store.list(OWNER),
            lambda: store.set_variables(task.task_id, OWNER, {"k": 1}),
            lambda: store.complete(task.task_id, OWNER, {"ok": True}),
            store.cleanup_expired,
        ]
        # A crash is a stop as far as the calls can tell: two kinds of call suffice there.
        for action in actions if mode == "fast" else actions[:2]:
            error = _fails_fast(action)
            assert error.transient and error.applied is False
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            store.wait(task.task_id, OWNER, timeout=1.5)
        assert 1.5 <= time.monotonic() - started < 1.5 + _FAIL_FAST_BUDGET_S
        server.start()
        done = store.complete(task.task_id, OWNER, {"ok": True})  # the first call: succeeds
        assert done.version == 2
        fresh = store.create(OWNER)
        assert sorted(t.task_id for t in store.list(OWNER).tasks) == sorted(
            [task.task_id, fresh.task_id]
        )


def test_idle_connections_killed_by_a_restart_cost_no_attempt(
    dedicated_postgres_server: PostgresServer,
) -> None:
    """After a restart while the backend was idle its pool holds only dead connections: the
    first writes, on 8 threads at once and each allowed a single attempt (a retry deadline
    already past), all succeed: dead connections are seen without a round trip and
    replaced, never spent on an attempt."""
    server = dedicated_postgres_server
    backend = PostgresBackend.from_url(server.url, table=fresh_table(), pool_max=THREADS)
    try:
        results = run_barrier_threads(
            THREADS, lambda i: backend.put((OWNER, f"t{i}"), b"{}", None)
        )
        assert results == [1] * THREADS  # the pool holds several connections now
        server.restart()

        def write(index: int) -> int:
            with retrying_until(time.monotonic()):  # one attempt only
                return backend.put((OWNER, f"t{index}"), b"{}", None)

        assert run_barrier_threads(THREADS, write) == [2] * THREADS
    finally:
        backend.close()


def test_restart_during_a_run_is_never_half_applied(
    dedicated_postgres_server: PostgresServer,
) -> None:
    """8 threads keep creating tasks (under a quota) while the server is stopped for longer than
    their 1 s deadline and started again: calls during the outage fail fast with a transient
    BackendError; every success is stored, no ``applied=False`` failure is, each
    ``applied=None`` one is stored at most once; the owner's live tasks are exactly the
    stored ones; after the restart every thread's next call succeeds."""
    server = dedicated_postgres_server
    table = fresh_table()
    stop_after = threading.Event()
    restarted = threading.Event()

    with _store(server, table, max_tasks_per_owner=100_000) as store:
        direct = PostgresBackend.from_url(server.url, table=table)

        def work(index: int) -> list[Any]:
            outcomes: list[Any] = []
            after_restart = 0
            while after_restart < 3:
                try:
                    outcomes.append(store.create(OWNER, request={"i": index}))
                except BackendError as exc:
                    outcomes.append(exc)
                if len(outcomes) == 5:
                    stop_after.set()
                if restarted.is_set():
                    after_restart += 1
            return outcomes

        def restart() -> None:
            stop_after.wait(30)
            server.stop("fast")
            time.sleep(2.0)  # longer than the deadline; the outcome does not depend on it
            server.start()
            restarted.set()

        results = run_barrier_threads(THREADS, work, during=restart)
        try:
            stored = {r.key[1] for r in scan_all(direct, 1000, now_ms(None))[0]}
        finally:
            direct.close()
        successes = [o for outcomes in results for o in outcomes if isinstance(o, TaskRecord)]
        errors = [o for outcomes in results for o in outcomes if isinstance(o, BaseException)]
        assert errors, "no call met the outage"
        assert all(isinstance(e, BackendError) and e.transient for e in errors), errors
        assert {s.task_id for s in successes} <= stored
        unknown = [e for e in errors if e.applied is None]
        assert not {e.task_id for e in errors if e.applied is False} & stored
        assert len(stored) == len(successes) + len({e.task_id for e in unknown} & stored)
        listed: list[str] = []
        cursor = None
        while True:
            page = store.list(OWNER, cursor)
            listed += [task.task_id for task in page.tasks]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(listed) == sorted(stored)
        for outcomes in results:
            # The last three calls of every thread came after the restart: all succeeded.
            assert all(isinstance(o, TaskRecord) for o in outcomes[-3:]), outcomes[-3:]


def test_listener_and_waits_resume_after_a_restart(
    dedicated_postgres_server: PostgresServer,
) -> None:
    """A subscriber's LISTEN connection, cut by a server restart, comes back by itself:
    events written after the restart reach it; and a wait blocked when the server went down
    returns (early: its caller re-reads) instead of sleeping through its timeout."""
    server = dedicated_postgres_server
    table = fresh_table()
    with _store(server, table) as store, _store(server, table) as writer:
        seen: list[dict[str, Any]] = []
        store.subscribe(seen.append)
        backend = store.backend
        returned: list[float] = []

        def wait() -> None:
            backend.wait_for_change((OWNER, "nothing"), 0, 30.0)
            returned.append(time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)  # into its wait; the outcome does not depend on it
        stopped = time.monotonic()
        server.restart()
        waiter.join(40)
        assert returned and returned[0] - stopped < 10

        def delivered() -> bool:
            try:
                task = writer.create(OWNER)
                writer.cancel(task.task_id, OWNER)
            except BackendError:
                return False
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                if any(event["taskId"] == task.task_id for event in seen):
                    return True
                time.sleep(0.01)
            return False

        deadline = time.monotonic() + 20
        while not delivered():
            assert time.monotonic() < deadline, "no event after the restart"


# -- the one mapping of driver errors --------------------------------------------------------------


def _classes() -> list[tuple[BaseException, bool]]:
    from psycopg_pool import PoolTimeout

    errors = psycopg.errors
    return [
        (psycopg.OperationalError("connection lost"), True),
        (errors.ConnectionFailure(), True),
        (errors.SerializationFailure(), True),
        (errors.DeadlockDetected(), True),
        (errors.AdminShutdown(), True),
        (errors.CannotConnectNow(), True),
        (errors.TooManyConnections(), True),
        (PoolTimeout("no connection"), True),
        (ConnectionResetError(), True),
        (errors.InvalidPassword(), False),
        (errors.UndefinedTable(), False),
        (errors.SyntaxError(), False),
        (errors.InsufficientPrivilege(), False),
        (errors.QueryCanceled(), False),
        (psycopg.InterfaceError("misuse"), False),
        (psycopg.DatabaseError("other"), False),
    ]


def test_every_driver_error_becomes_a_classified_backend_error(
    backend_factory_postgres: Callable[..., PostgresBackend],
) -> None:
    """Every driver exception a statement raises (psycopg's tree, the pool's timeout,
    OSError) comes out as one BackendError with it chained: transient ones after retrying
    until the deadline, permanent ones at the first attempt; a read is never "applied", a
    write the server answered with an error was rolled back (False), one without an answer
    may have been applied (None)."""
    from taskstore.backends._postgres_faults import is_transient

    backend = backend_factory_postgres()
    retrier = backend._retrier
    for error, transient in _classes():
        assert is_transient(error) is transient, error
        for write in (False, True):
            attempts: list[float] = []

            def fail(conn: object, error: BaseException = error, attempts: Any = attempts) -> Any:
                attempts.append(time.monotonic())
                raise error

            with retrying_until(time.monotonic() + 0.3), pytest.raises(BackendError) as info:
                retrier.call("probe", fail, write=write)
            assert info.value.__cause__ is error
            assert info.value.transient is transient
            assert (len(attempts) > 1) is transient, (error, len(attempts))
            # Errors made here carry no severity: those with a SQLSTATE count as answered.
            answered = isinstance(error, psycopg.Error) and error.sqlstate is not None
            expected = None if write and not answered else False
            assert info.value.applied is expected, (error, write)


def test_a_transient_error_is_retried_to_success(
    backend_factory_postgres: Callable[..., PostgresBackend],
) -> None:
    """A statement that fails twice with a serialization failure, then succeeds, returns
    its result: retries are invisible to the caller."""
    backend = backend_factory_postgres()
    failures = [psycopg.errors.SerializationFailure(), psycopg.errors.DeadlockDetected()]

    def flaky(conn: psycopg.Connection[Any]) -> int:
        if failures:
            raise failures.pop()
        row = conn.execute("SELECT 42").fetchone()
        assert row is not None
        return int(row[0])

    assert backend._retrier.call("probe", flaky, write=True) == 42
    assert failures == []


@pytest.mark.parametrize("driver", ["psycopg", "psycopg_pool"])
def test_import_without_the_driver_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    """Importing the backend without psycopg (or psycopg_pool) raises
    MissingDependencyError (an ImportError) naming pip install 'taskstore[postgres]', with no
    chained cause."""
    import importlib
    import sys

    from taskstore.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, driver, None)
    monkeypatch.delitem(sys.modules, "taskstore.backends.postgres")
    with pytest.raises(MissingDependencyError) as info:
        importlib.import_module("taskstore.backends.postgres")
    assert "pip install 'taskstore[postgres]'" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert info.value.__cause__ is None and info.value.__suppress_context__
