"""Store configuration (DESIGN §5). Field names are part of the public API."""

from __future__ import annotations

import msgspec

from taskstore.errors import ConfigurationError

__all__ = ["StoreConfig"]


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
