"""Faults only PostgreSQL has: real server stops, crashes and restarts (``pg_ctl``) of a
cluster of the test's own, the pool's replacement of the connections they kill, and the one
mapping of driver errors. Outages, stalls and lost replies through a TCP proxy run on
PostgreSQL as on every other server, in ``test_faults_proxy.py``.

Calls must retry transient faults until their deadline and then fail with a transient
``BackendError`` whose ``applied`` agrees with what was stored (never half-applied, never
applied twice), and work again as soon as the server is back: the first call after it is back
succeeds, events and wake-ups resume without help.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from support.servers import require_modules

require_modules("psycopg", "psycopg_pool", markers=["postgres"])

import psycopg

from support.postgres_support import PostgresServer, fresh_table
from taskstore import BackendError, SecurityConfig, StoreConfig, TaskStore
from taskstore.backends.base import now_ms, retrying_until
from taskstore.backends.postgres import PostgresBackend
from taskstore.record import TaskRecord
from taskstore.testing import run_barrier_threads
from taskstore.testing._scan import scan_all

pytestmark = pytest.mark.postgres

OWNER = "alice"
#: The statement timeout of the stores under test: a dead server's call fails fast.
TIMEOUT_S = 0.5
THREADS = 8
#: The shortest retry deadline a store allows.
DEADLINE_MS = 1_000
#: The deadline, one attempt bounded by the 0.5 s timeout, plus slack for a busy machine:
#: well under the 10 s default deadline, so only the configured one explains a pass.
_FAIL_FAST_BUDGET_S = DEADLINE_MS / 1000 + TIMEOUT_S + 2.5


# -- real server stops, crashes and restarts ----------------------------------------------------


def _store(
    server: PostgresServer, table: str, *, max_tasks_per_owner: int | None = None
) -> TaskStore:
    backend = PostgresBackend.from_url(server.url, table=table, timeout=TIMEOUT_S)
    return TaskStore(
        backend,
        config=StoreConfig(retry_deadline_ms=DEADLINE_MS),
        security=SecurityConfig(max_tasks_per_owner=max_tasks_per_owner),
    )


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

            # 1 s: after a broken connection the pool opens a new one within the deadline; at
            # 0.3 s a loaded CI machine once ran out of it first (the cause was PoolTimeout).
            with retrying_until(time.monotonic() + 1.0), pytest.raises(BackendError) as info:
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
