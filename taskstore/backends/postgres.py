"""PostgreSQL backend: one statement per operation, cross-process safe, events over
LISTEN/NOTIFY (DESIGN §8).

The schema (a table per store, its indexes and four PL/pgSQL mutation functions) lives in
:mod:`taskstore.backends._postgres_schema`, the URL options in
:mod:`taskstore.backends._postgres_config`, connections, retries and the one mapping of driver
errors in :mod:`taskstore.backends._postgres_faults`, and the LISTEN connection in
:mod:`taskstore.backends._postgres_events`.

Costs, counted as the server counts statements (every call runs in autocommit: no BEGIN or
COMMIT): :meth:`~PostgresBackend.get` is one ``SELECT`` by primary key that never reads the
outcome column; every mutation is one call of its function (checks, compare-and-set by
``UPDATE … WHERE version = … RETURNING``, the quota, the write and the NOTIFY); a
:meth:`~PostgresBackend.list_by_prefix` page is one ``SELECT`` (the anchor check included) on
the index ``(owner, sort_ms DESC, task_id DESC)``; a :meth:`~PostgresBackend.scan` page is one
``SELECT`` on the primary key; :meth:`~PostgresBackend.cleanup_expired` deletes batches of
1000 through the expiry index, O(expired).

Quota: ``create`` takes a transaction-scoped advisory lock on a hash of (schema, table, owner)
before counting the owner's live records, inside its function, so creates for one owner are
serialized across every connection and process while other owners never wait; the lock goes
with the transaction, so nothing is left behind by a client that dies.

Expiry is judged against the caller's ``now_ms`` (the store's injectable clock) in every
statement, never the server's clock, so an expired record is absent everywhere (reads,
compare-and-set, create, the quota) before :meth:`~PostgresBackend.cleanup_expired` removes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from taskstore.backends._sql import POSTGRES_SCHEMA_VERSION, missing_schema, schema_mismatch
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
    decode_scan_cursor,
    encode_scan_cursor,
    key_bytes,
    key_str,
    quota_exceeded,
    write_token,
)
from taskstore.backends.base import now_ms as _now_ms
from taskstore.errors import (
    ConfigurationError,
    MissingDependencyError,
    RecordNotFound,
    VersionConflict,
)

try:
    import psycopg
    import psycopg.errors
    from psycopg_pool import ConnectionPool
except ImportError:
    raise MissingDependencyError(
        "The 'psycopg' and 'psycopg_pool' packages are needed for the PostgreSQL backend: "
        "pip install 'taskstore[postgres]'"
    ) from None

from taskstore.backends._postgres_admin import create_schema, create_schema_on
from taskstore.backends._postgres_config import (
    Settings,
    make_settings,
    prepare_conninfo,
    settings_from_url,
)
from taskstore.backends._postgres_events import Notifier
from taskstore.backends._postgres_faults import ConnectErrors, Retrier, connection_classes
from taskstore.backends._postgres_schema import (
    DEFAULT_TABLE,
    Statements,
    schema_sql,
    wake_name,
)

__all__ = ["PostgresBackend"]

_log = logging.getLogger("taskstore.backends.postgres")

_CLEANUP_BATCH = 1000
# A scan position: format tag, owner and task id (key bytes) of the last record returned.
_SCAN_CURSOR = msgspec.msgpack.Decoder(tuple[Literal["p1"], bytes, bytes])
# How long add_listener waits for LISTEN to be in place, so that events of writes made right
# after it returns are delivered.
_SUBSCRIBE_TIMEOUT_S = 5.0


class PostgresBackend:
    """A :class:`~taskstore.backends.base.StorageBackend` (and
    :class:`~taskstore.backends.base.ScanningBackend`) on PostgreSQL, shared by every thread
    and process using the same table.

    Thread-safe: each call borrows a connection from a ``psycopg_pool.ConnectionPool``
    (autocommit) for its one statement. Pool sizing: ``pool_max`` (default 10) bounds the
    connections, hence the statements in flight; threads beyond it queue for one until their
    retry deadline. Each backend holds one more connection for LISTEN once events or waits are
    used, so plan ``max_connections`` for ``(pool_max + 1) × processes``.

    Events travel over LISTEN/NOTIFY, so listeners and waiters in every process see every
    write that carries one (see :mod:`~taskstore.backends._postgres_events`).

    Quota: ``create`` counts the owner's live records under a transaction-scoped advisory
    lock on a hash of (schema, table, owner), inside its function: exact under any number of
    concurrent transactions in any number of processes, and nothing to clean up after a crash
    (see the module docstring).

    Privileges: creating the schema needs CREATE on the database (with ``?schema=``) or the
    schema. At run time, with ``?create_schema=false``, a role needs only USAGE on the schema,
    SELECT, INSERT, UPDATE and DELETE on its tables (``T``, ``T__events`` and
    ``taskstore__meta``), and EXECUTE on its four functions (PostgreSQL grants EXECUTE to
    PUBLIC by default). The events table's id is an identity column, so no sequence privilege
    is needed.

    Use :meth:`from_url`; the constructor takes a libpq connection string or URL without the
    backend's options.

    :param conninfo: where to connect (``postgresql://user:password@host:port/db`` or
        ``host=... dbname=...``).
    :param table: the store's table (default ``taskstore_tasks``): up to 40 letters, digits,
        ``_`` or ``-``, no ``__``. Two tables are two independent stores.
    :param schema: the schema holding every object of the store (default ``public``);
        created if missing when the backend creates its schema.
    :param create_schema: create the tables and functions if they are missing (default
        ``True``); with ``False`` a database without them is refused with
        ``ConfigurationError`` saying what to run.
    :param pool_min: connections the pool keeps open (default 1).
    :param pool_max: the most connections the pool opens (default 10).
    :param timeout: seconds to wait for the server's answer to one statement (default 30): a
        stalled server or network fails the attempt, which is retried until the deadline.
    :param wait_slice_s: the longest single sleep of :meth:`wait_for_change`; bounds the delay
        a notification lost to a broken connection can cause (the store then re-reads).
    :raises ConfigurationError: a bad option, or a schema of another version (or none, with
        ``create_schema=False``).
    :raises BackendError: the database cannot be reached before the retry deadline, or
        refuses the connection.
    """

    max_variable_bytes: int | None = None
    max_result_bytes: int | None = None

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        create_schema: bool = True,
        pool_min: int = 1,
        pool_max: int = 10,
        timeout: float = 30.0,
        wait_slice_s: float = 1.0,
    ) -> None:
        settings = make_settings(
            prepare_conninfo(conninfo),
            table=table,
            schema=schema,
            create_schema=create_schema,
            pool_min=pool_min,
            pool_max=pool_max,
            timeout=timeout,
            wait_slice_s=wait_slice_s,
        )
        self._open(settings, settings.display_url)

    def _open(self, settings: Settings, url: str) -> None:
        self._settings = settings
        self._names = settings.names
        self._sql = Statements(settings.names)
        self._url = url
        self._closed = False
        self._stopping = threading.Event()
        self._connect_errors = ConnectErrors()
        self._listen_class, pool_class = connection_classes(
            settings.timeout, self._stopping, self._connect_errors
        )
        self._pool: ConnectionPool[Any] = ConnectionPool(
            settings.conninfo,
            connection_class=pool_class,
            # Autocommit: a statement is its own transaction, no BEGIN/COMMIT round trips.
            # Prepared server-side after 5 runs on a connection: parsing and planning every
            # `get` again costs about a third of its time; ?prepare=false sends every
            # statement whole (for poolers that cannot keep prepared statements).
            kwargs={
                "autocommit": True,
                "prepare_threshold": 5 if settings.prepare else None,
            },
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            open=True,
            name=f"taskstore:{settings.names.schema}.{settings.names.table}",
        )
        self._retrier = Retrier(self._pool, self._connect_errors)
        self._notifier = Notifier(
            lambda: self._listen_class.connect(
                settings.conninfo, autocommit=True, prepare_threshold=None
            ),
            settings.names.channel,
            self._sql.events,
        )
        try:
            self._check_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        # The URL without its password or query: a repr ends up in logs.
        return (
            f"PostgresBackend({self._settings.display_url!r}, schema={self._names.schema!r}, "
            f"table={self._names.table!r})"
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresBackend:
        """Build from ``postgresql://[user[:password]@]host[:port]/dbname`` (also
        ``postgres://``); query parameters are options, keyword options win.

        Backend options: ``table``, ``schema``, ``create_schema``, ``pool_min``, ``pool_max``,
        ``timeout`` and ``wait_slice_s`` (see the class). libpq parameters pass on to the
        connection (``application_name`` (default ``taskstore``), ``connect_timeout``
        (seconds, default 5), ``sslmode`` and the other ``ssl*``, ``options``, ``keepalives*``,
        ``tcp_user_timeout``, ``target_session_attrs``, ``user``, ``password``, ...). How
        long calls retry transient faults is the store's ``retry_deadline_ms``, handed to each
        call; see :func:`~taskstore.backends.base.retrying_until`.

        :raises ConfigurationError: another scheme, an unknown option, a bad value or URL, or
            a schema of another version (or none, with ``create_schema=false``).
        :raises BackendError: the database cannot be reached, or refuses the connection.
        """
        settings = settings_from_url(url, options)
        backend = cls.__new__(cls)
        backend._open(settings, url)
        return backend

    # -- schema management (taskstore.backends._sql.SchemaManagedBackend) ------------------

    @classmethod
    def schema_sql(cls, url: str) -> str:
        """The SQL that creates the schema of the store ``url`` names (its ``table`` and
        ``schema`` options): ``CREATE SCHEMA IF NOT EXISTS`` when ``?schema=`` is given, the
        tables, indexes and functions, and the schema-version row. Plain SQL, idempotent:
        ``psql -f`` applies it as is (run it as a role allowed to create them).

        :raises ConfigurationError: a bad URL or option.
        """
        settings = settings_from_url(url, {})
        return schema_sql(settings.names, create_schema=settings.own_schema)

    @classmethod
    def create_schema(cls, url: str) -> None:
        """Create the schema of the store ``url`` names unless it is in place (idempotent;
        concurrent callers in any process queue on an advisory lock).

        :raises ConfigurationError: a bad URL or option, or the schema at another version.
        :raises BackendError: the database failed (transient faults are retried until the
            retry deadline).
        """
        create_schema(settings_from_url(url, {}), url)

    def _check_schema(self) -> None:
        """Refuse a database holding this store's schema at another version; create it when
        missing, or refuse that too with ``create_schema=False``."""

        def read(conn: psycopg.Connection[Any]) -> int | None:
            try:
                row = conn.execute(self._sql.schema_version, [self._names.table]).fetchone()
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                return None
            return None if row is None else int(row[0])

        found = self._retrier.call("open", read)
        if found == POSTGRES_SCHEMA_VERSION:
            return
        if found is not None:
            raise schema_mismatch(self._url, found, POSTGRES_SCHEMA_VERSION)
        if not self._settings.create_schema:
            raise missing_schema(self._url)
        self._retrier.call(
            "create_schema", lambda conn: create_schema_on(conn, self._settings, self._url)
        )

    # -- helpers ---------------------------------------------------------------------------

    @property
    def table(self) -> str:
        """The store's table."""
        return self._names.table

    @property
    def schema(self) -> str:
        """The schema holding the store's objects."""
        return self._names.schema

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of the store's events."""
        return self._names.channel

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The connection pool (for its statistics; the backend owns it)."""
        return self._pool

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this PostgresBackend is closed")

    def _one(self, operation: str, statement: str, params: Any, *, write: bool) -> Any:
        """Run ``statement`` (one round trip) and return its single row, ``None`` if none."""

        def run(conn: psycopg.Connection[Any]) -> Any:
            return conn.execute(statement, params, binary=True).fetchone()

        return self._retrier.call(operation, run, write=write)

    def _all(self, operation: str, statement: str, params: Any) -> list[Any]:
        """Run ``statement`` (one round trip) and return its rows."""

        def run(conn: psycopg.Connection[Any]) -> list[Any]:
            return conn.execute(statement, params, binary=True).fetchall()

        rows: list[Any] = self._retrier.call(operation, run)
        return rows

    # -- the contract ----------------------------------------------------------------------

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """See :meth:`StorageBackend.get <taskstore.backends.base.StorageBackend.get>`.

        One ``SELECT`` by primary key; the outcome column is only named when
        ``include_outcome`` is set.

        :raises RecordNotFound: absent or expired at ``now_ms``.
        :raises BackendError: the database failed.
        """
        self._check_open()
        params = {
            "owner": key_bytes(key[0]),
            "task_id": key_bytes(key[1]),
            "now": _now_ms(now_ms),
        }
        statement = self._sql.get_with_outcome if include_outcome else self._sql.get
        row = self._one("get", statement, params, write=False)
        if row is None:
            raise RecordNotFound(key)
        return VersionedRecord(
            key=(key[0], key[1]),
            data=bytes(row[1]),
            version=int(row[0]),
            expires_at_ms=row[2],
            sort_ms=int(row[3]),
            outcome=bytes(row[4]) if include_outcome and row[4] is not None else None,
        )

    def _mutation_key(self, key: RecordKey) -> tuple[bytes, bytes, str]:
        owner, task_id = key_bytes(key[0]), key_bytes(key[1])
        return owner, task_id, wake_name(owner, task_id)

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

        One call of ``T__put`` (an ``INSERT … ON CONFLICT DO UPDATE``), NOTIFY included.

        :raises BackendError: the database failed.
        """
        self._check_open()
        check_expiry(expires_at_ms)
        owner, task_id, wake = self._mutation_key(key)
        # The write token: the same for every attempt of this call, so a replay after a lost
        # reply finds its own write and answers with its version instead of writing again.
        token = write_token()
        row = self._one(
            "put",
            self._sql.put,
            (owner, task_id, data, expires_at_ms, sort_ms, outcome, _now_ms(now_ms), token,
             wake, event),
            write=True,
        )
        return int(row[0])

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

        One call of ``T__put_if_version`` (``UPDATE … WHERE version = expected … RETURNING``),
        NOTIFY included.

        :raises VersionConflict: the live version is not ``expected`` (0: absent or expired).
        :raises BackendError: the database failed.
        """
        self._check_open()
        keep = isinstance(expires_at_ms, Keep)
        if not keep:
            check_expiry(expires_at_ms)
        owner, task_id, wake = self._mutation_key(key)
        token = write_token()
        row = self._one(
            "put_if_version",
            self._sql.put_if_version,
            (owner, task_id, data, expected, keep, None if keep else expires_at_ms, outcome,
             _now_ms(now_ms), token, wake, event),
            write=True,
        )
        status, version = int(row[0]), int(row[1])
        if status != 0:
            raise VersionConflict((key[0], key[1]), expected, version)
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
        """See :meth:`StorageBackend.create <taskstore.backends.base.StorageBackend.create>`.

        One call of ``T__create``: the live-key check, the owner's advisory lock and live
        count (with ``max_live``), the insert and the NOTIFY are one transaction, so racing
        processes admit exactly ``max_live``.

        :raises VersionConflict: the key is live (``actual`` = its version).
        :raises QuotaExceededError: the owner already holds ``max_live`` live records.
        :raises BackendError: the database failed.
        """
        self._check_open()
        check_expiry(expires_at_ms)
        owner, task_id, wake = self._mutation_key(key)
        token = write_token()
        row = self._one(
            "create",
            self._sql.create,
            (owner, task_id, data, expires_at_ms, sort_ms, max_live, _now_ms(now_ms), token,
             wake, event),
            write=True,
        )
        status = int(row[0])
        if status == 2:
            assert max_live is not None
            raise quota_exceeded(max_live)
        if status == 1:
            raise VersionConflict((key[0], key[1]), 0, int(row[1]))
        return int(row[1])

    def delete(self, key: RecordKey) -> bool:
        """See :meth:`StorageBackend.delete <taskstore.backends.base.StorageBackend.delete>`.

        One call of ``T__delete``; waiters on the key are woken (listeners get no event).

        :raises BackendError: the database failed.
        """
        self._check_open()
        row = self._one("delete", self._sql.delete, self._mutation_key(key), write=True)
        return bool(row[0])

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

        One ``SELECT`` per page on the listing index, the check that ``after`` is still live
        included; outcomes are never read. Cost: the page plus the expired records it steps
        over.

        :raises RecordNotFound: ``after`` names a record that is no longer live.
        :raises BackendError: the database failed.
        """
        self._check_open()
        if limit <= 0 and after is None:
            return []
        params: dict[str, Any] = {
            "owner": key_bytes(owner),
            "now": _now_ms(now_ms),
            "limit": max(limit, 0),
        }
        if after is None:
            rows = self._all("list_by_prefix", self._sql.list_first, params)
        else:
            params.update(after_id=key_bytes(after.task_id), after_sort=after.sort_ms)
            rows = self._all("list_by_prefix", self._sql.list_after, params)
            if not rows or not rows[0][0]:
                raise RecordNotFound((owner, after.task_id))
            rows = [row[1:] for row in rows if row[1] is not None]
        return [
            VersionedRecord(
                key=(owner, key_str(bytes(task_id))),
                data=bytes(data),
                version=int(version),
                expires_at_ms=expires,
                sort_ms=int(sort),
            )
            for task_id, version, data, expires, sort in rows
        ]

    def scan(
        self, cursor: str | None = None, limit: int = 100, *, now_ms: int | None = None
    ) -> ScanPage:
        """See :meth:`ScanningBackend.scan <taskstore.backends.base.ScanningBackend.scan>`.

        Order: by primary key, ``(owner, task_id)`` as bytes. The cursor is the key of the
        last record returned, a keyset position that survives writes and deletes. One
        ``SELECT`` per page (outcomes never read); pages are full until the last, which
        carries no cursor. Cost of a page: the page plus the expired records it steps over.

        :raises InvalidCursorError: a cursor no PostgreSQL backend issued.
        :raises InvalidParamsError: ``limit`` below 1.
        :raises BackendError: the database failed.
        """
        self._check_open()
        check_scan_limit(limit)
        params: dict[str, Any] = {"now": _now_ms(now_ms), "limit": limit + 1}
        if cursor is None:
            rows = self._all("scan", self._sql.scan_first, params)
        else:
            _, owner, task_id = decode_scan_cursor(cursor, _SCAN_CURSOR)
            params.update(owner=owner, task_id=task_id)
            rows = self._all("scan", self._sql.scan_after, params)
        records = [
            VersionedRecord(
                key=(key_str(bytes(owner)), key_str(bytes(task_id))),
                data=bytes(data),
                version=int(version),
                expires_at_ms=expires,
                sort_ms=int(sort),
            )
            for owner, task_id, version, data, expires, sort in rows[:limit]
        ]
        if len(rows) <= limit:
            return ScanPage(records, None)
        last = rows[limit - 1]
        return ScanPage(records, encode_scan_cursor(("p1", bytes(last[0]), bytes(last[1]))))

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """See :meth:`StorageBackend.cleanup_expired
        <taskstore.backends.base.StorageBackend.cleanup_expired>`.

        ``DELETE`` statements of up to 1000 expired records each, found through the expiry
        index: O(expired). Records a concurrent write holds are left for the next cleanup.

        :raises BackendError: the database failed.
        """
        self._check_open()
        params = {"now": _now_ms(now_ms), "limit": _CLEANUP_BATCH}

        def run(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(self._sql.cleanup, params).rowcount

        removed = 0
        while True:
            count: int = self._retrier.call("cleanup_expired", run, write=True)
            removed += count
            if count < _CLEANUP_BATCH:
                return removed

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """See :meth:`StorageBackend.wait_for_change
        <taskstore.backends.base.StorageBackend.wait_for_change>`.

        Registers as a waiter, makes sure LISTEN is in place, *then* re-reads the version (one
        ``SELECT``), so a write either shows in that read or its NOTIFY wakes the waiter.
        Sleeps at most ``wait_slice_s``: a notification lost to a reconnect only delays the
        caller's re-read. Without LISTEN in place it degrades to short polling.

        :raises BackendError: the re-read failed.
        """
        self._check_open()
        if timeout_s <= 0:
            return
        deadline = time.monotonic() + timeout_s
        owner, task_id, wake = self._mutation_key(key)
        slice_s = self._settings.wait_slice_s
        self._notifier.ensure_started()
        woken = self._notifier.waiters.add(wake)
        try:
            listening = self._notifier.wait_ready(min(timeout_s, slice_s))
            # The wake-up every waiter gets when LISTEN is (re)established is for those
            # already past their read; this one reads next, so a write made until now shows in
            # that read, and only a later one should wake it.
            woken.clear()
            row = self._one(
                "wait_for_change",
                self._sql.version,
                {"owner": owner, "task_id": task_id},
                write=False,
            )
            if (0 if row is None else int(row[0])) != version:
                return
            remaining = deadline - time.monotonic()
            if remaining > 0:
                woken.wait(min(remaining, slice_s if listening else 0.05))
        finally:
            self._notifier.waiters.remove(wake, woken)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """See :meth:`StorageBackend.add_listener
        <taskstore.backends.base.StorageBackend.add_listener>`.

        Starts the LISTEN connection if needed and waits (up to 5 s) until it is in place, so
        the events of writes made after this returns are delivered. Listeners run on the
        backend's event thread.
        """
        self._check_open()
        remove = self._notifier.listeners.add(listener)
        self._notifier.ensure_started()
        if not self._notifier.wait_ready(_SUBSCRIBE_TIMEOUT_S):
            _log.warning("taskstore LISTEN not in place yet; events may be missed")
        return remove

    def close(self) -> None:
        """Stop the event thread and close the pool (waiting up to 5 s for its threads).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._notifier.stop()
        self._pool.close(timeout=5.0)

