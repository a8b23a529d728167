"""Where a SQLite store lives and its schema: the URL (file and options), the table names, the
``CREATE`` statements and the version check.

One store is one *table name* (``?table=``, default ``taskstore_tasks``) in one database file;
it owns the schema objects named after it below, plus a row in the file's shared version table:

- ``<table>``: the records, keyed by ``(owner, task_id)`` as BLOBs (:func:`key_bytes`, so any
  ``str`` fits, NUL and lone surrogates included, and ``memcmp`` order is code point order).
  ``outcome`` is the last column: SQLite walks a row's payload in column order, so reading
  ``data`` never touches the overflow pages of a large outcome.
- ``<table>__listing``: ``(owner, sort_ms DESC, task_id DESC)``, the newest-first keyset
  listing; ``<table>__expiry``: ``(expires_at_ms)``, so cleanup costs O(expired);
  ``<table>__owner_expiry``: ``(owner, expires_at_ms)``, so a create reclaims its owner's
  expired records in O(expired).
- ``<table>__owners``: ``(owner, records)``, how many records each owner has, kept by two
  triggers (``<table>__counted_insert``, ``<table>__counted_delete``) on every insert and
  delete whatever does it: the quota reads one row instead of counting the owner's records.
- ``<table>__events``: write events for listeners and waiters in other processes
  (``AUTOINCREMENT``: an id is never reused once pruned, so "ids above the last one seen" is
  exact).
- ``taskstore__schema``: ``(table_name, version)``, one row per store in the file.

Table names are ASCII letters, digits and single underscores, so the ``__`` of every derived
name can never be part of a store's own name: two stores on one file never collide. SQLite
folds identifier case, so names are lower-cased (``Tasks`` and ``tasks`` are one store).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

from taskstore.backends._options import Converter, to_bool, to_float, to_int, to_str
from taskstore.backends._sql import SQLITE_SCHEMA_VERSION, missing_schema, schema_mismatch
from taskstore.errors import ConfigurationError

__all__ = [
    "DEFAULT_TABLE",
    "META_TABLE",
    "OPTIONS",
    "TableNames",
    "check_schema",
    "open_store",
    "path_of",
    "schema_sql",
    "table_names",
    "url_of",
]

_log = logging.getLogger("taskstore.backends.sqlite")

#: The store's table when ``?table=`` is not given.
DEFAULT_TABLE = "taskstore_tasks"
#: The version table every store on a file shares (its ``__`` keeps it out of store names).
META_TABLE = "taskstore__schema"

#: The backend's URL options and their converters.
OPTIONS: dict[str, Converter] = {
    "table": to_str,
    "busy_timeout_ms": to_int,
    "create_schema": to_bool,
    "poll_interval_s": to_float,
}

# Letters first; single underscores inside; short enough for the derived names to stay short.
_TABLE_NAME = re.compile(r"[a-z](?:_?[a-z0-9])*\Z")
_MAX_TABLE_CHARS = 48


class TableNames(NamedTuple):
    """The schema objects of one store, as double-quoted SQL identifiers (``table``: bare)."""

    table: str
    records: str
    listing: str
    expiry: str
    owner_expiry: str
    owners: str
    counted_insert: str
    counted_delete: str
    events: str


def table_names(table: object) -> TableNames:
    """The names of the store called ``table``.

    :raises ConfigurationError: not 1 to 48 ASCII letters, digits and single underscores
        starting with a letter (``sqlite_`` is SQLite's own prefix).
    """
    name = table.lower() if isinstance(table, str) else None
    if (
        name is None
        or len(name) > _MAX_TABLE_CHARS
        or not _TABLE_NAME.match(name)
        or name.startswith("sqlite_")
    ):
        raise ConfigurationError(
            f"table must be 1 to {_MAX_TABLE_CHARS} ASCII letters, digits and single "
            f"underscores, starting with a letter (not sqlite_...), got {table!r}"
        )
    return TableNames(
        table=name,
        records=f'"{name}"',
        listing=f'"{name}__listing"',
        expiry=f'"{name}__expiry"',
        owner_expiry=f'"{name}__owner_expiry"',
        owners=f'"{name}__owners"',
        counted_insert=f'"{name}__counted_insert"',
        counted_delete=f'"{name}__counted_delete"',
        events=f'"{name}__events"',
    )


def schema_sql(names: TableNames) -> str:
    """The complete, idempotent SQL creating the store ``names`` (tables, indexes and its
    version row); ``sqlite3 FILE < schema.sql`` applies it."""
    return f"""CREATE TABLE IF NOT EXISTS "{META_TABLE}" (
    table_name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {names.records} (
    owner BLOB NOT NULL,
    task_id BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at_ms INTEGER,
    sort_ms INTEGER NOT NULL,
    data BLOB NOT NULL,
    outcome BLOB,
    PRIMARY KEY (owner, task_id)
);
CREATE INDEX IF NOT EXISTS {names.listing} ON {names.records} (owner, sort_ms DESC, task_id DESC);
CREATE INDEX IF NOT EXISTS {names.expiry} ON {names.records} (expires_at_ms);
CREATE INDEX IF NOT EXISTS {names.owner_expiry} ON {names.records} (owner, expires_at_ms);
CREATE TABLE IF NOT EXISTS {names.owners} (
    owner BLOB PRIMARY KEY,
    records INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS {names.counted_insert} AFTER INSERT ON {names.records} BEGIN
    INSERT OR IGNORE INTO {names.owners} (owner, records) VALUES (NEW.owner, 0);
    UPDATE {names.owners} SET records = records + 1 WHERE owner = NEW.owner;
END;
CREATE TRIGGER IF NOT EXISTS {names.counted_delete} AFTER DELETE ON {names.records} BEGIN
    UPDATE {names.owners} SET records = records - 1 WHERE owner = OLD.owner;
END;
CREATE TABLE IF NOT EXISTS {names.events} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin INTEGER NOT NULL,
    owner BLOB NOT NULL,
    task_id BLOB NOT NULL,
    event BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
INSERT OR IGNORE INTO "{META_TABLE}" (table_name, version)
    VALUES ('{names.table}', {SQLITE_SCHEMA_VERSION});
"""


def _found_version(conn: sqlite3.Connection, names: TableNames) -> object:
    """The schema version recorded for ``names`` (``None``: no schema)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)
    ).fetchall()
    if not exists:
        return None
    rows = conn.execute(
        f'SELECT version FROM "{META_TABLE}" WHERE table_name = ?', (names.table,)
    ).fetchall()
    return rows[0][0] if rows else None


def check_schema(conn: sqlite3.Connection, names: TableNames, url: str, create: bool) -> None:
    """Make sure the file holds the store ``names`` at ``SQLITE_SCHEMA_VERSION``, creating it
    (one ``BEGIN IMMEDIATE`` transaction) when absent and ``create`` is set.

    :raises ConfigurationError: another version (:func:`schema_mismatch`), or no schema and
        ``create`` off (:func:`missing_schema`).
    :raises sqlite3.Error: the database failed (the caller maps and retries it).
    """
    found = _found_version(conn, names)
    if found is None:
        if not create:
            raise missing_schema(url)
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{schema_sql(names)}COMMIT;\n")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # Read back rather than assume: a process racing this one may have created the
        # store first, at another version (INSERT OR IGNORE kept its row).
        found = _found_version(conn, names)
    if found != SQLITE_SCHEMA_VERSION:
        raise schema_mismatch(url, found, SQLITE_SCHEMA_VERSION)


def open_store(conn: sqlite3.Connection, names: TableNames, path: str, create: bool) -> None:
    """What opening the store ``names`` in the file at ``path`` takes: WAL mode, then
    :func:`check_schema`."""
    # Persistent in the file: the first opener switches it, later ones find it set.
    (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0]
    if str(mode).lower() != "wal":
        _log.warning(
            "SQLite file %s stays in journal mode %s, not WAL: readers and writers will "
            "block each other",
            path,
            mode,
        )
    check_schema(conn, names, url_of(path), create)


def path_of(url: str) -> str:
    """The file of ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a sqlite:// URL: {parts.scheme}://")
    if parts.netloc:
        raise ConfigurationError(
            "a sqlite:// URL names no host: sqlite:///relative/path.db or "
            f"sqlite:////absolute/path.db, got host {parts.netloc!r}"
        )
    # SQLAlchemy's convention: the path after the third slash, so a fourth makes it absolute.
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not path:
        raise ConfigurationError(
            "a sqlite:// URL needs a file: sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return path


def url_of(path: str) -> str:
    """The ``sqlite://`` URL of ``path`` (the inverse of :func:`path_of`)."""
    return f"sqlite:///{quote(path, safe='/')}"
