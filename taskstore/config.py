"""Store configuration (DESIGN §5). Field names are part of the public API."""

from __future__ import annotations

import msgspec

from taskstore.errors import ConfigurationError

__all__ = ["DEFAULT_RETRY_DEADLINE_MS", "MAX_EXPIRES_AT_MS", "StoreConfig"]

#: The latest expiry a task may have: 9999-12-31T23:59:59.999Z in epoch ms. Every backend
#: stores every expiry up to it exactly (it is far below 2**53, so Lua's doubles and Redis's
#: sorted-set scores hold it without rounding, and DynamoDB's fixed-width sort keys have room),
#: and refuses later ones (``InvalidParamsError``) before sending anything.
MAX_EXPIRES_AT_MS = 253_402_300_799_999

#: Default of ``StoreConfig.retry_deadline_ms``, and the retry deadline of backend calls made
#: outside a store.
DEFAULT_RETRY_DEADLINE_MS = 10_000

#: Bounds of ``StoreConfig.retry_deadline_ms``: long enough to ride out a restart or a
#: failover, short enough that a caller is not left hanging on storage that is gone.
_RETRY_DEADLINE_RANGE_MS = (1_000, 30_000)


class StoreConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Limits and defaults of a :class:`~taskstore.TaskStore`.

    :ivar default_ttl_ms: TTL of a task created without one; ``None`` keeps such tasks forever
        (their ``ttl`` is ``null``).
    :ivar max_ttl_ms: larger requested TTLs are clamped to this (the Task reports the clamped
        value); ``None`` for no maximum.
    :ivar min_ttl_ms: smaller requested TTLs are raised to this.
    :ivar poll_interval_ms: ``pollInterval`` suggested to clients; ``None`` omits it.
    :ivar max_variable_bytes: size cap of a task's whole variables map as compact UTF-8 JSON.
    :ivar max_variable_depth: nesting cap of each variable value (``[]``/``{}`` count 1 each).
    :ivar max_string_bytes: cap of any string inside variables (UTF-8 bytes).
    :ivar result_max_bytes: cap of a stored result or error (compact UTF-8 JSON).
    :ivar list_page_size: default page size of ``list``.
    :ivar max_list_page_size: largest page a caller may ask ``list`` for.
    :ivar conflict_retry_budget_ms: how long a mutation keeps retrying lost compare-and-sets
        (jittered exponential backoff from ~1 ms to ~100 ms) before ``ConflictError``.
    :ivar retry_deadline_ms: how long one store operation keeps retrying transient storage
        faults (connection refused or reset, timeouts, throttling) with jittered backoff
        before ``BackendError`` (from 1,000 to 30,000 ms; default 10 s). The store hands it to
        the backend with every call (:func:`taskstore.backends.base.retrying_until`); as a
        store field it is also a query option of every storage URL given to
        :func:`taskstore.open` (``redis://host?retry_deadline_ms=5000``). ``wait`` rides out
        outages until its own timeout instead.
    :ivar max_request_bytes: cap of the stored ``request`` (the original params, e.g. a tool
        call's arguments) as compact UTF-8 JSON (default 256 KiB).
    :ivar max_status_message_bytes: cap of a ``statusMessage`` in UTF-8 bytes (default 4 KiB).
        A message given explicitly over it is refused; one the store derives (``fail``'s
        from its error's message) is cut to fit.
    :ivar max_request_method_bytes: cap of ``request_method`` in UTF-8 bytes (default 256).

    Every expiry is at most :data:`MAX_EXPIRES_AT_MS` (year 9999), on every backend: a ``ttl``
    reaching past it is ``InvalidParamsError``, and ``default_ttl_ms``/``max_ttl_ms`` must
    be below it.
    """

    default_ttl_ms: int | None = 3_600_000
    max_ttl_ms: int | None = 86_400_000
    min_ttl_ms: int = 1_000
    poll_interval_ms: int | None = 1_000
    max_variable_bytes: int = 1_048_576
    max_variable_depth: int = 10
    max_string_bytes: int = 65_536
    result_max_bytes: int = 1_048_576
    list_page_size: int = 50
    max_list_page_size: int = 1_000
    conflict_retry_budget_ms: int = 5_000
    retry_deadline_ms: int = DEFAULT_RETRY_DEADLINE_MS
    max_request_bytes: int = 262_144
    max_status_message_bytes: int = 4_096
    max_request_method_bytes: int = 256

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None and name in ("default_ttl_ms", "max_ttl_ms", "poll_interval_ms"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"StoreConfig.{name} must be a non-negative integer")
        if self.list_page_size < 1 or self.max_list_page_size < self.list_page_size:
            raise ConfigurationError(
                "StoreConfig.list_page_size must be >= 1 and <= max_list_page_size"
            )
        if self.max_ttl_ms is not None:
            if self.max_ttl_ms < self.min_ttl_ms:
                raise ConfigurationError("StoreConfig.max_ttl_ms must be >= min_ttl_ms")
            if self.default_ttl_ms is not None and self.default_ttl_ms > self.max_ttl_ms:
                raise ConfigurationError("StoreConfig.default_ttl_ms must be <= max_ttl_ms")
        for name in ("default_ttl_ms", "max_ttl_ms", "min_ttl_ms"):
            value = getattr(self, name)
            if value is not None and value > MAX_EXPIRES_AT_MS:
                raise ConfigurationError(
                    f"StoreConfig.{name} must be at most {MAX_EXPIRES_AT_MS} (year 9999)"
                )
        low, high = _RETRY_DEADLINE_RANGE_MS
        if not low <= self.retry_deadline_ms <= high:
            raise ConfigurationError(
                f"StoreConfig.retry_deadline_ms must be from {low} to {high} ms"
            )
        for name in ("max_status_message_bytes", "max_request_method_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"StoreConfig.{name} must be at least 1")
