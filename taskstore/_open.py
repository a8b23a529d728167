"""``taskstore.open(url, **options)``: a ready :class:`TaskStore` from a storage URL."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec

from taskstore.backends import open_backend, split_url
from taskstore.clock import Clock
from taskstore.config import StoreConfig
from taskstore.errors import ConfigurationError
from taskstore.security import SecurityConfig
from taskstore.store import TaskStore

__all__ = ["backend_url", "open"]

_STORE_FIELDS = frozenset(StoreConfig.__struct_fields__)
_SECURITY_FIELDS = frozenset(SecurityConfig.__struct_fields__)


def _settings(cls: type[Any], values: dict[str, Any]) -> Any:
    # Query parameters arrive as strings: lax conversion turns "100" into 100, "none" stays bad.
    decoded = {
        k: (None if isinstance(v, str) and v.lower() in ("null", "none") else v)
        for k, v in values.items()
    }
    try:
        return msgspec.convert(decoded, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"Invalid {cls.__name__}: {exc}") from exc


def open(  # noqa: A001 - mirrors builtins.open on purpose: taskstore.open(url)
    url: str = "memory://", *, clock: Clock | None = None, **options: Any
) -> TaskStore:
    """Build a :class:`TaskStore` over the backend named by ``url``.

    Any :class:`StoreConfig` or :class:`SecurityConfig` field may be given as a keyword
    argument or a query parameter (``memory://?max_tasks_per_owner=5``); keywords win. Other
    keywords and query parameters go to the backend.

    >>> with open("memory://", default_ttl_ms=60_000) as store:
    ...     store.config.default_ttl_ms
    60000

    :raises ConfigurationError: unknown scheme, bad URL or bad option.
    :raises MissingDependencyError: the backend's driver is not installed (the message is the
        ``pip install`` command).
    """
    scheme, query = split_url(url)
    store_values = {k: v for k, v in query.items() if k in _STORE_FIELDS}
    security_values = {k: v for k, v in query.items() if k in _SECURITY_FIELDS}
    store_values.update({k: v for k, v in options.items() if k in _STORE_FIELDS})
    security_values.update({k: v for k, v in options.items() if k in _SECURITY_FIELDS})
    backend_options = {
        k: v for k, v in options.items() if k not in _STORE_FIELDS and k not in _SECURITY_FIELDS
    }
    config = _settings(StoreConfig, store_values)
    security = _settings(SecurityConfig, security_values)
    backend = open_backend(backend_url(url), **backend_options)
    return TaskStore(
        backend,
        config=config,
        security=security,
        clock=clock,
        deployment_key=None if scheme.lower() == "memory" else _deployment_key(backend_url(url)),
    )


def _deployment_key(url: str) -> bytes:
    # Every worker opened on the same URL agrees on it; the URL's credentials (when it has
    # any) make it secret. What it signs needs no more: see taskstore.mcp.sessions.
    return hashlib.sha256(b"taskstore deployment key\0" + url.encode("utf-8")).digest()


def backend_url(url: str) -> str:
    """``url`` without the store's own query parameters (:class:`StoreConfig` and
    :class:`SecurityConfig` fields): what the backend is opened with."""
    backend_query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)
            if k not in _STORE_FIELDS and k not in _SECURITY_FIELDS
        ]
    )
    return url.split("?", 1)[0] + (f"?{backend_query}" if backend_query else "")
