"""SQLite backend: one file shared by every thread and process of one host, standard library
only (DESIGN §8).

Guarantees and their limits:

- **One host.** Processes coordinate through SQLite's file locks and, in WAL mode, a
  shared-memory index beside the file: both need a local filesystem. Never put the file on a
  network filesystem (NFS, SMB): locking there is unreliable and WAL does not work.
- **Every mutation is one transaction** opened with ``BEGIN IMMEDIATE``, which takes the
  file's single write lock before reading. Checks and writes (the quota count and insert of
  :meth:`~SqliteBackend.create`, the compare-and-set of
  :meth:`~SqliteBackend.put_if_version`) are therefore atomic across threads *and* processes:
  racing processes admit exactly ``max_live``, and exactly one compare-and-set wins.
- **WAL mode**: readers never block writers nor wait for them; every read is one statement
  in autocommit, its own consistent snapshot. Writers queue on the lock, waiting up to
  ``busy_timeout_ms`` per attempt, and are retried until the store's retry deadline (see
  :mod:`taskstore.backends._sqlite_db`): a lock held longer raises ``BackendError``
  (``transient=True``, ``applied=False``: the attempt was rolled back).
- **Durability** is SQLite's default (``synchronous=FULL``): every commit is synced to the WAL.

Costs: :meth:`~SqliteBackend.get` is one ``SELECT`` by primary key (no ``BEGIN``), naming the
outcome column only with ``include_outcome=True``; a mutation is one transaction of a few
statements by primary key; a :meth:`~SqliteBackend.list_by_prefix` page is one ``SELECT``
over the ``(owner, sort_ms DESC, task_id DESC)`` index starting at the keyset position;
:meth:`~SqliteBackend.cleanup_expired` walks the expiry index (O(expired)); a
:meth:`~SqliteBackend.scan` page is one ``SELECT`` over the primary key.

Expiry is judged against the caller's ``now_ms`` (the store's injectable clock) in every
statement, so an expired record is absent everywhere before cleanup reclaims it.

Events travel through a table (see :mod:`taskstore.backends._sqlite_events`): the writing
object delivers its own at once, every other object (in any process) within its
``poll_interval_s``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from taskstore.backends._options import url_options
from taskstore.backends._sqlite_db import Database
from taskstore.backends._sqlite_events import Changes, Origin, Poller, record_event
from taskstore.backends._sqlite_schema import (
    DEFAULT_TABLE,
    OPTIONS,
    TableNames,
    open_store,
    path_of,
    schema_sql,
    table_names,
)
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
)
from taskstore.backends.base import now_ms as _now_ms
from taskstore.errors import ConfigurationError, RecordNotFound, VersionConflict

__all__ = ["SqliteBackend"]

# A scan position: format tag, owner and task id (key bytes) of the last record returned.
_SCAN_CURSOR = msgspec.msgpack.Decoder(tuple[Literal["s1"], bytes, bytes])
# Expired records removed per cleanup transaction: bounds how long one holds the write lock.
_CLEANUP_BATCH = 500
# The live-record condition every statement applies with the caller's clock.
_LIVE = "(expires_at_ms IS NULL OR expires_at_ms > ?)"


def _record(key: RecordKey, row: tuple[Any, ...], outcome: bytes | None = None) -> VersionedRecord:
    """The record of ``row`` = ``(version, expires_at_ms, sort_ms, data)``."""
    version, expires_at_ms, sort_ms, data = row[:4]
    return VersionedRecord(
        key=key,
        data=bytes(data),
        version=int(version),
        expires_at_ms=None if expires_at_ms is None else int(expires_at_ms),
        sort_ms=int(sort_ms),
        outcome=outcome,
    )


class SqliteBackend:
    """A :class:`~taskstore.backends.base.StorageBackend` (and
    :class:`~taskstore.backends.base.ScanningBackend`) on one SQLite file, shared by every
    thread and process of one host; see the module docstring for the guarantees.

    Thread-safe: each thread uses a connection of its own (opened on first use; all closed by
    :meth:`close`). Listeners and waiters of this object hear its own writes at once and those
    of other objects on the same file and table, in any process, within ``poll_interval_s``
    (a background thread, started by the first :meth:`add_listener` or
    :meth:`wait_for_change`, polls the events table).

    :param path: the database file (created if missing); not ``:memory:`` (each thread's
        connection would see a database of its own).
    :param table: the store's table name in the file; stores with different names are
        independent (records, quotas, events). ASCII letters, digits and single underscores.
    :param busy_timeout_ms: how long one attempt waits for another connection's write lock
        (SQLite's busy timeout) before it counts as failed and is retried.
    :param create_schema: create the schema when the file has none (else
        ``ConfigurationError``: create it with ``python -m taskstore sql create-schema URL``).
    :param poll_interval_s: how often the event thread looks for other objects' events.
    :raises ConfigurationError: a bad option, a file without the schema (``create_schema``
        off) or with the schema of another version.
    :raises BackendError: the file cannot be opened or read.
    """

    max_variable_bytes: int | None = None
    max_result_bytes: int | None = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout_ms: int = 5000,
        create_schema: bool = True,
        poll_interval_s: float = 0.05,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"path must be a file path, got {path!r}")
        filename = os.fspath(path)
        if not filename or filename == ":memory:" or filename.startswith("file:"):
            raise ConfigurationError(
                f"SqliteBackend needs a database file path, got {filename!r}"
            )
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or (
            busy_timeout_ms < 0
        ):
            raise ConfigurationError("busy_timeout_ms must be a non-negative integer")
        if not isinstance(create_schema, bool):
            raise ConfigurationError("create_schema must be a boolean")
        if isinstance(poll_interval_s, bool) or not isinstance(poll_interval_s, (int, float)) or (
            not 0 < poll_interval_s <= 60
        ):
            raise ConfigurationError("poll_interval_s must be a number of seconds in (0, 60]")
        # Absolute: a thread opening its connection after the process changed directory
        # must still open this file.
        self._path = filename = os.path.abspath(filename)
        self._names: TableNames = table_names(table)
        # Built once: `get` is the hot path.
        get_sql = (
            "SELECT version, expires_at_ms, sort_ms, data{} FROM "
            + self._names.records
            + f" WHERE owner = ? AND task_id = ? AND {_LIVE}"
        )
        self._get_sql = get_sql.format("")
        self._get_with_outcome_sql = get_sql.format(", outcome")
        self._db = Database(filename, busy_timeout_ms, "SqliteBackend")
        # Tags this object's event rows, so its poller skips what it delivered itself.
        self._origin = Origin()
        self._changes = Changes()
        self._poller = Poller(self._db, self._names, self._origin, self._changes, poll_interval_s)
        try:
            self._db.read(
                "open", lambda conn: open_store(conn, self._names, filename, create_schema)
            )
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteBackend(path={self._path!r}, table={self._names.table!r})"

    @property
    def path(self) -> str:
        """The database file (absolute)."""
        return self._path

    @property
    def table(self) -> str:
        """The store's table name (lower-cased)."""
        return self._names.table

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteBackend:
        """Build from ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
        (SQLAlchemy's convention); query parameters are options, keyword options win.

        Options: ``table`` (default ``taskstore_tasks``), ``busy_timeout_ms`` (default 5000),
        ``create_schema`` (default ``true``) and ``poll_interval_s`` (default 0.05). How long
        calls retry a locked file is the store's ``retry_deadline_ms`` (a query option of
        :func:`taskstore.open` for every URL), handed to each call; see
        :func:`~taskstore.backends.base.retrying_until`.

        :raises ConfigurationError: another scheme, a host, no path, an unknown option or a
            bad value; the schema missing (``create_schema=false``) or of another version.
        :raises BackendError: the file cannot be opened.
        """
        path = path_of(url)
        return cls(path, **url_options(url, options, OPTIONS))

    @classmethod
    def schema_sql(cls, url: str) -> str:
        """The SQL creating the schema of the store ``url`` names (its ``table`` option):
        tables, indexes and the schema-version row, idempotent (``IF NOT EXISTS``, ``INSERT OR
        IGNORE``); ``sqlite3 FILE < schema.sql`` applies it.

        :raises ConfigurationError: not a valid ``sqlite://`` URL or option.
        """
        path_of(url)
        params = url_options(url, {}, OPTIONS)
        return schema_sql(table_names(params.get("table", DEFAULT_TABLE)))

    @classmethod
    def create_schema(cls, url: str) -> None:
        """Create the schema of the store ``url`` names, unless it exists (idempotent).

        :raises ConfigurationError: the file holds this store at another schema version, or
            a bad URL.
        :raises BackendError: the file cannot be opened or written.
        """
        cls.from_url(url, create_schema=True).close()

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        self._db.check_open()

    def _live_version(
        self, conn: sqlite3.Connection, owner: bytes, task_id: bytes, now: int
    ) -> int:
        rows = conn.execute(
            f"SELECT version FROM {self._names.records} "
            f"WHERE owner = ? AND task_id = ? AND {_LIVE}",
            (owner, task_id, now),
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    # -- the contract ----------------------------------------------------------------------

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """See :meth:`StorageBackend.get <taskstore.backends.base.StorageBackend.get>`.

        One ``SELECT`` by primary key in autocommit; the outcome column is only named with
        ``include_outcome``.

        :raises RecordNotFound: absent or expired at ``now_ms``.
        :raises BackendError: the file failed.
        """
        sql = self._get_with_outcome_sql if include_outcome else self._get_sql
        params = (key_bytes(key[0]), key_bytes(key[1]), _now_ms(now_ms))
        row = self._db.read("get", lambda conn: conn.execute(sql, params).fetchone())
        if row is None:
            raise RecordNotFound(key)
        outcome = row[4] if include_outcome else None
        return _record(
            (key[0], key[1]), row, None if outcome is None else bytes(outcome)
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

        One transaction: read the stored version, then update or insert (and the event row).

        :raises BackendError: the file failed.
        """
        self._check_open()
        check_expiry(expires_at_ms)
        now = _now_ms(now_ms)
        owner, task_id = key_bytes(key[0]), key_bytes(key[1])
        records = self._names.records

        def body(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"SELECT version, expires_at_ms, sort_ms FROM {records} "
                "WHERE owner = ? AND task_id = ?",
                (owner, task_id),
            ).fetchall()
            if rows:
                old_version, old_expiry, old_sort = rows[0]
                live = old_expiry is None or old_expiry > now
                version = old_version + 1 if live else 1
                new_sort = sort_ms if sort_ms is not None else (old_sort if live else now)
                # A stored outcome is kept by a write without one, unless the record expired
                # (then it is gone with it).
                keep_outcome = live and outcome is None
                conn.execute(
                    f"UPDATE {records} SET version = ?, expires_at_ms = ?, sort_ms = ?, "
                    "data = ?, outcome = CASE WHEN ? THEN outcome ELSE ? END "
                    "WHERE owner = ? AND task_id = ?",
                    (version, expires_at_ms, new_sort, data, keep_outcome, outcome, owner,
                     task_id),
                )
            else:
                version = 1
                conn.execute(
                    f"INSERT INTO {records} "
                    "(owner, task_id, version, expires_at_ms, sort_ms, data, outcome) "
                    "VALUES (?, ?, 1, ?, ?, ?, ?)",
                    (owner, task_id, expires_at_ms, now if sort_ms is None else sort_ms, data,
                     outcome),
                )
            if event is not None:
                record_event(conn, self._names, self._origin.value, key, event)
            return int(version)

        version = self._db.write("put", body)
        self._changes.written(key, event)
        return version

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

        One transaction: ``UPDATE … WHERE version = ?`` on the live record, judged by its row
        count; only a conflict reads the actual version, to report it.

        :raises VersionConflict: the live version is not ``expected`` (0: absent or expired).
        :raises BackendError: the file failed.
        """
        self._check_open()
        if not isinstance(expires_at_ms, Keep):
            check_expiry(expires_at_ms)
        now = _now_ms(now_ms)
        owner, task_id = key_bytes(key[0]), key_bytes(key[1])
        records = self._names.records
        set_expiry = "" if expires_at_ms is KEEP else "expires_at_ms = ?, "
        sql = (
            f"UPDATE {records} SET version = version + 1, {set_expiry}data = ?, "
            "outcome = coalesce(?, outcome) "
            f"WHERE owner = ? AND task_id = ? AND version = ? AND {_LIVE}"
        )
        params: tuple[Any, ...] = (data, outcome, owner, task_id, expected, now)
        if expires_at_ms is not KEEP:
            params = (expires_at_ms, *params)

        def body(conn: sqlite3.Connection) -> int:
            if conn.execute(sql, params).rowcount != 1:
                actual = self._live_version(conn, owner, task_id, now)
                raise VersionConflict((key[0], key[1]), expected, actual)
            if event is not None:
                record_event(conn, self._names, self._origin.value, key, event)
            return expected + 1

        version = self._db.write("put_if_version", body)
        self._changes.written(key, event)
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

        One transaction holding the file's write lock throughout: with a quota, the owner's
        expired records are reclaimed first (expired records are absent anyway; the memory
        and Redis backends reclaim here too), so the owner's record count, kept by triggers in
        ``<table>__owners``, is its live count: the quota reads one row, whatever the owner
        holds. Then the key check, the insert (over an expired record of the key, if any) and
        the event row. Racing threads and processes admit exactly ``max_live``.

        :raises VersionConflict: the key is live (``actual`` = its version).
        :raises QuotaExceededError: the owner already holds ``max_live`` live records.
        :raises BackendError: the file failed.
        """
        self._check_open()
        check_expiry(expires_at_ms)
        now = _now_ms(now_ms)
        owner, task_id = key_bytes(key[0]), key_bytes(key[1])
        records = self._names.records

        def body(conn: sqlite3.Connection) -> int:
            if max_live is not None:
                conn.execute(
                    f"DELETE FROM {records} WHERE owner = ? AND expires_at_ms <= ?", (owner, now)
                )
            rows = conn.execute(
                f"SELECT version, expires_at_ms FROM {records} WHERE owner = ? AND task_id = ?",
                (owner, task_id),
            ).fetchall()
            if rows and (rows[0][1] is None or rows[0][1] > now):
                raise VersionConflict((key[0], key[1]), 0, int(rows[0][0]))
            if max_live is not None:
                counted = conn.execute(
                    f"SELECT records FROM {self._names.owners} WHERE owner = ?", (owner,)
                ).fetchall()
                if (counted[0][0] if counted else 0) >= max_live:
                    raise quota_exceeded(max_live)
            if rows:
                # The key's expired record is absent: replaced whole, its outcome included.
                conn.execute(
                    f"UPDATE {records} SET version = 1, expires_at_ms = ?, sort_ms = ?, "
                    "data = ?, outcome = NULL WHERE owner = ? AND task_id = ?",
                    (expires_at_ms, sort_ms, data, owner, task_id),
                )
            else:
                conn.execute(
                    f"INSERT INTO {records} "
                    "(owner, task_id, version, expires_at_ms, sort_ms, data) "
                    "VALUES (?, ?, 1, ?, ?, ?)",
                    (owner, task_id, expires_at_ms, sort_ms, data),
                )
            if event is not None:
                record_event(conn, self._names, self._origin.value, key, event)
            return 1

        version = self._db.write("create", body)
        self._changes.written(key, event)
        return version

    def delete(self, key: RecordKey) -> bool:
        """See :meth:`StorageBackend.delete <taskstore.backends.base.StorageBackend.delete>`.

        One transaction of one ``DELETE`` by primary key; this object's waiters on the key
        are woken (listeners get no event).

        :raises BackendError: the file failed.
        """
        self._check_open()
        params = (key_bytes(key[0]), key_bytes(key[1]))
        sql = f"DELETE FROM {self._names.records} WHERE owner = ? AND task_id = ?"
        removed = self._db.write("delete", lambda conn: conn.execute(sql, params).rowcount > 0)
        if removed:
            self._changes.written(key, None)
        return removed

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

        One ``SELECT`` on the listing index from the keyset position, outcomes never read.
        With ``after``, the page starts *at* the anchor, one row more: the anchor comes first
        exactly when it is still live, which is the stale-cursor check, in the same statement
        (and snapshot) as the page. Cost: the page plus the expired records it steps over.

        :raises RecordNotFound: ``after`` names a record that is no longer live.
        :raises BackendError: the file failed.
        """
        self._check_open()
        now = _now_ms(now_ms)
        limit = max(limit, 0)
        if limit == 0 and after is None:
            return []
        owner_bytes = key_bytes(owner)
        where = f"owner = ? AND {_LIVE}"
        params: tuple[Any, ...] = (owner_bytes, now)
        anchor = b""
        if after is not None:
            anchor = key_bytes(after.task_id)
            where += " AND (sort_ms, task_id) <= (?, ?)"
            params = (*params, after.sort_ms, anchor)
        sql = (
            f"SELECT task_id, version, expires_at_ms, sort_ms, data FROM {self._names.records} "
            f"WHERE {where} ORDER BY sort_ms DESC, task_id DESC LIMIT ?"
        )
        wanted = limit + (after is not None)
        rows = self._db.read(
            "list_by_prefix", lambda conn: conn.execute(sql, (*params, wanted)).fetchall()
        )
        if after is not None:
            if not rows or rows[0][0] != anchor or rows[0][3] != after.sort_ms:
                raise RecordNotFound((owner, after.task_id))
            rows = rows[1:]
        return [_record((owner, key_str(row[0])), row[1:]) for row in rows]

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """See :meth:`StorageBackend.cleanup_expired
        <taskstore.backends.base.StorageBackend.cleanup_expired>`.

        Batches of up to 500 expired records, each one transaction, found on the expiry index:
        O(expired), and the write lock is never held for long.

        :raises BackendError: the file failed.
        """
        self._check_open()
        now = _now_ms(now_ms)
        records = self._names.records
        sql = (
            f"DELETE FROM {records} WHERE rowid IN (SELECT rowid FROM {records} "
            f"WHERE expires_at_ms <= ? LIMIT {_CLEANUP_BATCH})"
        )
        removed = 0
        while True:
            batch = self._db.write(
                "cleanup_expired", lambda conn: conn.execute(sql, (now,)).rowcount
            )
            removed += batch
            if batch < _CLEANUP_BATCH:
                return removed

    def scan(
        self, cursor: str | None = None, limit: int = 100, *, now_ms: int | None = None
    ) -> ScanPage:
        """See :meth:`ScanningBackend.scan <taskstore.backends.base.ScanningBackend.scan>`.

        Order: by owner, then task id (their key bytes, i.e. code point order), on the primary
        key index; the cursor is the last key returned, a position that survives writes and
        deletes. One ``SELECT`` per page, outcomes never read; pages are full until the last,
        which carries no cursor. Cost: the page plus the expired records it steps over.

        :raises InvalidCursorError: a cursor no SQLite backend issued.
        :raises InvalidParamsError: ``limit`` below 1.
        :raises BackendError: the file failed.
        """
        self._check_open()
        check_scan_limit(limit)
        now = _now_ms(now_ms)
        where = _LIVE
        params: tuple[Any, ...] = (now,)
        if cursor is not None:
            _, owner, task_id = decode_scan_cursor(cursor, _SCAN_CURSOR)
            where += " AND (owner, task_id) > (?, ?)"
            params = (now, owner, task_id)
        sql = (
            "SELECT owner, task_id, version, expires_at_ms, sort_ms, data "
            f"FROM {self._names.records} WHERE {where} ORDER BY owner, task_id LIMIT ?"
        )
        # One more than asked for: whether it exists tells if this is the last page.
        rows = self._db.read(
            "scan", lambda conn: conn.execute(sql, (*params, limit + 1)).fetchall()
        )
        records = [_record((key_str(row[0]), key_str(row[1])), row[2:]) for row in rows[:limit]]
        if len(rows) <= limit:
            return ScanPage(records, None)
        last = rows[limit - 1]
        return ScanPage(records, encode_scan_cursor(("s1", bytes(last[0]), bytes(last[1]))))

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """See :meth:`StorageBackend.wait_for_change
        <taskstore.backends.base.StorageBackend.wait_for_change>`.

        Registers as a waiter on ``key`` and makes sure the event thread runs, *then* reads
        the stored version (one ``SELECT``): a write either shows in that read or wakes the
        waiter afterwards (at once from this object, within ``poll_interval_s`` from others
        when it carries an event). Writes without an event by other objects wake no one; the
        caller re-reads on its timeout.

        :raises BackendError: the read failed.
        """
        self._check_open()
        if timeout_s <= 0:
            return
        deadline = time.monotonic() + timeout_s
        self._poller.ensure_started("wait_for_change")
        woken = self._changes.waiters.add(key)
        try:
            # The stored version whether live or not, as the caller read it: the backend's
            # own clock is not the store's.
            sql = f"SELECT version FROM {self._names.records} WHERE owner = ? AND task_id = ?"
            params = (key_bytes(key[0]), key_bytes(key[1]))
            rows = self._db.read(
                "wait_for_change", lambda conn: conn.execute(sql, params).fetchall()
            )
            if (int(rows[0][0]) if rows else 0) != version:
                return
            remaining = deadline - time.monotonic()
            if remaining > 0:
                woken.wait(remaining)
        finally:
            self._changes.waiters.remove(key, woken)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """See :meth:`StorageBackend.add_listener
        <taskstore.backends.base.StorageBackend.add_listener>`.

        Starts the event thread if needed; every event committed after this returns is
        delivered: this object's own from the writing thread, others' from the event thread.

        :raises BackendError: the events table could not be read.
        """
        self._check_open()
        remove = self._changes.listeners.add(listener)
        try:
            self._poller.ensure_started("add_listener")
        except BaseException:
            remove()
            raise
        return remove

    def close(self) -> None:
        """Stop the event thread, wake every waiter, drop every listener and close every
        connection; later calls raise ``ConfigurationError``. Idempotent."""
        if self._db.closed:
            return
        self._changes.close()
        self._poller.stop()
        self._db.close()
        # The poller may have been starting while we stopped it: stop the thread it started.
        self._poller.stop()

    def _set_trace(self, callback: Callable[[str], None] | None) -> None:
        """Private (tests): pass every SQL statement any connection of this object runs to
        ``callback``."""
        self._db.set_trace(callback)

