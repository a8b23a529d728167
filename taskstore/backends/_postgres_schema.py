"""The PostgreSQL backend's schema: object names, the DDL (functions included) and the SQL the
backend runs.

One store is one table ``T`` in one schema ``S`` (``?table=``, ``?schema=``, default
``taskstore_tasks`` in ``public``). Every object lives in ``S`` and is named after ``T``, so two
tables are two independent stores (records, quotas, events)::

    S."taskstore__meta"        table_name -> schema_version (shared by the schema's stores)
    S."T"                      the records: PRIMARY KEY (owner, task_id), both bytea
    S."T__listing"             index (owner, sort_ms DESC, task_id DESC): listing pages
    S."T__expiry"              partial index (expires_at_ms): cleanup costs O(expired)
    S."T__events"              large event payloads, referenced from NOTIFY by id
    S."T__events_created"      index (created_at): pruning old event rows costs O(pruned)
    S."T__create"(...)         create with the quota        } one call per mutation: every
    S."T__put"(...)            unconditional write          } check, the write, the event
    S."T__put_if_version"(...) compare-and-set              } and the NOTIFY are one
    S."T__delete"(...)         delete                       } statement's transaction

Table names are refused when they contain ``__``, so no table's objects can collide with
another's (or with the meta table). Owners and task ids are ``bytea``
(:func:`~taskstore.backends.base.key_bytes`): a ``text`` column cannot hold NUL, and bytea
compares by memcmp, which is code point order, the listing's tie-break order.

Events: a write carrying an event calls ``pg_notify`` on the store's channel (named after
``S.T``, hashed when long) with ``"<wake> e <base64 event>"`` when the event is small, else
``"<wake> r <id>"`` after inserting it into ``T__events`` (NOTIFY payloads are capped at
8000 bytes); a delete sends ``"<wake> w"``. ``<wake>`` is 16 hex digits naming the key
(:func:`wake_name`), for waiters. Rows of ``T__events`` are kept 10 minutes: every 100th
inserted one prunes older rows (at most 1000, skipping rows other transactions hold).

Time never comes from the server: every function takes the caller's ``now_ms`` and treats a
record with ``expires_at_ms <= now_ms`` as absent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from taskstore.backends._sql import POSTGRES_SCHEMA_VERSION
from taskstore.errors import ConfigurationError

__all__ = [
    "DEFAULT_SCHEMA",
    "DEFAULT_TABLE",
    "INLINE_EVENT_BYTES",
    "Names",
    "Statements",
    "quote_ident",
    "quote_literal",
    "schema_sql",
    "wake_name",
]

#: The table of a store whose URL names none.
DEFAULT_TABLE = "taskstore_tasks"
#: The schema of a store whose URL names none.
DEFAULT_SCHEMA = "public"
#: Events up to this size travel inside the NOTIFY payload (base64: ~5.4 KB of the 8000 bytes
#: PostgreSQL allows); larger ones go through the events table.
INLINE_EVENT_BYTES = 4000

# Table names: at most 40 characters, so that every derived name ("T__put_if_version",
# "T__events_created", ...) stays within PostgreSQL's 63-byte identifiers.
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_MAX_IDENTIFIER = 63


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (case and every character kept)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a standard SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def wake_name(owner: bytes, task_id: bytes) -> str:
    """The 16 hex digits that name a key in NOTIFY payloads (waiters match on it; a
    collision only wakes a waiter early, which the contract allows)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(len(owner).to_bytes(8, "big"))
    digest.update(owner)
    digest.update(task_id)
    return digest.hexdigest()


@dataclass(frozen=True)
class Names:
    """The names of one store's objects, validated.

    :raises ConfigurationError: a table or schema name outside the allowed characters.
    """

    table: str
    schema: str

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not _TABLE.fullmatch(self.table):
            raise ConfigurationError(
                "table must be 1 to 40 letters, digits, '_' or '-', starting with a letter or "
                f"'_', got {self.table!r}"
            )
        if "__" in self.table:
            raise ConfigurationError(
                f"table must not contain '__' (reserved for its own objects), got {self.table!r}"
            )
        if not isinstance(self.schema, str) or not _SCHEMA.fullmatch(self.schema):
            raise ConfigurationError(
                "schema must be 1 to 63 letters, digits, '_' or '-', starting with a letter or "
                f"'_', got {self.schema!r}"
            )

    def qualified(self, suffix: str = "") -> str:
        """``S."T<suffix>"``, quoted."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.table + suffix)}"

    @property
    def records(self) -> str:
        """The records table."""
        return self.qualified()

    @property
    def events(self) -> str:
        """The table of event payloads too large for NOTIFY."""
        return self.qualified("__events")

    @property
    def meta(self) -> str:
        """The schema-version table (one per schema, keyed by table name)."""
        return f"{quote_ident(self.schema)}.{quote_ident('taskstore__meta')}"

    def function(self, name: str) -> str:
        """A mutation function: ``create``, ``put``, ``put_if_version`` or ``delete``."""
        return self.qualified(f"__{name}")

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel: ``taskstore:S.T``, or a hash of it past 63 bytes."""
        channel = f"taskstore:{self.schema}.{self.table}"
        if len(channel.encode()) > _MAX_IDENTIFIER:
            channel = "taskstore:" + hashlib.sha256(channel.encode()).hexdigest()[:40]
        return channel

    @property
    def quota_lock_salt(self) -> str:
        """Mixed into the advisory-lock key of an owner's quota, so that stores (and other
        users of advisory locks) never share one."""
        return f"taskstore quota {self.schema}.{self.table} "


def _live(alias: str, now: str) -> str:
    # The one expiry rule: live while expires_at_ms is NULL (never) or after the caller's now.
    return f"({alias}.expires_at_ms IS NULL OR {alias}.expires_at_ms > {now})"


def _notify_block(names: Names) -> str:
    """PL/pgSQL publishing ``p_event`` (if any) for the key named ``p_wake``: inline when
    small, through the events table (pruned now and then) otherwise."""
    channel = quote_literal(names.channel)
    return f"""
    IF p_event IS NOT NULL THEN
        IF octet_length(p_event) <= {INLINE_EVENT_BYTES} THEN
            PERFORM pg_notify({channel},
                p_wake || ' e ' || translate(encode(p_event, 'base64'), E'\\n', ''));
        ELSE
            INSERT INTO {names.events} (event) VALUES (p_event) RETURNING id INTO event_id;
            PERFORM pg_notify({channel}, p_wake || ' r ' || event_id);
            IF event_id % 100 = 0 THEN
                DELETE FROM {names.events} WHERE id IN (
                    SELECT old.id FROM {names.events} old
                     WHERE old.created_at < now() - interval '10 minutes'
                     ORDER BY old.created_at LIMIT 1000 FOR UPDATE SKIP LOCKED);
            END IF;
        END IF;
    END IF;"""


# Every function runs with a fixed search_path: the tables are schema-qualified, and nothing a
# caller's search_path holds can shadow an operator or function used here.
_FUNCTION_HEAD = "LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$"


def _create_function(names: Names) -> str:
    t, live = names.records, _live("t", "p_now_ms")
    return f"""CREATE OR REPLACE FUNCTION {names.function("create")}(
    p_owner bytea, p_task_id bytea, p_data bytea, p_expires_at_ms bigint, p_sort_ms bigint,
    p_max_live bigint, p_now_ms bigint, p_token bytea, p_wake text, p_event bytea,
    OUT r_status integer, OUT r_version bigint)
{_FUNCTION_HEAD}
-- r_status 0: created (r_version 1; also a replay of this call's own earlier attempt),
-- 1: the key is live at r_version, 2: the owner holds p_max_live live records.
DECLARE
    found_version bigint;
    found_token bytea;
    live_count bigint;
    event_id bigint;
BEGIN
    SELECT t.version, t.write_token INTO found_version, found_token
      FROM {t} t WHERE t.owner = p_owner AND t.task_id = p_task_id AND {live};
    IF FOUND THEN
        r_status := CASE WHEN found_token = p_token THEN 0 ELSE 1 END;
        r_version := found_version;
        RETURN;
    END IF;
    IF p_max_live IS NOT NULL THEN
        -- Creates for one owner queue here until the holder commits; the count below runs in
        -- a snapshot taken after that, so it sees every create admitted before this one.
        PERFORM pg_advisory_xact_lock(
            hashtextextended({quote_literal(names.quota_lock_salt)} || encode(p_owner, 'hex'), 0));
        SELECT count(*) INTO live_count FROM {t} t WHERE t.owner = p_owner AND {live};
        IF live_count >= p_max_live THEN
            r_status := 2;
            RETURN;
        END IF;
    END IF;
    -- An expired record at the key is absent: it is replaced, its outcome dropped.
    INSERT INTO {t} AS t (owner, task_id, version, data, expires_at_ms, sort_ms, outcome,
                          write_token)
    VALUES (p_owner, p_task_id, 1, p_data, p_expires_at_ms, p_sort_ms, NULL, p_token)
    ON CONFLICT (owner, task_id) DO UPDATE
       SET version = 1, data = EXCLUDED.data, expires_at_ms = EXCLUDED.expires_at_ms,
           sort_ms = EXCLUDED.sort_ms, outcome = NULL, write_token = EXCLUDED.write_token
     WHERE NOT {live};
    IF NOT FOUND THEN
        -- A record went live at the key since the check (a racing put or create).
        SELECT t.version, t.write_token INTO found_version, found_token
          FROM {t} t WHERE t.owner = p_owner AND t.task_id = p_task_id;
        r_status := CASE WHEN found_token = p_token THEN 0 ELSE 1 END;
        r_version := coalesce(found_version, 0);
        RETURN;
    END IF;
    {_notify_block(names)}
    r_status := 0;
    r_version := 1;
END
$fn$;
"""


def _put_function(names: Names) -> str:
    t, live = names.records, _live("t", "p_now_ms")
    return f"""CREATE OR REPLACE FUNCTION {names.function("put")}(
    p_owner bytea, p_task_id bytea, p_data bytea, p_expires_at_ms bigint, p_sort_ms bigint,
    p_outcome bytea, p_now_ms bigint, p_token bytea, p_wake text, p_event bytea,
    OUT r_version bigint)
{_FUNCTION_HEAD}
-- r_version: the new version (1 for a missing or expired key). p_sort_ms NULL keeps a live
-- record's sort key; p_outcome NULL keeps a live record's outcome.
DECLARE
    event_id bigint;
BEGIN
    INSERT INTO {t} AS t (owner, task_id, version, data, expires_at_ms, sort_ms, outcome,
                          write_token)
    VALUES (p_owner, p_task_id, 1, p_data, p_expires_at_ms, coalesce(p_sort_ms, p_now_ms),
            p_outcome, p_token)
    ON CONFLICT (owner, task_id) DO UPDATE
       SET version = CASE WHEN {live} THEN t.version + 1 ELSE 1 END,
           data = EXCLUDED.data,
           expires_at_ms = EXCLUDED.expires_at_ms,
           sort_ms = CASE WHEN {live} THEN coalesce(p_sort_ms, t.sort_ms)
                          ELSE EXCLUDED.sort_ms END,
           outcome = CASE WHEN p_outcome IS NOT NULL THEN p_outcome
                          WHEN {live} THEN t.outcome END,
           write_token = EXCLUDED.write_token
     -- This call's own earlier attempt already applied (its reply was lost): not again.
     WHERE NOT ({live} AND t.write_token IS NOT DISTINCT FROM p_token)
    RETURNING t.version INTO r_version;
    IF NOT FOUND THEN
        SELECT t.version INTO r_version
          FROM {t} t WHERE t.owner = p_owner AND t.task_id = p_task_id;
        RETURN;
    END IF;
    {_notify_block(names)}
END
$fn$;
"""


def _put_if_version_function(names: Names) -> str:
    t, live = names.records, _live("t", "p_now_ms")
    return f"""CREATE OR REPLACE FUNCTION {names.function("put_if_version")}(
    p_owner bytea, p_task_id bytea, p_data bytea, p_expected bigint, p_keep_expiry boolean,
    p_expires_at_ms bigint, p_outcome bytea, p_now_ms bigint, p_token bytea, p_wake text,
    p_event bytea, OUT r_status integer, OUT r_version bigint)
{_FUNCTION_HEAD}
-- r_status 0: written, r_version the new version (also a replay of this call's own earlier
-- attempt); 1: conflict, r_version the live version (0: missing or expired).
DECLARE
    found_token bytea;
    event_id bigint;
BEGIN
    UPDATE {t} AS t
       SET version = t.version + 1, data = p_data,
           expires_at_ms = CASE WHEN p_keep_expiry THEN t.expires_at_ms
                                ELSE p_expires_at_ms END,
           outcome = coalesce(p_outcome, t.outcome),
           write_token = p_token
     WHERE t.owner = p_owner AND t.task_id = p_task_id AND t.version = p_expected AND {live}
    RETURNING t.version INTO r_version;
    IF FOUND THEN
        {_notify_block(names)}
        r_status := 0;
        RETURN;
    END IF;
    SELECT CASE WHEN {live} THEN t.version ELSE 0 END, t.write_token
      INTO r_version, found_token
      FROM {t} t WHERE t.owner = p_owner AND t.task_id = p_task_id;
    r_version := coalesce(r_version, 0);
    r_status := CASE WHEN r_version <> 0 AND found_token = p_token THEN 0 ELSE 1 END;
END
$fn$;
"""


def _delete_function(names: Names) -> str:
    channel = quote_literal(names.channel)
    return f"""CREATE OR REPLACE FUNCTION {names.function("delete")}(
    p_owner bytea, p_task_id bytea, p_wake text, OUT r_removed boolean)
{_FUNCTION_HEAD}
-- r_removed: whether a record (live or expired) was removed; waiters on the key are woken.
BEGIN
    DELETE FROM {names.records} t WHERE t.owner = p_owner AND t.task_id = p_task_id;
    r_removed := FOUND;
    IF r_removed THEN
        PERFORM pg_notify({channel}, p_wake || ' w');
    END IF;
END
$fn$;
"""


def schema_sql(names: Names, *, create_schema: bool) -> str:
    """The complete DDL of one store: ``CREATE SCHEMA`` (when ``create_schema``), the tables,
    indexes and functions, and its schema-version row. Idempotent (``IF NOT EXISTS``, ``OR
    REPLACE``, ``ON CONFLICT DO NOTHING``), plain SQL that ``psql -f`` applies as is."""
    s = quote_ident(names.schema)
    t = names.records
    table = names.table
    parts = [f"CREATE SCHEMA IF NOT EXISTS {s};\n"] if create_schema else []
    parts.append(
        f"""CREATE TABLE IF NOT EXISTS {names.meta} (
    table_name text PRIMARY KEY,
    schema_version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS {t} (
    owner bytea NOT NULL,
    task_id bytea NOT NULL,
    version bigint NOT NULL,
    data bytea NOT NULL,
    expires_at_ms bigint,
    sort_ms bigint NOT NULL,
    outcome bytea,
    write_token bytea,
    PRIMARY KEY (owner, task_id)
);

CREATE INDEX IF NOT EXISTS {quote_ident(table + "__listing")}
    ON {t} (owner, sort_ms DESC, task_id DESC);

CREATE INDEX IF NOT EXISTS {quote_ident(table + "__expiry")}
    ON {t} (expires_at_ms) WHERE expires_at_ms IS NOT NULL;

CREATE TABLE IF NOT EXISTS {names.events} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    event bytea NOT NULL
);

CREATE INDEX IF NOT EXISTS {quote_ident(table + "__events_created")}
    ON {names.events} (created_at);
"""
    )
    parts += [
        _create_function(names),
        _put_function(names),
        _put_if_version_function(names),
        _delete_function(names),
    ]
    parts.append(
        f"INSERT INTO {names.meta} (table_name, schema_version)\n"
        f"VALUES ({quote_literal(table)}, {POSTGRES_SCHEMA_VERSION})\n"
        "ON CONFLICT (table_name) DO NOTHING;\n"
    )
    return "\n".join(parts)


class Statements:
    """The SQL the backend sends for one store, built once from its :class:`Names`.

    Parameters are cast where PostgreSQL must pick a function signature or an operator:
    psycopg sends a Python int as the smallest integer type that holds it.
    """

    def __init__(self, names: Names) -> None:
        t = names.records
        live = _live("t", "%(now)s::bigint")
        columns = "t.version, t.data, t.expires_at_ms, t.sort_ms"
        key = "t.owner = %(owner)s::bytea AND t.task_id = %(task_id)s::bytea"
        self.get = f"SELECT {columns} FROM {t} t WHERE {key} AND {live}"
        self.get_with_outcome = f"SELECT {columns}, t.outcome FROM {t} t WHERE {key} AND {live}"
        self.version = f"SELECT t.version FROM {t} t WHERE {key}"
        self.create = (
            f"SELECT r_status, r_version FROM {names.function('create')}(%s::bytea, %s::bytea,"
            " %s::bytea, %s::bigint, %s::bigint, %s::bigint, %s::bigint, %s::bytea, %s::text,"
            " %s::bytea)"
        )
        self.put = (
            f"SELECT r_version FROM {names.function('put')}(%s::bytea, %s::bytea, %s::bytea,"
            " %s::bigint, %s::bigint, %s::bytea, %s::bigint, %s::bytea, %s::text, %s::bytea)"
        )
        self.put_if_version = (
            f"SELECT r_status, r_version FROM {names.function('put_if_version')}(%s::bytea,"
            " %s::bytea, %s::bytea, %s::bigint, %s::boolean, %s::bigint, %s::bytea, %s::bigint,"
            " %s::bytea, %s::text, %s::bytea)"
        )
        self.delete = (
            f"SELECT r_removed FROM {names.function('delete')}(%s::bytea, %s::bytea, %s::text)"
        )
        page = "t.task_id, t.version, t.data, t.expires_at_ms, t.sort_ms"
        order = "ORDER BY t.sort_ms DESC, t.task_id DESC"
        self.list_first = (
            f"SELECT {page} FROM {t} t WHERE t.owner = %(owner)s::bytea AND {live} "
            f"{order} LIMIT %(limit)s::bigint"
        )
        # One statement for a page after an anchor: whether the anchor is still live (a stale
        # cursor must fail, not restart), then the page through the listing index. Always one
        # row at least: (false, NULLs) for a stale anchor, (true, NULLs) for an empty page.
        anchor = (
            f"SELECT 1 FROM {t} t WHERE t.owner = %(owner)s::bytea "
            f"AND t.task_id = %(after_id)s::bytea AND t.sort_ms = %(after_sort)s::bigint "
            f"AND {live}"
        )
        self.list_after = (
            f"SELECT a.ok, p.task_id, p.version, p.data, p.expires_at_ms, p.sort_ms "
            f"FROM (SELECT EXISTS ({anchor}) AS ok) a LEFT JOIN LATERAL ("
            f"SELECT {page} FROM {t} t WHERE t.owner = %(owner)s::bytea AND {live} "
            f"AND (t.sort_ms, t.task_id) < (%(after_sort)s::bigint, %(after_id)s::bytea) "
            f"{order} LIMIT %(limit)s::bigint) p ON a.ok "
            f"ORDER BY p.sort_ms DESC, p.task_id DESC"
        )
        scan = "t.owner, t.task_id, t.version, t.data, t.expires_at_ms, t.sort_ms"
        self.scan_first = (
            f"SELECT {scan} FROM {t} t WHERE {live} "
            f"ORDER BY t.owner, t.task_id LIMIT %(limit)s::bigint"
        )
        self.scan_after = (
            f"SELECT {scan} FROM {t} t "
            f"WHERE (t.owner, t.task_id) > (%(owner)s::bytea, %(task_id)s::bytea) AND {live} "
            f"ORDER BY t.owner, t.task_id LIMIT %(limit)s::bigint"
        )
        # A batch of expired records through the expiry index, deleted by their row
        # addresses (a TID scan: no join the planner could turn into a scan of the table).
        # Rows a writer holds are skipped; FOR UPDATE re-checks the others' expiry on their
        # latest version, so a record a racing write just extended is kept.
        self.cleanup = (
            f"DELETE FROM {t} t WHERE t.ctid = ANY(ARRAY(SELECT d.ctid FROM {t} d "
            f"WHERE d.expires_at_ms <= %(now)s::bigint ORDER BY d.expires_at_ms "
            f"LIMIT %(limit)s::bigint FOR UPDATE SKIP LOCKED))"
        )
        self.events = f"SELECT e.id, e.event FROM {names.events} e WHERE e.id = ANY(%s::bigint[])"
        self.schema_version = (
            f"SELECT m.schema_version FROM {names.meta} m WHERE m.table_name = %s::text"
        )
