"""PostgreSQL-specific behaviour, on the session's private cluster: URL options, where the
schema lives and who may use it, schema versions, keys no text column could hold, NOTIFY
beyond its payload cap, what each operation costs in statements (as the server counts them),
and races between processes. (The contract itself runs over the ``postgres`` row of the
backend table; faults are in ``test_postgres_faults.py``.)
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.servers import require_modules

require_modules("psycopg", "psycopg_pool", markers=["postgres"])

import psycopg

import taskstore
from support.postgres_support import PostgresServer, count_statements, fresh_table
from support.postgres_workers import (
    OWNER,
    create_schema,
    create_threads,
    put_if_version_once,
    run_processes,
    wait_for_change,
    write_event,
)
from taskstore.backends import open_backend
from taskstore.backends._sql import POSTGRES_SCHEMA_VERSION as SCHEMA_VERSION
from taskstore.backends._sql import SchemaManagedBackend
from taskstore.backends.base import (
    ListPosition,
    ScanningBackend,
    StorageBackend,
    retrying_until,
)
from taskstore.backends.postgres import PostgresBackend
from taskstore.errors import (
    BackendError,
    ConfigurationError,
    QuotaExceededError,
    RecordNotFound,
)
from taskstore.testing import FUTURE, T0

pytestmark = pytest.mark.postgres

Factory = Callable[..., PostgresBackend]


@pytest.fixture
def make(backend_factory_postgres: Factory) -> Factory:
    """``make(**options)``: a PostgresBackend on the session cluster, fresh table per call."""
    return backend_factory_postgres


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:
    """The session's private cluster."""
    return postgres_server


def _schema_name() -> str:
    return f"ts_schema_{uuid.uuid4().hex[:10]}"


def _collect(backend: StorageBackend) -> tuple[list[bytes], threading.Event, Callable[[], None]]:
    received: list[bytes] = []
    arrived = threading.Event()

    def on_event(event: bytes) -> None:
        received.append(event)
        arrived.set()

    return received, arrived, backend.add_listener(on_event)


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


# -- URL and options ------------------------------------------------------------------------


def test_protocols_and_class_attributes(make: Factory) -> None:
    """The backend is a StorageBackend, a ScanningBackend and (as a class) schema-managed,
    with no backend-specific size caps."""
    backend = make()
    assert isinstance(backend, StorageBackend)
    assert isinstance(backend, ScanningBackend)
    assert isinstance(PostgresBackend, SchemaManagedBackend)
    assert PostgresBackend.max_variable_bytes is None
    assert PostgresBackend.max_result_bytes is None


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_schemes_open_through_the_registry(server: PostgresServer, scheme: str) -> None:
    """postgresql:// and postgres:// both open a PostgresBackend through open_backend and
    taskstore.open, with the table from the query string."""
    table = fresh_table()
    url = f"{scheme}://postgres@127.0.0.1:{server.port}/postgres?table={table}"
    backend = open_backend(url)
    try:
        assert isinstance(backend, PostgresBackend)
        assert (backend.table, backend.schema) == (table, "public")
    finally:
        backend.close()
    with taskstore.open(url) as store:
        task = store.create(OWNER)
        assert store.get(task.task_id, OWNER).task_id == task.task_id


def test_keywords_beat_query_parameters(server: PostgresServer) -> None:
    """A keyword option wins over the same query parameter."""
    loser, winner = fresh_table(), fresh_table()
    backend = PostgresBackend.from_url(f"{server.url}?table={loser}", table=winner)
    try:
        assert backend.table == winner
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("query", "options", "message"),
    [
        ("?tabel=x", {}, "Unknown option"),
        ("", {"prefix": "x"}, "Unknown option"),
        ("?client_encoding=latin1", {}, "Unknown option"),
        ("?table=no%20spaces", {}, "table must be"),
        ("?table=double__underscore", {}, "must not contain '__'"),
        ("?table=" + "x" * 41, {}, "table must be"),
        ("?table=1abc", {}, "table must be"),
        ("?schema=bad.schema", {}, "schema must be"),
        ("?pool_max=0", {}, "pool_max"),
        ("?pool_min=5&pool_max=2", {}, "pool_min"),
        ("?pool_min=-1", {}, "pool_min"),
        ("?pool_max=many", {}, "pool_max"),
        ("?create_schema=maybe", {}, "create_schema"),
        ("?timeout=0", {}, "timeout"),
        ("?timeout=soon", {}, "timeout"),
        ("?wait_slice_s=-1", {}, "wait_slice_s"),
        ("?connect_timeout=0", {}, "connect_timeout"),
        ("", {"port": True}, "port"),
    ],
)
def test_bad_options_are_configuration_errors(
    server: PostgresServer, query: str, options: dict[str, Any], message: str
) -> None:
    """Unknown options, bad names and bad values are ConfigurationError naming the option,
    raised before anything connects."""
    with pytest.raises(ConfigurationError, match=message):
        PostgresBackend.from_url(server.url + query, **options)


def test_unknown_option_lists_the_known_ones(server: PostgresServer) -> None:
    """The error for an unknown option lists the backend's options and libpq's."""
    with pytest.raises(ConfigurationError) as info:
        PostgresBackend.from_url(f"{server.url}?nope=1")
    for known in ("table", "schema", "create_schema", "pool_max", "application_name"):
        assert known in str(info.value)


def test_other_schemes_are_refused() -> None:
    """from_url refuses a URL of another scheme."""
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresBackend.from_url("redis://127.0.0.1:6379/0")


def test_password_never_shows(server: PostgresServer) -> None:
    """The password of the URL is in no repr and no error message: not a working backend's,
    not a bad option's, not a missing schema's, not a failed connection's."""
    secret = "s3cr3t-pw"
    url = f"postgresql://postgres:{secret}@127.0.0.1:{server.port}/postgres"  # trust: accepted
    backend = PostgresBackend.from_url(url, table=fresh_table())
    try:
        assert secret not in repr(backend)
        assert "127.0.0.1" in repr(backend)
    finally:
        backend.close()
    with pytest.raises(ConfigurationError) as bad_option:
        PostgresBackend.from_url(f"{url}?bogus=1")
    with pytest.raises(ConfigurationError) as missing:
        PostgresBackend.from_url(url, table=fresh_table(), create_schema=False)
    closed_port = f"postgresql://postgres:{secret}@127.0.0.1:1/postgres"
    with retrying_until(time.monotonic() + 0.5), pytest.raises(BackendError) as unreachable:
        PostgresBackend.from_url(closed_port, table=fresh_table())
    for error in (bad_option.value, missing.value, unreachable.value):
        assert secret not in str(error)
        assert secret not in repr(error.args)
    assert unreachable.value.transient and unreachable.value.applied is False


def test_libpq_parameters_pass_through(make: Factory, server: PostgresServer) -> None:
    """libpq parameters in the URL reach the connection (application_name here), and every
    connection runs read committed even when the role defaults to another isolation level
    (the quota's advisory lock needs a fresh snapshot per statement)."""
    name = f"ts_app_{uuid.uuid4().hex[:8]}"
    role = f"ts_rr_{uuid.uuid4().hex[:8]}"
    server.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    server.execute(f"ALTER ROLE {role} SET default_transaction_isolation = 'repeatable read'")
    backend = PostgresBackend.from_url(
        server.url_for(role), table=fresh_table(), application_name=name
    )
    try:
        with backend.pool.connection() as conn:
            row = conn.execute("SHOW transaction_isolation").fetchone()
            assert row is not None and row[0] == "read committed"
            row = conn.execute("SELECT current_setting('application_name')").fetchone()
            assert row is not None and row[0] == name
    finally:
        backend.close()


def test_close_is_idempotent_and_final(make: Factory) -> None:
    """close() twice is fine; a closed backend refuses further calls."""
    backend = make()
    backend.put(("a", "t"), b"{}", None)
    backend.add_listener(lambda event: None)
    backend.close()
    backend.close()
    with pytest.raises(ConfigurationError):
        backend.get(("a", "t"))
    assert backend.pool.closed


# -- where the schema lives ------------------------------------------------------------------


def _objects(server: PostgresServer, schema: str, table: str) -> tuple[set[str], set[str]]:
    """The relations (tables, indexes, sequences) and functions in ``schema`` named after
    ``table``, and the meta table's relations if the schema is the store's own."""
    meta = "taskstore%%" if schema != "public" else "-"
    relations = {
        row[0]
        for row in server.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = %s AND (c.relname LIKE %s OR c.relname LIKE '{meta}')",
            [schema, table + "%"],
        )
    }
    functions = {
        row[0]
        for row in server.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname LIKE %s",
            [schema, table + "%"],
        )
    }
    return relations, functions


def test_schema_option_puts_every_object_in_that_schema(
    make: Factory, server: PostgresServer
) -> None:
    """With ?schema=, the schema is created and holds every object (tables, indexes,
    functions, the identity sequence, the version row); nothing lands in public."""
    schema, table = _schema_name(), fresh_table()
    backend = make(schema=schema, table=table)
    backend.create((OWNER, "t"), b"{}", FUTURE, sort_ms=T0, max_live=5, now_ms=T0)
    assert backend.get((OWNER, "t"), now_ms=T0).version == 1
    relations, functions = _objects(server, schema, table)
    assert {
        table,
        f"{table}_pkey",
        f"{table}__listing",
        f"{table}__expiry",
        f"{table}__events",
        f"{table}__events_pkey",
        f"{table}__events_created",
        f"{table}__events_id_seq",
        "taskstore__meta",
        "taskstore__meta_pkey",
    } <= relations
    assert functions == {f"{table}__create", f"{table}__put", f"{table}__put_if_version",
                         f"{table}__delete"}
    assert _objects(server, "public", table) == (set(), set())
    assert server.execute(
        f'SELECT table_name, schema_version FROM "{schema}".taskstore__meta'
    ) == [(table, SCHEMA_VERSION)]


def test_two_tables_are_independent_stores(make: Factory) -> None:
    """Two tables in one database are two stores: the same key holds different records, each
    has its own quota and its own events."""
    first, second = make(), make()
    for backend in (first, second):
        for i in range(2):
            backend.create((OWNER, f"t{i}"), b"{}", FUTURE, sort_ms=T0, max_live=2, now_ms=T0)
    with pytest.raises(QuotaExceededError):
        first.create((OWNER, "t2"), b"{}", FUTURE, sort_ms=T0, max_live=2, now_ms=T0)
    second.delete((OWNER, "t0"))
    assert second.create((OWNER, "t2"), b"{}", FUTURE, sort_ms=T0, max_live=2, now_ms=T0) == 1
    assert len(first.list_by_prefix(OWNER, now_ms=T0)) == 2
    received_first, _, remove_first = _collect(first)
    received_second, arrived_second, remove_second = _collect(second)
    try:
        first.put((OWNER, "t0"), b"{}", FUTURE, event=b'{"to":"first"}', now_ms=T0)
        second.put((OWNER, "t0"), b"{}", FUTURE, event=b'{"to":"second"}', now_ms=T0)
        assert _wait_for(lambda: received_first == [b'{"to":"first"}'])
        assert arrived_second.wait(10)
        # The first store's event, written first, would have arrived before the second's.
        assert received_second == [b'{"to":"second"}']
        assert received_first == [b'{"to":"first"}']
    finally:
        remove_first()
        remove_second()


# -- schema versions and schema management --------------------------------------------------


def test_missing_schema_with_create_schema_false(server: PostgresServer) -> None:
    """create_schema=false on a database without the store's schema is ConfigurationError
    saying what to run; nothing is created."""
    table = fresh_table()
    for open_it in (
        lambda: PostgresBackend.from_url(server.url, table=table, create_schema=False),
        lambda: taskstore.open(f"{server.url}?table={table}&create_schema=false"),
    ):
        with pytest.raises(ConfigurationError, match="python -m taskstore sql create-schema"):
            open_it()
    assert _objects(server, "public", table) == (set(), set())
    schema = _schema_name()  # a schema that does not exist at all
    with pytest.raises(ConfigurationError, match="create-schema"):
        PostgresBackend.from_url(server.url, schema=schema, table=table, create_schema=False)


def test_schema_version_mismatch_is_refused(make: Factory, server: PostgresServer) -> None:
    """A database whose version row holds another version is refused by from_url (with or
    without create_schema) and by create_schema, naming the version found and the CLI."""
    table = fresh_table()
    make(table=table).close()
    server.execute(
        "UPDATE taskstore__meta SET schema_version = 99 WHERE table_name = %s", [table]
    )
    url = f"{server.url}?table={table}"
    for open_it in (
        lambda: PostgresBackend.from_url(url),
        lambda: PostgresBackend.from_url(url, create_schema=False),
        lambda: PostgresBackend.create_schema(url),
    ):
        with pytest.raises(ConfigurationError) as info:
            open_it()
        assert "99" in str(info.value)
        assert "python -m taskstore sql" in str(info.value)


def test_create_schema_is_idempotent(server: PostgresServer) -> None:
    """create_schema twice is fine, and a backend then opens with create_schema=false."""
    url = f"{server.url}?table={fresh_table()}&schema={_schema_name()}"
    PostgresBackend.create_schema(url)
    PostgresBackend.create_schema(url)
    backend = PostgresBackend.from_url(url, create_schema=False)
    try:
        assert backend.put((OWNER, "t"), b"{}", None) == 1
    finally:
        backend.close()


def test_schema_sql_is_plain_and_complete(server: PostgresServer) -> None:
    """schema_sql() is plain SQL (no psql meta-commands, no transaction control) with CREATE
    SCHEMA only when ?schema= is given, and needs no connection."""
    table = fresh_table()
    plain = PostgresBackend.schema_sql(f"postgresql://nobody@192.0.2.1:1/x?table={table}")
    own = PostgresBackend.schema_sql(
        f"postgresql://nobody@192.0.2.1:1/x?table={table}&schema=mine"
    )
    assert "CREATE SCHEMA" not in plain
    assert 'CREATE SCHEMA IF NOT EXISTS "mine";' in own
    for text in (plain, own):
        assert not any(line.lstrip().startswith("\\") for line in text.splitlines())
        assert "BEGIN;" not in text and "COMMIT;" not in text
        assert f"VALUES ('{table}', {SCHEMA_VERSION})" in text


def _exercise(backend: PostgresBackend) -> None:
    """Every operation once, and an event through the events table."""
    key = (OWNER, "t")
    assert backend.create(key, b"{}", FUTURE, sort_ms=T0, max_live=3, now_ms=T0) == 1
    assert backend.put_if_version(key, b'{"a":1}', 1, outcome=b'{"r":1}', now_ms=T0) == 2
    assert backend.put((OWNER, "u"), b"{}", T0 + 5, sort_ms=T0, now_ms=T0) == 1
    assert backend.get(key, include_outcome=True, now_ms=T0).outcome == b'{"r":1}'
    assert [r.key for r in backend.list_by_prefix(OWNER, now_ms=T0)] == [(OWNER, "u"), key]
    assert len(backend.scan(now_ms=T0).records) == 2
    received, arrived, remove = _collect(backend)
    try:
        big = b'{"x":"' + b"y" * 9000 + b'"}'
        backend.put(key, b"{}", FUTURE, event=big, now_ms=T0)
        assert arrived.wait(10)
        assert received == [big]
    finally:
        remove()
    backend.wait_for_change(key, 1, 5.0)  # version 3: returns at once
    assert backend.cleanup_expired(T0 + 5) == 1
    assert backend.delete(key) is True


@pytest.mark.parametrize("via", ["psql", "psycopg"])
def test_schema_sql_applied_by_hand_then_opened_without_create(
    server: PostgresServer, tmp_path: Path, via: str
) -> None:
    """The SQL of show-schema, applied with ``psql -f`` (or as one script through psycopg),
    twice, is a complete schema: a backend opens on it with create_schema=false and every
    operation works."""
    url = f"{server.url}?table={fresh_table()}&schema={_schema_name()}"
    script = PostgresBackend.schema_sql(url)
    for _ in range(2):
        if via == "psql":
            path = tmp_path / "schema.sql"
            path.write_text(script)
            server.psql("-q", "-f", str(path))
        else:
            server.execute(script)
    backend = PostgresBackend.from_url(url, create_schema=False)
    try:
        _exercise(backend)
    finally:
        backend.close()


def test_restricted_role_with_only_the_documented_privileges(server: PostgresServer) -> None:
    """A role with USAGE on the schema, SELECT/INSERT/UPDATE/DELETE on its three tables and
    EXECUTE on its four functions (revoked from PUBLIC, granted explicitly) and nothing else
    runs every operation with create_schema=false, and with the default (the schema is
    found in place, so nothing is created)."""
    schema, table = _schema_name(), fresh_table()
    role = f"ts_role_{uuid.uuid4().hex[:8]}"
    PostgresBackend.create_schema(f"{server.url}?table={table}&schema={schema}")
    s, t = f'"{schema}"', f'"{table}'
    functions = [f'{s}.{t}__{name}"' for name in ("create", "put", "put_if_version", "delete")]
    server.execute(f"CREATE ROLE {role} LOGIN")
    server.execute(f"GRANT USAGE ON SCHEMA {s} TO {role}")
    server.execute(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.{t}", {s}.{t}__events", '
        f"{s}.taskstore__meta TO {role}"
    )
    for function in functions:
        server.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
        server.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {role}")
    url = f"{server.url_for(role)}?table={table}&schema={schema}"
    for create in (False, True):
        backend = PostgresBackend.from_url(url, create_schema=create)
        try:
            _exercise(backend)
        finally:
            backend.close()
    # And without EXECUTE the same role is refused at once (a permanent error).
    server.execute(f"REVOKE EXECUTE ON FUNCTION {functions[1]} FROM {role}")
    backend = PostgresBackend.from_url(url, create_schema=False)
    try:
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            backend.put((OWNER, "v"), b"{}", None)
        assert time.monotonic() - started < 2
        assert not info.value.transient and info.value.applied is False
        assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
    finally:
        backend.close()


def test_get_list_and_scan_never_read_the_outcome(server: PostgresServer) -> None:
    """A role that may not SELECT the outcome column can still get, list, scan and wait:
    those never read it. Only get(include_outcome=True) does (and is refused)."""
    schema, table = _schema_name(), fresh_table()
    role = f"ts_reader_{uuid.uuid4().hex[:8]}"
    url = f"{server.url}?table={table}&schema={schema}"
    writer = PostgresBackend.from_url(url)
    try:
        writer.put((OWNER, "t"), b"{}", FUTURE, sort_ms=T0, outcome=b'{"r":1}', now_ms=T0)
        writer.put((OWNER, "u"), b"{}", FUTURE, sort_ms=T0, outcome=b'{"r":2}', now_ms=T0)
        server.execute(f"CREATE ROLE {role} LOGIN")
        server.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        server.execute(f'GRANT SELECT ON "{schema}".taskstore__meta TO {role}')
        server.execute(
            "GRANT SELECT (owner, task_id, version, data, expires_at_ms, sort_ms, write_token) "
            f'ON "{schema}"."{table}" TO {role}'
        )
        reader = PostgresBackend.from_url(
            f"{server.url_for(role)}?table={table}&schema={schema}", create_schema=False
        )
        try:
            assert reader.get((OWNER, "t"), now_ms=T0).version == 1
            listed = reader.list_by_prefix(OWNER, now_ms=T0)
            assert [r.key for r in listed] == [(OWNER, "u"), (OWNER, "t")]
            page = reader.list_by_prefix(OWNER, ListPosition(T0, "u"), now_ms=T0)
            assert [r.key for r in page] == [(OWNER, "t")]
            scanned = reader.scan(None, 1, now_ms=T0)
            assert [r.key for r in scanned.records] == [(OWNER, "t")]
            assert scanned.next_cursor is not None
            scanned = reader.scan(scanned.next_cursor, 1, now_ms=T0)
            assert [r.key for r in scanned.records] == [(OWNER, "u")]
            reader.wait_for_change((OWNER, "t"), 0, 5.0)
            with pytest.raises(BackendError) as info:
                reader.get((OWNER, "t"), include_outcome=True, now_ms=T0)
            assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
        finally:
            reader.close()
    finally:
        writer.close()


# -- keys -------------------------------------------------------------------------------------


def test_owners_and_task_ids_with_nul_and_surrogates(make: Factory) -> None:
    """Owners and task ids holding NUL, lone surrogates and astral characters are stored
    (bytea), read, listed, scanned and deleted exactly, never confused with each other; ties
    in sort_ms list by task id in code point order, descending."""
    backend = make()
    owners = ["a\x00b", "a", "a\x00", "\x00", "\ud800", "\udfff\x00", "\U0001f600", ""]
    for i, owner in enumerate(owners):
        backend.put((owner, "t\x00"), f'{{"i":{i}}}'.encode(), FUTURE, sort_ms=T0, now_ms=T0)
    for i, owner in enumerate(owners):
        assert backend.get((owner, "t\x00"), now_ms=T0).data == f'{{"i":{i}}}'.encode()
        listed = backend.list_by_prefix(owner, now_ms=T0)
        assert [r.key for r in listed] == [(owner, "t\x00")]
    scanned = {r.key for r in backend.scan(None, 1000, now_ms=T0).records}
    assert scanned == {(owner, "t\x00") for owner in owners}
    ids = ["\ud7ff", "\ud800", "\ue000", "\U0001f600", "a\x00", "a", "a\x00\x00", "\x00"]
    for task_id in ids:
        backend.put(("ties", task_id), b"{}", FUTURE, sort_ms=T0, now_ms=T0)
    expected = sorted(ids, reverse=True)
    assert [r.key[1] for r in backend.list_by_prefix("ties", now_ms=T0)] == expected
    seen: list[str] = []
    after = None
    while True:
        page = backend.list_by_prefix("ties", after, 3, now_ms=T0)
        seen += [r.key[1] for r in page]
        if len(page) < 3:
            break
        after = ListPosition(page[-1].sort_ms, page[-1].key[1])
    assert seen == expected
    assert backend.delete(("\ud800", "t\x00")) is True
    with pytest.raises(RecordNotFound):
        backend.get(("\ud800", "t\x00"), now_ms=T0)
    assert backend.get(("\udfff\x00", "t\x00"), now_ms=T0).version == 1


# -- events --------------------------------------------------------------------------------------


def test_events_of_every_size_arrive_through_notify(make: Factory, server: PostgresServer) -> None:
    """Events around and far beyond NOTIFY's 8000-byte payload cap reach a listener of
    another backend object on the same table, byte for byte and in order; only the large
    ones went through the events table."""
    table = fresh_table()
    writer, reader = make(table=table), make(table=table)
    sizes = [0, 1, 3999, 4000, 4001, 7999, 8000, 8001, 20_000, 1_000_000]
    events = [bytes([65 + i]) * size for i, size in enumerate(sizes)]
    received, _, remove = _collect(reader)
    try:
        for event in events:
            writer.put((OWNER, "t"), b"{}", None, event=event)
        assert _wait_for(lambda: len(received) >= len(events), 20)
        assert received == events
    finally:
        remove()
    stored = server.execute(f'SELECT count(*) FROM "{table}__events"')
    assert stored == [(sum(1 for size in sizes if size > 4000),)]


def test_old_event_rows_are_pruned(make: Factory, server: PostgresServer) -> None:
    """Rows of the events table older than 10 minutes are deleted by a later large event
    (every 100th), so the table does not grow with the events ever sent."""
    table = fresh_table()
    backend = make(table=table)
    big = b"x" * 5000
    backend.put((OWNER, "t"), b"{}", None, event=big)
    server.execute(
        f"UPDATE \"{table}__events\" SET created_at = now() - interval '11 minutes'"
    )
    for _ in range(100):
        backend.put((OWNER, "t"), b"{}", None, event=big)
    ids = [row[0] for row in server.execute(f'SELECT id FROM "{table}__events" ORDER BY id')]
    assert ids[0] > 1 and len(ids) == 100


def test_add_listener_returns_once_listen_is_in_place(make: Factory) -> None:
    """add_listener returns only once LISTEN is in place: an event written right after it
    returns is delivered (in every one of 5 fresh backends)."""
    table = fresh_table()
    writer = make(table=table)
    for i in range(5):
        reader = make(table=table)
        received, arrived, remove = _collect(reader)
        try:
            writer.put((OWNER, "t"), b"{}", None, event=f'{{"n":{i}}}'.encode())
            assert arrived.wait(10)
            assert received == [f'{{"n":{i}}}'.encode()]
        finally:
            remove()
            reader.close()


# -- costs, as the server counts statements ----------------------------------------------------


def test_each_operation_is_one_statement(make: Factory, server: PostgresServer) -> None:
    """Counted in the server's statement log (log_statement=all for this backend's
    connections only, found by its application_name): get, each mutation, a list page (with
    or without an anchor), a scan page and a small cleanup are one statement each; no BEGIN or
    COMMIT, no read before a write. Neither get nor list names the outcome column."""
    app = f"ts_cost_{uuid.uuid4().hex[:8]}"
    backend = make(application_name=app, options="-c log_statement=all")
    key = (OWNER, "t")
    backend.put((OWNER, "seed"), b"{}", FUTURE, sort_ms=T0, now_ms=T0)  # connection warm
    operations: list[tuple[str, Callable[[], object]]] = [
        ("create", lambda: backend.create(key, b"{}", FUTURE, sort_ms=T0, max_live=9, now_ms=T0)),
        ("get", lambda: backend.get(key, now_ms=T0)),
        ("get+outcome", lambda: backend.get(key, include_outcome=True, now_ms=T0)),
        ("put", lambda: backend.put(key, b"{}", FUTURE, outcome=b'{"r":1}', now_ms=T0)),
        ("put_if_version", lambda: backend.put_if_version(key, b"{}", 2, event=b"{}", now_ms=T0)),
        ("list", lambda: backend.list_by_prefix(OWNER, limit=1, now_ms=T0)),
        ("list after", lambda: backend.list_by_prefix(
            OWNER, ListPosition(T0, "t"), limit=1, now_ms=T0)),
        ("scan", lambda: backend.scan(None, 1, now_ms=T0)),
        ("cleanup", lambda: backend.cleanup_expired(T0)),
        ("delete", lambda: backend.delete(key)),
    ]
    with server.log_path.open("rb") as log:
        start = log.seek(0, 2)  # what the construction logged (its schema creation) is past
    counts = {}
    for name, operation in operations:
        before = count_statements(server, app)
        operation()
        counts[name] = count_statements(server, app) - before
    assert counts == {name: 1 for name, _ in operations}
    with server.log_path.open("rb") as log:
        log.seek(start)
        lines = log.read().decode(errors="replace").splitlines()
    mine = [line for line in lines if f" {app}: LOG:" in line]
    assert len(mine) == len(operations)
    assert not any(word in line for line in mine for word in ("BEGIN", "COMMIT"))
    reads = [line for line in mine if "SELECT t.version, t.data" in line]
    assert len(reads) == 2
    assert sum("outcome" in line for line in reads) == 1  # only get(include_outcome=True)
    lists = [line for line in mine if "t.task_id, t.version, t.data" in line]
    assert lists and not any("outcome" in line for line in lists)


def test_cleanup_is_batched_through_the_expiry_index(make: Factory) -> None:
    """cleanup_expired removes exactly the expired records in batches (2500 here: three
    statements) and leaves the live ones; a batch is found through the expiry index and
    deleted by row address, never by scanning the table."""
    backend = make()
    with backend.pool.connection() as conn:
        conn.execute(
            f'INSERT INTO "{backend.table}" (owner, task_id, version, data, expires_at_ms, '
            "sort_ms) SELECT 'o'::bytea, ('t' || i)::bytea, 1, '{}'::bytea, "
            "CASE WHEN i <= 2500 THEN %s::bigint ELSE NULL END, %s::bigint "
            "FROM generate_series(1, 2600) i",
            [T0 + 1, T0],
        )
        # With statistics, as autovacuum keeps them (a table too small to have any is read
        # whole by the planner's choice: cheaper than the index there).
        conn.execute(f'ANALYZE "{backend.table}"')
        rows = conn.execute(
            "EXPLAIN " + backend._sql.cleanup, {"now": T0 + 1, "limit": 1000}
        ).fetchall()
    plan = "\n".join(row[0] for row in rows)
    assert f"{backend.table}__expiry" in plan and "Tid Scan" in plan
    assert "Seq Scan" not in plan
    assert backend.cleanup_expired(T0) == 0
    assert backend.cleanup_expired(T0 + 1) == 2500
    assert len(backend.list_by_prefix("o", limit=1000, now_ms=T0 + 1)) == 100


# -- between processes -------------------------------------------------------------------------


def test_processes_quota_race_admits_exactly_the_limit(server: PostgresServer) -> None:
    """4 processes × 8 threads, released together, creating for one owner with
    max_tasks_per_owner=10: exactly 10 succeed, 22 are refused, 10 are stored."""
    table = fresh_table()
    PostgresBackend.create_schema(f"{server.url}?table={table}")
    results = run_processes(create_threads, [(server.url, table, 8, 10)] * 4)
    outcomes = [outcome for worker in results for outcome in worker]
    assert outcomes.count("created") == 10
    assert outcomes.count("QuotaExceededError") == 22
    with taskstore.open(server.url, table=table) as store:
        assert len(store.list(OWNER, limit=100).tasks) == 10


def test_processes_compare_and_set_one_winner(make: Factory, server: PostgresServer) -> None:
    """Two processes compare-and-set from version 1 at once: exactly one wins (version 2),
    the other conflicts with actual 2; three rounds."""
    table = fresh_table()
    backend = make(table=table)
    for _ in range(3):
        backend.put((OWNER, "t"), b"{}", None, sort_ms=T0)
        backend.delete((OWNER, "t"))
        backend.put((OWNER, "t"), b"{}", None, sort_ms=T0)
        results = run_processes(put_if_version_once, [(server.url, table, w) for w in range(2)])
        assert sorted(results) == ["conflict:2", "won:2"]
        assert backend.get((OWNER, "t")).version == 2


def test_wait_in_another_process_wakes_on_notify(make: Factory, server: PostgresServer) -> None:
    """wait_for_change in another process (10 s timeout, a 30 s slice: only a notification can
    end it early) returns within a second of a write with an event made here."""
    table = fresh_table()
    backend = make(table=table)
    backend.put((OWNER, "t"), b"{}", None, sort_ms=T0)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(
            run_processes(wait_for_change, [(server.url, table, 1, ready)])
        )
    )
    waiter.start()
    try:
        assert ready.wait(60), "the waiting process never started"
        time.sleep(0.3)  # into its blocking wait; the outcome does not depend on this sleep
        backend.put_if_version((OWNER, "t"), b'{"n":2}', 1, event=b"{}")
        written = time.time()
    finally:
        waiter.join(60)
    [(returned, version)] = results[0]
    assert version == 2
    assert returned - written < 1.0, f"woke {returned - written:.2f}s after the write"


def test_listener_sees_events_of_another_process(make: Factory, server: PostgresServer) -> None:
    """Events written by another process (small and large) reach a listener here, in order,
    within a second."""
    table = fresh_table()
    backend = make(table=table)
    received, _, remove = _collect(backend)
    events = [b'{"n":1}', b'{"big":"' + b"z" * 12_000 + b'"}', b'{"n":3}']
    try:
        [written] = run_processes(write_event, [(server.url, table, events)])
        assert _wait_for(lambda: len(received) >= 3)
        assert time.time() - written < 1.0
        assert received == events
    finally:
        remove()


def test_processes_create_the_schema_concurrently(server: PostgresServer) -> None:
    """4 processes running create_schema on the same new table and schema at once all
    succeed (they queue on the advisory lock), and the schema is then complete."""
    url = f"{server.url}?table={fresh_table()}&schema={_schema_name()}"
    assert run_processes(create_schema, [(url,)] * 4) == ["ok"] * 4
    backend = PostgresBackend.from_url(url, create_schema=False)
    try:
        _exercise(backend)
    finally:
        backend.close()



@pytest.mark.parametrize("prepare", ["true", "false"])
def test_statements_work_prepared_and_unprepared(server: PostgresServer, prepare: str) -> None:
    """?prepare=false (for poolers that cannot keep prepared statements) and the default
    (prepared after 5 runs) both serve every operation, repeated past the threshold."""
    backend = PostgresBackend.from_url(f"{server.url}?table={fresh_table()}&prepare={prepare}")
    try:
        for _ in range(3):
            backend.delete((OWNER, "t"))
            backend.delete((OWNER, "u"))
            _exercise(backend)
    finally:
        backend.close()
    with pytest.raises(ConfigurationError, match="prepare"):
        PostgresBackend.from_url(f"{server.url}?prepare=maybe")
