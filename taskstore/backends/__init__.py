"""Storage backends and the URL registry (DESIGN §6).

``open_backend("memory://")`` builds a backend from a URL. Schemes map to a module and class that
are imported only on first use, so ``import taskstore`` needs nothing but ``msgspec``; a missing
driver raises :class:`~taskstore.errors.MissingDependencyError` whose message is the exact
``pip install`` command. Third parties plug in with :func:`register_backend`.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from taskstore.backends.base import (
    KEEP,
    EventListener,
    ListPosition,
    RecordKey,
    StorageBackend,
    VersionedRecord,
    encode_key_part,
)
from taskstore.errors import ConfigurationError, MissingDependencyError

__all__ = [
    "KEEP",
    "EventListener",
    "ListPosition",
    "RecordKey",
    "StorageBackend",
    "VersionedRecord",
    "encode_key_part",
    "known_schemes",
    "open_backend",
    "register_backend",
]


class _Registration(NamedTuple):
    module: str
    class_name: str
    drivers: tuple[str, ...]
    extra: str | None


_REGISTRY: dict[str, _Registration] = {}


def register_backend(
    scheme: str,
    module: str,
    class_name: str,
    *,
    drivers: tuple[str, ...] = (),
    extra: str | None = None,
) -> None:
    """Make ``scheme://`` URLs build ``module.class_name`` (imported lazily).

    The class must offer ``from_url(url: str, **options) -> StorageBackend``.

    :param drivers: modules the backend needs; when one is missing, :func:`open_backend` raises
        ``MissingDependencyError`` naming ``pip install 'taskstore[<extra>]'`` (or the driver).
    """
    _REGISTRY[scheme.lower()] = _Registration(module, class_name, drivers, extra)


def known_schemes() -> list[str]:
    """The registered URL schemes, sorted."""
    return sorted(_REGISTRY)


register_backend("memory", "taskstore.backends.memory", "InMemoryBackend")
for _scheme in ("redis", "rediss", "unix"):
    register_backend(
        _scheme, "taskstore.backends.redis", "RedisBackend", drivers=("redis",), extra="redis"
    )
register_backend("sqlite", "taskstore.backends.sqlite", "SqliteBackend")
for _scheme in ("postgresql", "postgres"):
    register_backend(
        _scheme,
        "taskstore.backends.postgres",
        "PostgresBackend",
        drivers=("psycopg", "psycopg_pool"),
        extra="postgres",
    )
register_backend(
    "dynamodb",
    "taskstore.backends.dynamodb",
    "DynamoDbBackend",
    drivers=("boto3", "botocore"),
    extra="dynamodb",
)


def _require(registration: _Registration) -> None:
    for driver in registration.drivers:
        try:
            importlib.import_module(driver)
        except ImportError:
            package = f"'taskstore[{registration.extra}]'" if registration.extra else driver
            raise MissingDependencyError(
                f"The {driver!r} package is needed for this backend: pip install {package}"
            ) from None


def backend_class(scheme: str) -> Any:
    """Import and return the backend class registered for ``scheme``.

    :raises ConfigurationError: unknown scheme (the message lists the known ones).
    :raises MissingDependencyError: the backend's driver is not installed.
    """
    registration = _REGISTRY.get(scheme.lower())
    if registration is None:
        raise ConfigurationError(
            f"Unknown storage URL scheme {scheme!r}; known schemes: "
            + ", ".join(f"{name}://" for name in known_schemes())
        )
    _require(registration)
    try:
        module = importlib.import_module(registration.module)
    except ModuleNotFoundError as exc:
        if exc.name == registration.module:
            raise ConfigurationError(
                f"The {scheme}:// backend is not available in this version of taskstore"
            ) from exc
        raise
    return getattr(module, registration.class_name)


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Return the scheme of ``url`` and its query parameters (last one wins)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"A storage URL looks like 'memory://' or 'redis://host:6379/0', got {url!r}"
        )
    parts = urlsplit(url)
    return parts.scheme, dict(parse_qsl(parts.query, keep_blank_values=True))


def open_backend(url: str, **options: Any) -> StorageBackend:
    """Build the backend for ``url``; keyword ``options`` beat the URL's query parameters.

    >>> open_backend("memory://")
    InMemoryBackend(stripes=64)

    :raises ConfigurationError: malformed URL, unknown scheme or bad option.
    :raises MissingDependencyError: the backend's driver is not installed.
    """
    scheme, _ = split_url(url)
    cls = backend_class(scheme)
    backend: StorageBackend = cls.from_url(url, **options)
    return backend
