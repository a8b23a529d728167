"""The backend table every contract and store test runs over (one row per backend).

Every row is always collected, whatever is installed: a row whose driver is missing skips
with the reason (fails under ``TASKSTORE_REQUIRE_SERVERS=1``) when it runs, and tox factors
select rows by marker. Rows never vanish from the table because a package is absent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from taskstore import TaskStore

__all__ = [
    "BACKEND_PARAMS",
    "DRIVERS",
    "DYNAMODB_PARAMS",
    "NON_ATOMIC_BACKENDS",
    "PLUGINS",
    "REDIS_PARAMS",
    "SQL_PARAMS",
    "count_reads",
]

#: Test doubles whose conditional writes are not atomic: concurrency tests skip on them.
NON_ATOMIC_BACKENDS = frozenset({"moto"})

#: The driver modules each row needs (the real-server rows need no test double).
DRIVERS: dict[str, tuple[str, ...]] = {
    "memory": (),
    "fakeredis": ("redis", "fakeredis"),
    "redis": ("redis",),
    "redis_cluster": ("redis",),
    "moto": ("boto3", "moto"),
    "dynamodb_local": ("boto3",),
    "sqlite": (),
    "postgres": ("psycopg", "psycopg_pool"),
}

#: Fixture plugins (``support.<module>``) and the drivers they import at module level; a
#: plugin loads when its drivers are installed, and provides the rows' factories.
PLUGINS: dict[str, tuple[str, ...]] = {
    "support.redis_support": ("redis",),
    "support.dynamodb_support": ("boto3",),
    "support.sqlite_support": (),
    "support.postgres_support": ("psycopg", "psycopg_pool"),
}

#: The Redis rows: fakeredis, a real redis-server, a real Redis Cluster.
REDIS_PARAMS: list[Any] = [
    pytest.param("fakeredis", marks=pytest.mark.redis, id="fakeredis"),
    pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.redis_server], id="redis"),
    pytest.param(
        "redis_cluster",
        marks=[pytest.mark.redis, pytest.mark.redis_cluster, pytest.mark.slow],
        id="redis-cluster",
    ),
]

#: The DynamoDB rows: moto, AWS's DynamoDB Local.
DYNAMODB_PARAMS: list[Any] = [
    pytest.param("moto", marks=pytest.mark.dynamodb, id="moto"),
    pytest.param(
        "dynamodb_local",
        marks=[pytest.mark.dynamodb, pytest.mark.dynamodb_local],
        id="dynamodb-local",
    ),
]

#: The SQL rows: SQLite on a temp file (standard library), a real PostgreSQL server.
SQL_PARAMS: list[Any] = [
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]

#: Every row: what the contract suite, the store tests and the model run over.
BACKEND_PARAMS: list[Any] = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    *REDIS_PARAMS,
    *DYNAMODB_PARAMS,
    *SQL_PARAMS,
]


def count_reads(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Count ``store``'s backend reads from now on: one entry per ``backend.get``, ``True``
    when it asked for the outcome too."""
    reads: list[bool] = []
    real = store.backend.get

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(bool(kwargs.get("include_outcome")))
        return real(*args, **kwargs)

    monkeypatch.setattr(store.backend, "get", counted)
    return reads

