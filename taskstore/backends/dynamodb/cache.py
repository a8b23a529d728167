"""A small bounded, thread-safe map: the DynamoDB backend's memory of what it last saw.

The backend keeps three such memories (item shapes for the size check, quota ledger hints and
the latest version of each key for waiters); each only saves requests or wake-ups, so forgetting
the oldest entries is always safe.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

__all__ = ["CACHE_SIZE", "BoundedCache"]

#: Entries each cache keeps by default (oldest out first).
CACHE_SIZE = 4096

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A least-recently-written map holding at most ``size`` entries; thread-safe."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._entries: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value stored for ``key``, or ``None``."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` for ``key`` as the newest entry; drop the oldest beyond the size."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget ``key``, if stored."""
        with self._lock:
            self._entries.pop(key, None)
