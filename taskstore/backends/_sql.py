"""What the SQL backends share: the schema-version rule and the schema-management interface.

Both SQL backends (``sqlite:///``, ``postgresql://``) keep the version of their schema in the
database itself. Opening a store checks it: a database whose schema has another version, or
(with ``?create_schema=false``) none at all, is refused with a
:class:`~taskstore.errors.ConfigurationError` that says what to run. ``python -m taskstore sql
create-schema URL`` and ``python -m taskstore sql show-schema URL`` use
:class:`SchemaManagedBackend` (see :mod:`taskstore.cli`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from taskstore.errors import ConfigurationError

__all__ = [
    "POSTGRES_SCHEMA_VERSION",
    "SQLITE_SCHEMA_VERSION",
    "SchemaManagedBackend",
    "missing_schema",
    "schema_mismatch",
]

#: The versions of the SQL schemas this release reads and writes. SQLite 2: a per-owner record
#: count kept by triggers, which the quota reads instead of counting.
POSTGRES_SCHEMA_VERSION = 1
SQLITE_SCHEMA_VERSION = 2


@runtime_checkable
class SchemaManagedBackend(Protocol):
    """A backend class whose storage needs a schema created before use (the SQL backends).

    Both are class methods: they take the same URL as ``from_url`` (its query options name
    the table and schema) and need no open store.
    """

    @classmethod
    def schema_sql(cls, url: str) -> str:
        """Complete, directly executable SQL that creates the schema for ``url``'s options,
        the schema-version row included, and nothing else (no comments needing a client)."""
        ...

    @classmethod
    def create_schema(cls, url: str) -> None:
        """Create the schema for ``url`` if it does not exist (idempotent).

        :raises ConfigurationError: the database holds this store's schema at another
            version.
        :raises BackendError: the database failed.
        """
        ...


def _redacted(url: str) -> str:
    # Never echo a password in an error message: keep the scheme, host and path only.
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest.split('?', 1)[0]}"


def missing_schema(url: str) -> ConfigurationError:
    """The error for a database without this store's schema (``create_schema=false``)."""
    return ConfigurationError(
        f"The database at {_redacted(url)} has no taskstore schema (and create_schema is "
        f"off): run `python -m taskstore sql create-schema URL` once, or apply the SQL printed "
        f"by `python -m taskstore sql show-schema URL`"
    )


def schema_mismatch(url: str, found: object, expected: int) -> ConfigurationError:
    """The error for a database holding this store's schema at another version than
    ``expected``."""
    return ConfigurationError(
        f"The database at {_redacted(url)} holds taskstore schema version {found!r}; this "
        f"release needs version {expected}. Run `python -m taskstore sql create-schema "
        f"URL` with a new ?table=... (or on a new database) and point the store at it, or "
        f"migrate the data yourself: `python -m taskstore sql show-schema URL` prints the "
        f"schema this release creates"
    )
