"""The PostgreSQL backend's schema management: create a store's schema, once, safely.

Used by :meth:`PostgresBackend.create_schema
<taskstore.backends.postgres.PostgresBackend.create_schema>` (``python -m taskstore sql
create-schema URL``) and by a backend that opens on a database without its schema (unless
``?create_schema=false``). Creation is one transaction holding a database-wide advisory lock:
concurrent creators in any process queue on it instead of colliding in the catalog (two
``CREATE TABLE IF NOT EXISTS`` racing can fail), and the version row is read only once the lock
is held, so the last of them finds the work done.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from taskstore.backends._postgres_config import Settings
from taskstore.backends._postgres_faults import DRIVER_ERRORS, backend_error, is_transient
from taskstore.backends._postgres_schema import quote_literal, schema_sql
from taskstore.backends._sql import POSTGRES_SCHEMA_VERSION, schema_mismatch
from taskstore.backends.base import retry_deadline

__all__ = ["SCHEMA_LOCK", "create_schema", "create_schema_on"]

#: The advisory lock every creator of a taskstore schema in a database takes (a constant:
#: "taskstore" in ASCII, truncated to 64 bits).
SCHEMA_LOCK = 0x7461736B73746F72


def create_schema_on(conn: psycopg.Connection[Any], settings: Settings, url: str) -> None:
    """Create the store's schema on ``conn`` (autocommit) unless its version row is there, in
    one transaction holding :data:`SCHEMA_LOCK`.

    :raises ConfigurationError: the version row holds another version (``url`` is named,
        without its password).
    """
    names = settings.names
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s::bigint)", [SCHEMA_LOCK])
        # Read after the lock: whoever held it has committed, and this statement's snapshot
        # sees its work.
        exists = conn.execute("SELECT to_regclass(%s::text)", [names.meta]).fetchone()
        found = None
        if exists is not None and exists[0] is not None:
            row = conn.execute(
                f"SELECT m.schema_version FROM {names.meta} m "
                f"WHERE m.table_name = {quote_literal(names.table)}"
            ).fetchone()
            found = None if row is None else int(row[0])
        if found is None:
            conn.execute(schema_sql(names, create_schema=settings.own_schema))
        elif found != POSTGRES_SCHEMA_VERSION:
            raise schema_mismatch(url, found, POSTGRES_SCHEMA_VERSION)


def create_schema(settings: Settings, url: str) -> None:
    """:func:`create_schema_on` a connection of its own, retrying transient faults until the
    retry deadline (a repeat is harmless: it finds the version row).

    :raises ConfigurationError: the schema is there at another version.
    :raises BackendError: the database failed.
    """
    deadline = retry_deadline()
    delay = 0.05
    while True:
        try:
            with psycopg.Connection.connect(settings.conninfo, autocommit=True) as conn:
                create_schema_on(conn, settings, url)
            return
        except DRIVER_ERRORS as exc:
            transient = is_transient(exc)
            if not transient or time.monotonic() + delay >= deadline:
                raise backend_error(
                    "create_schema", exc, applied=None, transient=transient
                ) from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
