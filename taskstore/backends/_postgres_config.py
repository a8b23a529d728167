"""The PostgreSQL backend's settings: from a ``postgresql://`` URL and keyword options to the
libpq connection string and the backend's own options.

The backend's options (``table``, ``schema``, ``create_schema``, ``pool_min``, ``pool_max``,
``timeout``, ``wait_slice_s``, ``prepare``) are taken out of the query string; the libpq
parameters listed in :data:`LIBPQ_OPTIONS` pass on to the connection string; anything else is
refused. Every connection is opened with ``default_transaction_isolation`` set to ``read
committed`` (in the startup packet, so it costs no statement): the quota's advisory lock relies
on each statement of a function taking a fresh snapshot, which a server or role defaulting to
``repeatable read`` would break.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from taskstore.backends._options import (
    Converter,
    to_bool,
    to_float,
    to_int,
    to_optional_str,
    to_str,
    url_options,
)
from taskstore.backends._postgres_schema import DEFAULT_SCHEMA, DEFAULT_TABLE, Names
from taskstore.errors import ConfigurationError

__all__ = [
    "BACKEND_OPTIONS",
    "LIBPQ_OPTIONS",
    "Settings",
    "display_url",
    "make_settings",
    "prepare_conninfo",
    "settings_from_url",
]


def _to_libpq(value: object) -> str:
    # Query values are strings already; keywords may be numbers (port=5432).
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"not a string or number: {value!r}")
    return str(value)


def _to_connect_timeout(value: object) -> str:
    # libpq takes whole seconds (and psycopg waits at least 2): round a fraction up, never to 0,
    # which would mean "no timeout".
    seconds = to_float(value)
    if not seconds > 0:
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return str(max(1, math.ceil(seconds)))


#: The backend's own options, with their converters.
BACKEND_OPTIONS: dict[str, Converter] = {
    "table": to_str,
    "schema": to_optional_str,
    "create_schema": to_bool,
    "pool_min": to_int,
    "pool_max": to_int,
    "timeout": to_float,
    "wait_slice_s": to_float,
    "prepare": to_bool,
}

#: libpq connection parameters accepted in the query string (or as keywords) and passed on.
#: ``client_encoding`` is not among them: the backend sends only bytea and ASCII.
LIBPQ_OPTIONS: dict[str, Converter] = {
    **dict.fromkeys(
        (
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "passfile",
            "application_name",
            "options",
            "sslmode",
            "sslcert",
            "sslkey",
            "sslpassword",
            "sslrootcert",
            "sslcrl",
            "sslcrldir",
            "sslsni",
            "ssl_min_protocol_version",
            "ssl_max_protocol_version",
            "channel_binding",
            "gssencmode",
            "krbsrvname",
            "require_auth",
            "service",
            "target_session_attrs",
            "load_balance_hosts",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
            "tcp_user_timeout",
        ),
        _to_libpq,
    ),
    "connect_timeout": _to_connect_timeout,
}

# Sent in the startup packet of every connection (see the module docstring).
_ISOLATION = "-c default_transaction_isolation=read\\ committed"
_DEFAULT_CONNECT_TIMEOUT_S = "5"


@dataclass(frozen=True)
class Settings:
    """Everything :class:`~taskstore.backends.postgres.PostgresBackend` is built from."""

    conninfo: str
    names: Names
    #: Whether the URL named a schema (its DDL then opens with CREATE SCHEMA IF NOT EXISTS).
    own_schema: bool
    create_schema: bool
    pool_min: int
    pool_max: int
    timeout: float
    wait_slice_s: float
    #: Prepare statements server-side once a connection has run them 5 times (psycopg's
    #: ``prepare_threshold``); off for poolers that cannot keep them (PgBouncer's
    #: transaction mode before 1.21).
    prepare: bool
    #: The URL for messages: no password, no query.
    display_url: str


def prepare_conninfo(conninfo: str) -> str:
    """``conninfo`` (a libpq string or URL) with the backend's defaults: application_name
    ``taskstore``, a 5 s connect timeout, and read committed as the default isolation.

    :raises ConfigurationError: libpq cannot parse it (the message never quotes a password).
    """
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        message = str(exc)
        password = _password_of(conninfo)
        if password and password in message:
            message = "(libpq's message withheld: it quotes the password)"
        raise ConfigurationError(f"Bad PostgreSQL connection string: {message}") from None
    params.setdefault("application_name", "taskstore")
    params.setdefault("connect_timeout", _DEFAULT_CONNECT_TIMEOUT_S)
    options = str(params.get("options") or "").strip()
    params["options"] = f"{options} {_ISOLATION}".strip()
    return make_conninfo("", **params)


def _password_of(conninfo: str) -> str | None:
    try:
        return urlsplit(conninfo).password
    except ValueError:
        return None


def display_url(conninfo: str) -> str:
    """``postgresql://host:port/dbname`` of a prepared connection string (for messages)."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = params.get("port")
    dbname = params.get("dbname") or ""
    return f"postgresql://{host}{f':{port}' if port else ''}/{dbname}"


def settings_from_url(url: str, options: Mapping[str, Any]) -> Settings:
    """The settings of ``PostgresBackend.from_url(url, **options)``.

    :raises ConfigurationError: another scheme, an unknown option, a bad value or URL.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"PostgresBackend URLs start with postgresql:// or postgres://, got {scheme}://"
        )
    converted = url_options(url, options, {**BACKEND_OPTIONS, **LIBPQ_OPTIONS})
    libpq = {k: v for k, v in converted.items() if k in LIBPQ_OPTIONS}
    base = url.split("?", 1)[0].split("#", 1)[0]
    try:
        conninfo = make_conninfo(base, **libpq)
    except psycopg.Error:
        conninfo = base  # prepare_conninfo reports it, without the password
    return make_settings(prepare_conninfo(conninfo), **{
        k: v for k, v in converted.items() if k in BACKEND_OPTIONS
    })


def make_settings(
    conninfo: str,
    *,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    create_schema: bool = True,
    pool_min: int = 1,
    pool_max: int = 10,
    timeout: float = 30.0,
    wait_slice_s: float = 1.0,
    prepare: bool = True,
) -> Settings:
    """Validate the backend's options for an already prepared ``conninfo``.

    :raises ConfigurationError: a bad table or schema name, pool size or duration.
    """
    names = Names(table, schema if schema is not None else DEFAULT_SCHEMA)
    for name, value in (("pool_min", pool_min), ("pool_max", pool_max)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{name} must be a non-negative integer, got {value!r}")
    if pool_max < 1 or pool_min > pool_max:
        raise ConfigurationError(
            f"pool_max must be at least 1 and pool_min at most pool_max, got "
            f"pool_min={pool_min}, pool_max={pool_max}"
        )
    for name, seconds in (("timeout", timeout), ("wait_slice_s", wait_slice_s)):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds")
    if not isinstance(create_schema, bool) or not isinstance(prepare, bool):
        raise ConfigurationError("create_schema and prepare must be booleans")
    return Settings(
        conninfo=conninfo,
        names=names,
        own_schema=schema is not None,
        create_schema=create_schema,
        pool_min=pool_min,
        pool_max=pool_max,
        timeout=float(timeout),
        wait_slice_s=float(wait_slice_s),
        prepare=prepare,
        display_url=display_url(conninfo),
    )
