"""SQLite-specific behaviour of ``SqliteBackend`` beyond the shared contract suite: URLs and
options, the schema and its version, independent tables on one file, keys no text encoding
holds, statements per operation and their query plans, a locked file, connections and close,
events across objects, and races, waits and events across real processes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskstore
from support.servers import fresh_name
from support.sqlite_support import SqliteFactory, fresh_sqlite_path
from support.sqlite_workers import (
    OWNER,
    compare_and_set,
    create_many,
    init_worker,
    listen,
    wait_for_write,
    write_events,
)
from taskstore import ManualClock, TaskStatus
from taskstore.backends import open_backend
from taskstore.backends._sql import SQLITE_SCHEMA_VERSION as SCHEMA_VERSION
from taskstore.backends._sql import SchemaManagedBackend
from taskstore.backends.base import (
    ListPosition,
    ScanningBackend,
    StorageBackend,
    encode_scan_cursor,
    retrying_until,
)
from taskstore.backends.sqlite import SqliteBackend
from taskstore.errors import (
    BackendError,
    ConfigurationError,
    InvalidCursorError,
    QuotaExceededError,
    RecordNotFound,
    VersionConflict,
)
from taskstore.testing import FUTURE, T0
from taskstore.testing._scan import scan_all
from taskstore.testing._support import data, wait_until

pytestmark = pytest.mark.sqlite

META_TABLE = "taskstore__schema"


@pytest.fixture
def make(backend_factory_sqlite: SqliteFactory) -> SqliteFactory:
    """``make(**options)``: a SqliteBackend on a fresh file (``path=`` shares one)."""
    return backend_factory_sqlite


@pytest.fixture
def backend(make: SqliteFactory) -> SqliteBackend:
    """A fresh SqliteBackend (closed by its factory)."""
    return make()


def _connect(path: str | Path) -> sqlite3.Connection:
    """A plain connection of the test's own to the backend's file."""
    return sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)


# -- URLs, options, the protocol ---------------------------------------------------------------


def test_backend_satisfies_the_protocols(backend: SqliteBackend) -> None:
    """SqliteBackend is a StorageBackend, a ScanningBackend and a SchemaManagedBackend, with no
    backend-specific size caps and a repr that names the file and table."""
    assert isinstance(backend, StorageBackend)
    assert isinstance(backend, ScanningBackend)
    assert isinstance(SqliteBackend, SchemaManagedBackend)
    assert backend.max_variable_bytes is None and backend.max_result_bytes is None
    assert repr(backend) == f"SqliteBackend(path={backend.path!r}, table='taskstore_tasks')"


def test_url_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three slashes and a relative path name a file under the working directory, four
    slashes an absolute path (SQLAlchemy's convention); percent-escapes are decoded."""
    monkeypatch.chdir(tmp_path)
    relative = SqliteBackend.from_url("sqlite:///sub%20dir.db")
    try:
        assert relative.path == str(Path("sub dir.db").resolve())
        assert (tmp_path / "sub dir.db").exists()
    finally:
        relative.close()
    absolute_path = tmp_path / "abs.db"
    absolute = open_backend(f"sqlite:///{absolute_path}")
    try:
        assert isinstance(absolute, SqliteBackend)
        assert absolute.path == str(absolute_path)
        assert str(absolute_path).startswith("/")
        assert absolute_path.exists()
    finally:
        absolute.close()


def test_url_options_and_keywords(tmp_path: Path) -> None:
    """Query parameters set the options, keywords beat them, and the table name is folded to
    lower case as SQLite folds identifiers."""
    url = f"sqlite:///{tmp_path}/o.db?table=Jobs&busy_timeout_ms=250&poll_interval_s=0.2"
    backend = SqliteBackend.from_url(url, busy_timeout_ms=300)
    try:
        assert backend.table == "jobs"
        assert backend._db.busy_timeout_ms == 300
        assert backend._poller._interval_s == 0.2
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("sqlite:///{dir}/a.db?colour=blue", {}, "Unknown option"),
        ("sqlite:///{dir}/a.db", {"retry_deadline_ms": 5}, "Unknown option"),
        ("sqlite:///{dir}/a.db?busy_timeout_ms=soon", {}, "busy_timeout_ms"),
        ("sqlite:///{dir}/a.db?busy_timeout_ms=-1", {}, "busy_timeout_ms"),
        ("sqlite:///{dir}/a.db?create_schema=maybe", {}, "create_schema"),
        ("sqlite:///{dir}/a.db?poll_interval_s=0", {}, "poll_interval_s"),
        ("sqlite:///{dir}/a.db?table=a-b", {}, "table"),
        ("sqlite:///{dir}/a.db?table=a__b", {}, "table"),
        ("sqlite:///{dir}/a.db?table=sqlite_x", {}, "table"),
        ("sqlite:///{dir}/a.db?table=" + "a" * 49, {}, "table"),
        ("sqlite://host/{dir}/a.db", {}, "host"),
        ("sqlite://", {}, "needs a file"),
        ("sqlite:///", {}, "needs a file"),
        ("sqlite:///:memory:", {}, "file path"),
    ],
)
def test_bad_urls_and_options_are_configuration_errors(
    tmp_path: Path, url: str, options: dict[str, Any], message: str
) -> None:
    """Unknown options, bad values, a host, no file or ``:memory:`` are ConfigurationError
    naming the problem, and no file is created."""
    with pytest.raises(ConfigurationError, match=message):
        SqliteBackend.from_url(url.format(dir=tmp_path), **options)
    assert not (tmp_path / "a.db").exists()


def test_open_hands_store_options_to_the_store(tmp_path: Path) -> None:
    """``taskstore.open`` keeps store settings (``retry_deadline_ms``, the quota) out of the
    backend's options and gives a working store, its quota enforced."""
    url = f"sqlite:///{tmp_path}/store.db?retry_deadline_ms=1500&max_tasks_per_owner=2&table=t"
    with taskstore.open(url, clock=ManualClock(T0)) as store:
        assert isinstance(store.backend, SqliteBackend)
        assert store.config.retry_deadline_ms == 1500
        first = store.create("alice")
        store.create("alice")
        with pytest.raises(QuotaExceededError):
            store.create("alice")
        store.complete(first.task_id, "alice", {"ok": True})
        assert store.wait(first.task_id, "alice", timeout=5).status is TaskStatus.COMPLETED


# -- the schema --------------------------------------------------------------------------------


def test_schema_version_is_recorded_per_table(tmp_path: Path, make: SqliteFactory) -> None:
    """Opening creates the schema once, WAL mode included, and records its version per table
    in the file's version table."""
    path = tmp_path / "s.db"
    make(path=path, table="one")
    make(path=path, table="two")
    make(path=path, table="one")  # opening again changes nothing
    conn = _connect(path)
    try:
        rows = conn.execute(f"SELECT table_name, version FROM {META_TABLE}").fetchall()
        assert sorted(rows) == [("one", SCHEMA_VERSION), ("two", SCHEMA_VERSION)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_schema_of_another_version_is_refused(tmp_path: Path, make: SqliteFactory) -> None:
    """A file holding the store at another schema version is ConfigurationError naming the
    version found and the schema command; create_schema refuses it too, changing nothing."""
    path = tmp_path / "v.db"
    make(path=path).close()
    conn = _connect(path)
    try:
        conn.execute(f"UPDATE {META_TABLE} SET version = 99")
    finally:
        conn.close()
    with pytest.raises(ConfigurationError, match=r"version 99.*python -m taskstore sql"):
        SqliteBackend(path)
    with pytest.raises(ConfigurationError, match="version 99"):
        SqliteBackend.create_schema(f"sqlite:///{path}")
    with pytest.raises(ConfigurationError, match="version 99"):
        SqliteBackend(path, create_schema=False)
    # Another table on the same file is another store: unaffected.
    make(path=path, table="other").close()


def test_missing_schema_without_create_schema_is_refused(tmp_path: Path) -> None:
    """With create_schema=false a file without the store's schema is ConfigurationError naming
    ``python -m taskstore sql create-schema``, and nothing is created."""
    path = tmp_path / "m.db"
    with pytest.raises(ConfigurationError, match="python -m taskstore sql create-schema"):
        SqliteBackend.from_url(f"sqlite:///{path}?create_schema=false")
    conn = _connect(path)
    try:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    finally:
        conn.close()


def test_create_schema_is_idempotent_then_open_without_creating(tmp_path: Path) -> None:
    """``create_schema(url)`` creates the URL's table once (again: a no-op), after which a
    backend opens with create_schema=false and works."""
    url = f"sqlite:///{tmp_path}/c.db?table=jobs"
    SqliteBackend.create_schema(url)
    SqliteBackend.create_schema(url)
    backend = SqliteBackend.from_url(url, create_schema=False)
    try:
        assert backend.put(("alice", "t"), data(1), None, sort_ms=T0, now_ms=T0) == 1
    finally:
        backend.close()
    with pytest.raises(ConfigurationError):
        SqliteBackend.from_url(f"sqlite:///{tmp_path}/c.db?table=other", create_schema=False)


def _exercise(backend: SqliteBackend) -> None:
    """Every kind of operation once, with the results the contract promises."""
    key = ("alice", "t1")
    assert backend.create(key, data(1), FUTURE, sort_ms=T0, max_live=2, now_ms=T0) == 1
    assert backend.put_if_version(key, data(2), 1, outcome=b'{"r":1}', now_ms=T0) == 2
    assert backend.put(("alice", "t2"), data(3), T0 + 5, sort_ms=T0 + 1, now_ms=T0) == 1
    assert backend.get(key, include_outcome=True, now_ms=T0).outcome == b'{"r":1}'
    assert [r.key[1] for r in backend.list_by_prefix("alice", now_ms=T0)] == ["t2", "t1"]
    assert len(scan_all(backend, 1, T0)[0]) == 2
    assert backend.cleanup_expired(T0 + 5) == 1
    assert backend.delete(key) is True


@pytest.mark.parametrize("table", [None, "jobs"])
def test_schema_sql_builds_a_working_store(tmp_path: Path, table: str | None) -> None:
    """``schema_sql(url)`` is complete and idempotent: executed twice as a script on a fresh
    file (no backend involved), it gives a store that opens with create_schema=false and
    works; it names the URL's table and nothing but SQL."""
    path = tmp_path / "sql.db"
    query = f"?table={table}" if table else ""
    sql = SqliteBackend.schema_sql(f"sqlite:///{path}{query}")
    assert f'"{table or "taskstore_tasks"}"' in sql
    assert "PRAGMA" not in sql and "--" not in sql
    conn = _connect(path)
    try:
        conn.executescript(sql)
        conn.executescript(sql)
    finally:
        conn.close()
    backend = SqliteBackend(path, table=table or "taskstore_tasks", create_schema=False)
    try:
        _exercise(backend)
    finally:
        backend.close()


def test_schema_sql_runs_in_the_sqlite3_shell(tmp_path: Path) -> None:
    """``sqlite3 FILE < schema.sql`` applies the printed schema as it is."""
    shell = shutil.which("sqlite3")
    if shell is None:
        pytest.skip("the sqlite3 shell is not installed (apt-get install -y sqlite3)")
    path = tmp_path / "shell.db"
    sql = SqliteBackend.schema_sql(f"sqlite:///{path}")
    subprocess.run([shell, str(path)], input=sql.encode(), check=True, timeout=30)
    backend = SqliteBackend(path, create_schema=False)
    try:
        _exercise(backend)
    finally:
        backend.close()


def test_schema_sql_refuses_bad_urls() -> None:
    """``schema_sql`` checks the URL and options as ``from_url`` does."""
    with pytest.raises(ConfigurationError):
        SqliteBackend.schema_sql("sqlite:///x.db?table=no-dashes")
    with pytest.raises(ConfigurationError):
        SqliteBackend.schema_sql("sqlite:///x.db?nope=1")
    with pytest.raises(ConfigurationError):
        SqliteBackend.schema_sql("sqlite://")


def test_a_file_that_is_not_a_database_is_a_backend_error(tmp_path: Path) -> None:
    """A file SQLite cannot read, or a path it cannot open, is BackendError (not transient)
    with the driver's exception chained, never a raw sqlite3 error."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(BackendError) as info:
        SqliteBackend(junk)
    assert info.value.transient is False
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    with pytest.raises(BackendError) as info:
        SqliteBackend(tmp_path / "no-such-dir" / "x.db")
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_driver_errors_during_calls_are_backend_errors(backend: SqliteBackend) -> None:
    """A table dropped underneath the backend makes every operation a BackendError with the
    driver's exception chained (reads and writes alike), never a raw sqlite3 error."""
    backend.put(("alice", "t"), data(1), None, sort_ms=T0, now_ms=T0)
    conn = _connect(backend.path)
    try:
        conn.execute(f'DROP TABLE "{backend.table}"')
    finally:
        conn.close()
    calls: list[Callable[[], object]] = [
        lambda: backend.get(("alice", "t"), now_ms=T0),
        lambda: backend.put(("alice", "t"), data(2), None, now_ms=T0),
        lambda: backend.put_if_version(("alice", "t"), data(2), 1, now_ms=T0),
        lambda: backend.create(("alice", "u"), data(2), None, sort_ms=T0, now_ms=T0),
        lambda: backend.delete(("alice", "t")),
        lambda: backend.list_by_prefix("alice", now_ms=T0),
        lambda: backend.scan(None, 5, now_ms=T0),
        lambda: backend.cleanup_expired(T0),
        lambda: backend.wait_for_change(("alice", "t"), 1, 0.1),
    ]
    for call in calls:
        with pytest.raises(BackendError) as info:
            call()
        assert isinstance(info.value.__cause__, sqlite3.Error)
        assert info.value.applied is False


# -- tables, keys, ordering ---------------------------------------------------------------------


def test_two_tables_on_one_file_are_independent(tmp_path: Path, make: SqliteFactory) -> None:
    """Two table names on one file are two stores: the same key holds different records,
    each has its own quota, and each hears only its own events (across objects too)."""
    path = tmp_path / "two.db"
    one, two = make(path=path, table="one"), make(path=path, table="two")
    one_again = make(path=path, table="one", poll_interval_s=0.01)
    heard_one: list[bytes] = []
    heard_two: list[bytes] = []
    one_again.add_listener(heard_one.append)
    two.add_listener(heard_two.append)
    key = ("alice", "t")
    one.create(key, data("one"), None, sort_ms=T0, max_live=1, event=b"e-one", now_ms=T0)
    two.create(key, data("two"), None, sort_ms=T0, max_live=1, event=b"e-two", now_ms=T0)
    assert one.get(key, now_ms=T0).data == data("one")
    assert two.get(key, now_ms=T0).data == data("two")
    with pytest.raises(QuotaExceededError):
        one.create(("alice", "u"), data(0), None, sort_ms=T0, max_live=1, now_ms=T0)
    assert two.delete(key)
    assert two.create(("alice", "u"), data(0), None, sort_ms=T0, max_live=1, now_ms=T0) == 1
    assert one.get(key, now_ms=T0).version == 1
    assert wait_until(lambda: heard_one == [b"e-one"] and heard_two == [b"e-two"])
    time.sleep(0.1)  # several poll intervals: nothing more arrives
    assert (heard_one, heard_two) == ([b"e-one"], [b"e-two"])


OWNERS_NO_ENCODING_HOLDS = ["a\x00b", "\x00", "a\ud800b", "\udfff", "\U0001f600", "", "a"]


def test_nul_and_surrogate_owners_and_task_ids(backend: SqliteBackend) -> None:
    """Owners and task ids with NUL, lone surrogates and astral characters round-trip through
    every operation and never see each other's records (keys are BLOBs, not text)."""
    for i, owner in enumerate(OWNERS_NO_ENCODING_HOLDS):
        for j, task_id in enumerate(OWNERS_NO_ENCODING_HOLDS):
            backend.create((owner, task_id), data(f"{i}-{j}"), None, sort_ms=T0, now_ms=T0)
    for i, owner in enumerate(OWNERS_NO_ENCODING_HOLDS):
        for j, task_id in enumerate(OWNERS_NO_ENCODING_HOLDS):
            record = backend.get((owner, task_id), now_ms=T0)
            assert (record.key, record.data) == ((owner, task_id), data(f"{i}-{j}"))
        listed = backend.list_by_prefix(owner, limit=100, now_ms=T0)
        assert {r.key for r in listed} == {(owner, t) for t in OWNERS_NO_ENCODING_HOLDS}
        assert backend.put_if_version((owner, "\udfff"), data("x"), 1, now_ms=T0) == 2
    scanned = [r.key for r in scan_all(backend, 5, T0)[0]]
    assert len(scanned) == len(OWNERS_NO_ENCODING_HOLDS) ** 2
    # Scan order is code point order of owner, then task id.
    assert scanned == sorted(scanned)
    assert backend.delete(("a\x00b", "\udfff")) is True
    with pytest.raises(RecordNotFound):
        backend.get(("a\x00b", "\udfff"), now_ms=T0)


def test_listing_ties_follow_code_point_order(backend: SqliteBackend) -> None:
    """Records with one sort key list by task id descending in code point order (UTF-8 bytes
    with surrogatepass compare as code points do), and page through the ties by keyset."""
    ids = ["a", "b", "\x00", "\ud800", "\ue000", "\uffff", "\U0001f600", "ab", "a\x00"]
    for i, task_id in enumerate(ids):
        backend.put(("alice", task_id), data(i), None, sort_ms=T0, now_ms=T0)
    listed = [r.key[1] for r in backend.list_by_prefix("alice", limit=100, now_ms=T0)]
    assert listed == sorted(ids, reverse=True)
    paged: list[str] = []
    after = None
    while True:
        page = backend.list_by_prefix("alice", after, 2, now_ms=T0)
        paged += [r.key[1] for r in page]
        if len(page) < 2:
            break
        after = ListPosition(page[-1].sort_ms, page[-1].key[1])
    assert paged == listed


def test_stale_anchor_whose_sort_key_moved_is_not_found(backend: SqliteBackend) -> None:
    """An anchor whose record is live but now sorts elsewhere is stale too."""
    backend.put(("alice", "a"), data(1), None, sort_ms=T0, now_ms=T0)
    backend.put(("alice", "b"), data(2), None, sort_ms=T0 + 1, now_ms=T0)
    backend.put(("alice", "a"), data(3), None, sort_ms=T0 + 5, now_ms=T0)
    with pytest.raises(RecordNotFound):
        backend.list_by_prefix("alice", ListPosition(T0, "a"), 5, now_ms=T0)
    after_a = backend.list_by_prefix("alice", ListPosition(T0 + 5, "a"), 0, now_ms=T0)
    assert after_a == []


@pytest.mark.parametrize(
    "cursor",
    [
        encode_scan_cursor(("m1", 0, b"a", T0, b"t")),
        encode_scan_cursor(("r1", 3, b"a:t")),
        encode_scan_cursor(("s1", "a", "t")),
        encode_scan_cursor(("s1", b"a")),
    ],
)
def test_other_backends_scan_cursors_are_invalid(backend: SqliteBackend, cursor: str) -> None:
    """Another backend's cursor, or one of the right tag but the wrong shape, is
    InvalidCursorError."""
    with pytest.raises(InvalidCursorError):
        backend.scan(cursor, 5, now_ms=T0)


# -- statements per operation -------------------------------------------------------------------


@pytest.fixture
def traced(backend: SqliteBackend) -> Iterator[tuple[SqliteBackend, list[str]]]:
    """The backend and the list every SQL statement it runs from now on is appended to."""
    statements: list[str] = []
    backend._set_trace(statements.append)
    yield backend, statements
    backend._set_trace(None)


def _run(statements: list[str], call: Callable[[], object]) -> list[str]:
    """The statements ``call`` sends. SQLite traces a statement again for each step of a
    trigger it fires (the owner-count triggers): those repeats are one statement sent."""
    statements.clear()
    try:
        call()
    except (VersionConflict, QuotaExceededError, RecordNotFound):
        pass
    sent: list[str] = []
    for statement in statements:
        if not sent or statement != sent[-1]:
            sent.append(statement)
    return sent


def _is_transaction(statements: list[str], end: str = "COMMIT") -> bool:
    return (
        len(statements) >= 3
        and statements[0] == "BEGIN IMMEDIATE"
        and statements[-1] == end
        and not any(s.startswith(("BEGIN", "COMMIT", "ROLLBACK")) for s in statements[1:-1])
    )


def test_statements_per_operation(traced: tuple[SqliteBackend, list[str]]) -> None:
    """get is one SELECT (no BEGIN) that names the outcome column only when asked; each
    mutation is one BEGIN IMMEDIATE … COMMIT transaction (a lost compare-and-set rolls back);
    a list or scan page is one SELECT that never reads outcomes."""
    backend, statements = traced
    key = ("alice", "t1")
    outcome = b'{"kind":"result"}'
    assert _is_transaction(
        _run(statements, lambda: backend.create(key, data(1), FUTURE, sort_ms=T0, max_live=5,
                                                event=b"{}", now_ms=T0))
    )
    assert _is_transaction(
        _run(statements, lambda: backend.put_if_version(key, data(2), 1, outcome=outcome,
                                                        event=b"{}", now_ms=T0))
    )
    assert _is_transaction(_run(statements, lambda: backend.put(key, data(3), FUTURE, now_ms=T0)))
    assert _is_transaction(_run(statements, lambda: backend.delete(("alice", "none"))))
    lost = _run(statements, lambda: backend.put_if_version(key, data(9), 1, now_ms=T0))
    assert _is_transaction(lost, end="ROLLBACK")
    for _ in range(3):
        backend.put(("alice", f"x{_}"), data(_), FUTURE, sort_ms=T0 - 1, now_ms=T0)

    reads: list[tuple[Callable[[], object], bool]] = [
        (lambda: backend.get(key, now_ms=T0), False),
        (lambda: backend.get(key, include_outcome=True, now_ms=T0), True),
        (lambda: backend.list_by_prefix("alice", limit=2, now_ms=T0), False),
        (lambda: backend.list_by_prefix("alice", ListPosition(T0, "t1"), 2, now_ms=T0), False),
        (lambda: backend.scan(None, 2, now_ms=T0), False),
    ]
    for call, names_outcome in reads:
        run = _run(statements, call)
        assert len(run) == 1, run
        assert run[0].startswith("SELECT")
        assert ("outcome" in run[0]) is names_outcome, run[0]
    assert backend.get(key, include_outcome=True, now_ms=T0).outcome == outcome
    cursor = backend.scan(None, 2, now_ms=T0).next_cursor
    assert len(_run(statements, lambda: backend.scan(cursor, 2, now_ms=T0))) == 1


def _plan(path: str, statement: str) -> list[str]:
    conn = _connect(path)
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()]
    finally:
        conn.close()


def test_query_plans_use_the_indexes(traced: tuple[SqliteBackend, list[str]]) -> None:
    """get and compare-and-set seek the primary key, a list page starts at its keyset position
    on the listing index without sorting, cleanup finds expired records on the expiry index,
    and a create with a quota reclaims the owner's expired records on the owner-expiry index
    and reads its count by key, without counting: no statement scans the table."""
    backend, statements = traced
    for i in range(20):
        backend.put(("alice", f"t{i}"), data(i), T0 + i, sort_ms=T0 + i // 2, now_ms=T0)
    table = backend.table
    checks: list[tuple[Callable[[], object], str]] = [
        (lambda: backend.get(("alice", "t1"), now_ms=T0), "sqlite_autoindex"),
        (
            lambda: backend.list_by_prefix("alice", ListPosition(T0 + 5, "t10"), 3, now_ms=T0),
            f"{table}__listing (owner=? AND (sort_ms,task_id)<(?,?))",
        ),
        (lambda: backend.list_by_prefix("alice", limit=3, now_ms=T0), f"{table}__listing"),
        (lambda: backend.cleanup_expired(T0 + 3), f"{table}__expiry (expires_at_ms<?)"),
        (
            lambda: backend.scan(encode_scan_cursor(("s1", b"alice", b"t1")), 3, now_ms=T0),
            "sqlite_autoindex",
        ),
    ]
    for call, index in checks:
        (statement,) = [s for s in _run(statements, call) if not s.startswith(("BEGIN", "COM"))]
        plan = _plan(backend.path, statement)
        assert any(index in step for step in plan), (statement, plan)
        assert not any(step.startswith("SCAN") or "TEMP B-TREE" in step for step in plan), plan
    run = _run(
        statements,
        lambda: backend.create(("alice", "new"), data(0), None, sort_ms=T0, max_live=50,
                               now_ms=T0),
    )
    assert not [s for s in run if "count(" in s]
    (reclaim,) = [s for s in run if s.startswith("DELETE")]
    assert any(f"{table}__owner_expiry" in step for step in _plan(backend.path, reclaim))
    (counted,) = [s for s in run if f"{table}__owners" in s and s.startswith("SELECT")]
    assert any("PRIMARY KEY" in step for step in _plan(backend.path, counted))


def _counts(backend: SqliteBackend) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(the owners table's non-zero counts, the records actually stored per owner)."""
    conn = _connect(backend.path)
    try:
        kept = dict(
            conn.execute(
                f'SELECT owner, records FROM "{backend.table}__owners" WHERE records != 0'
            ).fetchall()
        )
        stored = dict(
            conn.execute(
                f'SELECT owner, count(*) FROM "{backend.table}" GROUP BY owner'
            ).fetchall()
        )
    finally:
        conn.close()
    return kept, stored


def test_the_owner_counts_follow_every_insert_and_delete(backend: SqliteBackend) -> None:
    """The per-owner counts the quota reads equal the records stored after creates (over an
    expired record of the key too), puts, deletes, cleanup and a create's reclaim."""
    steps: list[Callable[[], object]] = [
        lambda: backend.create(("alice", "a"), data(1), T0 + 10, sort_ms=T0, now_ms=T0),
        lambda: backend.create(("alice", "b"), data(1), None, sort_ms=T0, max_live=5, now_ms=T0),
        lambda: backend.put(("bob", "c"), data(1), T0 + 10, sort_ms=T0, now_ms=T0),
        lambda: backend.put(("bob", "c"), data(2), T0 + 20, sort_ms=T0, now_ms=T0),
        lambda: backend.create(("alice", "a"), data(2), None, sort_ms=T0, now_ms=T0 + 10),
        lambda: backend.delete(("alice", "b")),
        lambda: backend.delete(("alice", "missing")),
        lambda: backend.put(("carol", "d"), data(1), T0 + 5, sort_ms=T0, now_ms=T0),
        lambda: backend.cleanup_expired(T0 + 6),
        lambda: backend.put(("bob", "e"), data(1), T0 + 5, sort_ms=T0, now_ms=T0),
        lambda: backend.create(("bob", "f"), data(1), None, sort_ms=T0, max_live=9,
                               now_ms=T0 + 6),
    ]
    for step in steps:
        step()
        kept, stored = _counts(backend)
        assert kept == stored


def test_a_create_with_a_quota_reclaims_its_owners_expired_records(backend: SqliteBackend) -> None:
    """Expired records never count against the quota: a create reclaims the owner's (and only
    the owner's), then admits up to max_live live ones."""
    for i in range(3):
        backend.create(("alice", f"old{i}"), data(i), T0 + 10, sort_ms=T0, max_live=3,
                       now_ms=T0)
    backend.create(("bob", "old"), data(0), T0 + 10, sort_ms=T0, now_ms=T0)
    with pytest.raises(QuotaExceededError):
        backend.create(("alice", "x"), data(0), None, sort_ms=T0, max_live=3, now_ms=T0 + 9)
    for i in range(3):
        backend.create(("alice", f"new{i}"), data(i), None, sort_ms=T0, max_live=3,
                       now_ms=T0 + 10)
    with pytest.raises(QuotaExceededError):
        backend.create(("alice", "y"), data(0), None, sort_ms=T0, max_live=3, now_ms=T0 + 10)
    kept, stored = _counts(backend)
    assert kept == stored == {b"alice": 3, b"bob": 1}  # bob's expired record is bob's to reclaim


# -- faults ---------------------------------------------------------------------------------------


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[SqliteBackend, sqlite3.Connection]]:
    """A backend with a 20 ms busy timeout holding one record, and a connection of the test's
    own holding the file's write lock (``BEGIN EXCLUSIVE``) until the test releases it."""
    path = tmp_path / "locked.db"
    backend = SqliteBackend(path, busy_timeout_ms=20, table="locked")
    backend.put(("alice", "t1"), data(1), None, sort_ms=T0, now_ms=T0)
    locker = _connect(path)
    locker.execute("BEGIN EXCLUSIVE")
    yield backend, locker
    if locker.in_transaction:
        locker.execute("ROLLBACK")
    locker.close()
    backend.close()


def test_locked_file_past_the_deadline_is_transient_and_not_applied(
    locked: tuple[SqliteBackend, sqlite3.Connection],
) -> None:
    """Writes to a file another connection keeps locked past the busy timeout and the retry
    deadline raise BackendError (transient, applied=False, the driver's error chained), in
    bounded time; WAL readers are not blocked meanwhile; nothing was half-applied."""
    backend, locker = locked
    key = ("alice", "t1")
    writes: list[Callable[[], object]] = [
        lambda: backend.put_if_version(key, data(2), 1, event=b"{}", now_ms=T0),
        lambda: backend.put(key, data(2), None, event=b"{}", now_ms=T0),
        lambda: backend.create(("alice", "t2"), data(2), None, sort_ms=T0, max_live=5,
                               event=b"{}", now_ms=T0),
        lambda: backend.delete(key),
        lambda: backend.cleanup_expired(FUTURE),
    ]
    for write in writes:
        started = time.monotonic()
        with retrying_until(time.monotonic() + 0.2), pytest.raises(BackendError) as info:
            write()
        assert time.monotonic() - started < 5.0
        assert info.value.transient is True
        assert info.value.applied is False
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert "locked" in str(info.value)
        assert backend.get(key, now_ms=T0).version == 1  # a WAL reader is never blocked
    locker.execute("ROLLBACK")
    assert backend.get(key, now_ms=T0).data == data(1)
    assert [r.key for r in backend.list_by_prefix("alice", now_ms=T0)] == [key]
    events = locker.execute(f'SELECT count(*) FROM "{backend.table}__events"').fetchone()
    assert events == (0,)
    assert backend.put_if_version(key, data(2), 1, now_ms=T0) == 2


def test_a_lock_released_before_the_deadline_is_ridden_out(
    locked: tuple[SqliteBackend, sqlite3.Connection],
) -> None:
    """A write that finds the file locked for longer than its busy timeout retries (several
    BEGIN IMMEDIATE attempts) and succeeds once the lock is released within the deadline."""
    backend, locker = locked
    attempts: list[str] = []
    backend._set_trace(lambda s: attempts.append(s) if s == "BEGIN IMMEDIATE" else None)
    release = threading.Timer(0.3, lambda: locker.execute("ROLLBACK"))
    release.start()
    try:
        with retrying_until(time.monotonic() + 30):
            assert backend.put_if_version(("alice", "t1"), data(2), 1, now_ms=T0) == 2
    finally:
        release.join()
    assert len(attempts) >= 2


class _CommitFails:
    """Stands in for a thread's connection: its next COMMIT raises ``error`` instead of
    committing; everything else reaches the real connection."""

    def __init__(self, conn: sqlite3.Connection, error: sqlite3.Error) -> None:
        self.conn = conn
        self.error: sqlite3.Error | None = error

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.conn.execute(sql, *args)


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]  # as the driver sets it
    return error


def test_commit_refused_for_a_lock_is_retried_and_applied_once(backend: SqliteBackend) -> None:
    """A COMMIT that fails with SQLITE_BUSY leaves the transaction open: it is rolled back
    and the write retried, which applies it exactly once."""
    key = ("alice", "t1")
    backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
    conn = backend._db.connection()
    backend._db._local.conn = _CommitFails(conn, _sqlite_error("database is locked", 5))
    try:
        assert backend.put_if_version(key, data(2), 1, now_ms=T0) == 2
    finally:
        backend._db._local.conn = conn
    assert backend.get(key, now_ms=T0).version == 2


def test_commit_failing_at_the_io_level_is_reported_maybe_applied(
    backend: SqliteBackend,
) -> None:
    """A COMMIT that fails otherwise (an I/O error) may have reached the disk: BackendError
    with applied=None and not transient, never retried."""
    key = ("alice", "t1")
    backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
    conn = backend._db.connection()
    backend._db._local.conn = _CommitFails(conn, _sqlite_error("disk I/O error", 10))
    try:
        with pytest.raises(BackendError) as info:
            backend.put_if_version(key, data(2), 1, now_ms=T0)
    finally:
        backend._db._local.conn = conn
    assert info.value.applied is None
    assert info.value.transient is False
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


# -- connections, close ------------------------------------------------------------------------


def test_connections_per_thread_and_close_closes_them_all(backend: SqliteBackend) -> None:
    """Each thread gets its own connection; connections of threads that ended are closed when
    the next thread opens one; close() closes every connection (the last one to close removes
    the WAL file) and stops the event thread."""
    backend.put(("alice", "t"), data(1), None, sort_ms=T0, now_ms=T0)
    backend.add_listener(lambda _: None)
    seen: list[int] = []
    lock = threading.Lock()

    def read() -> None:
        conn = backend._db.connection()
        assert conn is backend._db.connection()
        with lock:
            seen.append(id(conn))
        backend.get(("alice", "t"), now_ms=T0)

    for _ in range(3):
        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # this thread's, the event thread's and at most the last batch's four
    assert len(backend._db._connections) <= 6
    wal = Path(f"{backend.path}-wal")
    assert wal.exists()
    backend.close()
    backend.close()  # idempotent
    assert backend._db._connections == {}
    assert not wal.exists()
    assert not any(t.name.startswith("taskstore-sqlite-events") for t in threading.enumerate())


def _use_in_forked_child(backend: SqliteBackend, parent: sqlite3.Connection) -> None:
    """In a forked child: read and write through the parent's backend object, on a connection
    of the child's own."""
    key = ("alice", "t")
    assert backend.get(key, now_ms=T0).version == 1
    assert backend.put_if_version(key, data(2), 1, event=b"from-child", now_ms=T0) == 2
    assert backend._db.connection() is not parent


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork() on this platform"
)
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # multi-threaded fork
def test_a_forked_child_never_touches_the_parents_connections(backend: SqliteBackend) -> None:
    """A child forked after the backend was used opens its own connection (SQLite forbids
    using an inherited one) and tags its events as another writer's: the parent's listener
    hears the child's write, and the parent's connection still works afterwards."""
    key = ("alice", "t")
    backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
    heard: list[bytes] = []
    backend.add_listener(heard.append)
    parent = backend._db.connection()
    child = multiprocessing.get_context("fork").Process(
        target=_use_in_forked_child, args=(backend, parent)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert wait_until(lambda: heard == [b"from-child"])
    assert backend._db.connection() is parent
    assert backend.put_if_version(key, data(3), 2, now_ms=T0) == 3


def test_closed_backend_refuses_every_call(backend: SqliteBackend) -> None:
    """After close() every operation raises ConfigurationError."""
    backend.close()
    calls: list[Callable[[], object]] = [
        lambda: backend.get(("alice", "t"), now_ms=T0),
        lambda: backend.put(("alice", "t"), data(1), None, now_ms=T0),
        lambda: backend.put_if_version(("alice", "t"), data(1), 1, now_ms=T0),
        lambda: backend.create(("alice", "t"), data(1), None, sort_ms=T0, now_ms=T0),
        lambda: backend.delete(("alice", "t")),
        lambda: backend.list_by_prefix("alice", now_ms=T0),
        lambda: backend.scan(None, 5, now_ms=T0),
        lambda: backend.cleanup_expired(T0),
        lambda: backend.wait_for_change(("alice", "t"), 0, 1.0),
        lambda: backend.add_listener(lambda _: None),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError, match="closed"):
            call()


def test_close_wakes_waiters(backend: SqliteBackend) -> None:
    """A wait in progress returns when the backend is closed, not at its timeout."""
    backend.put(("alice", "t"), data(1), None, sort_ms=T0, now_ms=T0)
    started = time.monotonic()
    waiter = threading.Thread(target=backend.wait_for_change, args=(("alice", "t"), 1, 30.0))
    waiter.start()
    assert wait_until(lambda: bool(backend._changes.waiters._waiting))
    backend.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 10


# -- events across objects -------------------------------------------------------------------


def test_events_reach_every_object_on_the_file_exactly_once(
    tmp_path: Path, make: SqliteFactory
) -> None:
    """An event written through one object reaches its own listeners at once (from the
    writer's thread) and another object's listeners through its poller, each exactly once."""
    path = tmp_path / "ev.db"
    writer, other = make(path=path), make(path=path, poll_interval_s=0.01)
    own: list[tuple[bytes, str]] = []
    heard: list[bytes] = []
    writer.add_listener(lambda e: own.append((e, threading.current_thread().name)))
    other.add_listener(heard.append)
    for i in range(5):
        writer.put(("alice", "t"), data(i), None, sort_ms=T0, event=b"e%d" % i, now_ms=T0)
    assert [e for e, _ in own] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert {name for _, name in own} == {threading.current_thread().name}
    assert wait_until(lambda: len(heard) >= 5)
    time.sleep(0.2)  # many poll intervals of both objects: no duplicate arrives
    assert heard == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert len(own) == 5


def test_wait_wakes_on_another_objects_write(tmp_path: Path, make: SqliteFactory) -> None:
    """A wait on one object returns within a few poll intervals of another object's write
    carrying an event, long before its timeout."""
    path = tmp_path / "w.db"
    waiter, writer = make(path=path, poll_interval_s=0.02), make(path=path)
    key = ("alice", "t")
    writer.put(key, data(1), None, sort_ms=T0, now_ms=T0)
    waiter.wait_for_change(key, 0, 5.0)  # starts the event thread
    threading.Timer(
        0.2, lambda: writer.put_if_version(key, data(2), 1, event=b"{}", now_ms=T0)
    ).start()
    started = time.monotonic()
    while waiter.get(key, now_ms=T0).version == 1 and time.monotonic() - started < 10:
        waiter.wait_for_change(key, 1, 10.0)
    assert waiter.get(key, now_ms=T0).version == 2
    assert time.monotonic() - started < 5.0


def test_old_event_rows_are_pruned(backend: SqliteBackend) -> None:
    """Event rows older than a minute are pruned by later writes, a bounded few at a time."""
    events = f'"{backend.table}__events"'
    conn = _connect(backend.path)
    try:
        conn.executemany(
            f"INSERT INTO {events} (origin, owner, task_id, event, created_ms) "
            "VALUES (0, x'61', x'74', x'7b7d', 0)",
            [()] * 100,
        )
        for i in range(70):
            backend.put(("alice", "t"), data(i), None, sort_ms=T0, event=b"{}", now_ms=T0)
        (old,) = conn.execute(f"SELECT count(*) FROM {events} WHERE created_ms = 0").fetchone()
        (new,) = conn.execute(f"SELECT count(*) FROM {events} WHERE created_ms > 0").fetchone()
    finally:
        conn.close()
    assert old == 0
    assert new == 70


# -- across processes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spawn_pool() -> Iterator[Callable[[int], multiprocessing.pool.Pool]]:
    """``spawn_pool(n)``: a pool of ``n`` spawned worker processes sharing one barrier of
    ``n`` (spawn: no inherited connections or threads), made once per size."""
    context = multiprocessing.get_context("spawn")
    pools: dict[int, multiprocessing.pool.Pool] = {}

    def get(size: int) -> multiprocessing.pool.Pool:
        if size not in pools:
            barrier = context.Barrier(size)
            pools[size] = context.Pool(size, initializer=init_worker, initargs=(barrier,))
        return pools[size]

    yield get
    for pool in pools.values():
        pool.terminate()  # idle workers hold nothing worth a graceful shutdown
        pool.join()


@pytest.fixture
def shared(sqlite_dir: Path) -> tuple[str, str]:
    """A fresh database file and table for the processes of one test."""
    return str(fresh_sqlite_path(sqlite_dir)), "shared"


def test_processes_racing_creates_admit_exactly_the_quota(
    spawn_pool: Callable[[int], multiprocessing.pool.Pool], shared: tuple[str, str]
) -> None:
    """4 processes × 8 threads create for one owner with max_live=10: exactly 10 records are
    created and listed, 22 creates get QuotaExceededError."""
    path, table = shared
    SqliteBackend(path, table=table).close()
    results = spawn_pool(4).starmap(create_many, [(path, table, 8, 10)] * 4, 1)
    outcomes = [outcome for worker in results for outcome in worker]
    assert outcomes.count("won") == 10, outcomes
    assert outcomes.count("QuotaExceededError") == 22, outcomes
    backend = SqliteBackend(path, table=table)
    try:
        assert len(backend.list_by_prefix(OWNER, limit=100, now_ms=T0)) == 10
    finally:
        backend.close()


def test_processes_racing_compare_and_set_have_one_winner(
    spawn_pool: Callable[[int], multiprocessing.pool.Pool], shared: tuple[str, str]
) -> None:
    """20 rounds of 2 processes both put_if_version(expected=1) on one record: each round
    exactly one wins and the other gets VersionConflict; the stored record is the winner's."""
    path, table = shared
    backend = SqliteBackend(path, table=table)
    try:
        task_ids = [f"t{i}" for i in range(20)]
        for task_id in task_ids:
            backend.put((OWNER, task_id), b"{}", None, sort_ms=T0, now_ms=T0)
        results = spawn_pool(2).starmap(
            compare_and_set, [(path, table, task_ids, w) for w in range(2)], 1
        )
        for round_index, task_id in enumerate(task_ids):
            outcomes = [results[w][round_index] for w in range(2)]
            assert sorted(outcomes) == ["VersionConflict", "won"], outcomes
            winner = outcomes.index("won")
            record = backend.get((OWNER, task_id), now_ms=T0)
            assert (record.version, record.data) == (2, f'{{"by":{winner}}}'.encode())
    finally:
        backend.close()


def test_waiter_in_another_process_wakes_on_the_write(
    spawn_pool: Callable[[int], multiprocessing.pool.Pool], shared: tuple[str, str]
) -> None:
    """A wait_for_change (10 s timeout) blocked in a worker process returns soon after this
    process writes the key with an event, long before its timeout: the event crossed
    processes. (Liveness, not latency: the bound is generous.)"""
    path, table = shared
    backend = SqliteBackend(path, table=table)
    try:
        key = (OWNER, "t")
        backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)
        ready = fresh_name()
        waiting = spawn_pool(2).apply_async(wait_for_write, (path, table, "t", ready, 10.0))

        def is_ready() -> bool:
            try:
                backend.get((OWNER, ready), now_ms=T0)
            except RecordNotFound:
                return False
            return True

        assert wait_until(is_ready, timeout=30)
        time.sleep(0.3)  # lets the waiter block first; no outcome depends on this sleep
        written_at = time.time()
        backend.put_if_version(key, b'{"done":true}', 1, event=b"{}", now_ms=T0)
        returned_at, returns, version = waiting.get(30)
        assert version == 2
        assert returned_at - written_at < 2.0, returned_at - written_at
        assert returns <= 2, f"{returns} returns: busy waiting"
    finally:
        backend.close()


def test_listener_in_another_process_receives_events(
    spawn_pool: Callable[[int], multiprocessing.pool.Pool], shared: tuple[str, str]
) -> None:
    """Events written in one process reach a listener in another exactly once, in order, and
    a listener here receives a worker's events too."""
    path, table = shared
    backend = SqliteBackend(path, table=table)
    try:
        ready = fresh_name()
        listening = spawn_pool(2).apply_async(listen, (path, table, ready, 3, 10.0))
        assert wait_until(lambda: bool(backend.list_by_prefix(OWNER, now_ms=T0)), timeout=30)
        for i in range(3):
            backend.put((OWNER, "t"), b"{}", None, sort_ms=T0, event=b"e%d" % i, now_ms=T0)
        assert listening.get(30) == [b"e0", b"e1", b"e2"]

        heard: list[bytes] = []
        backend.add_listener(heard.append)
        spawn_pool(2).apply(write_events, (path, table, "u", [b"w0", b"w1"]))
        assert wait_until(lambda: len(heard) >= 2, timeout=10)
        time.sleep(0.2)
        assert heard == [b"w0", b"w1"]
    finally:
        backend.close()


def test_close_leaves_a_connection_in_use_to_its_thread(backend: SqliteBackend) -> None:
    """close() while another thread runs a statement does not close that thread's connection
    under it (sqlite3 would crash the process): the statement finishes, its thread closes
    the connection afterwards, and later calls are refused."""
    started, release = threading.Event(), threading.Event()
    seen: list[Any] = []

    def slow_read(conn: sqlite3.Connection) -> Any:
        started.set()
        release.wait(10)
        return conn.execute("SELECT 1").fetchone()

    def reader() -> None:
        seen.append(backend._db.read("test", slow_read))

    thread = threading.Thread(target=reader)
    thread.start()
    assert started.wait(10)
    backend.close()
    release.set()
    thread.join(10)
    assert seen == [(1,)]
    assert backend._db._connections == {}
    with pytest.raises(ConfigurationError):
        backend.get(("alice", "t"), now_ms=0)
