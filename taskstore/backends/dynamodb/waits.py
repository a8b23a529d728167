"""Events and waiting for the DynamoDB backend, within one backend object.

DynamoDB has no notifications. :meth:`~DynamoDbBackend.add_listener` delivers the events of
writes made through *this object* only, and :meth:`~DynamoDbBackend.wait_for_change` wakes
promptly for those and otherwise returns after ``timeout_s``; the store then re-reads, polling
at the task's ``pollInterval`` with backoff (declared as ``cross_process_events = False``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from taskstore.backends.base import EventListener, Listeners, RecordKey
from taskstore.backends.dynamodb.cache import CACHE_SIZE, BoundedCache

__all__ = ["Changes"]


class Changes:
    """The latest version of each key written or read through one backend object, the
    waiters on them and the event listeners. Thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._recent: BoundedCache[RecordKey, int] = BoundedCache(CACHE_SIZE * 4)
        self._listeners = Listeners()
        self._closed = False

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Deliver every written ``event`` to ``listener``; return a function removing it."""
        return self._listeners.add(listener)

    def written(self, key: RecordKey, version: int, event: bytes | None) -> None:
        """Record a successful write (version 0: a delete): wake waiters, then deliver the
        event."""
        with self._changed:
            self._recent.put(key, version)
            self._changed.notify_all()
        if event is not None:
            self._listeners.publish(event)

    def observed(self, key: RecordKey, version: int) -> None:
        """A read saw ``version``: newer knowledge than an older write's, never older (a
        write through this object that raced the read may already be recorded)."""
        with self._changed:
            seen = self._recent.get(key)
            if seen is None or version > seen:
                self._recent.put(key, version)

    def wait(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """Block until a write recorded here moves ``key`` past ``version`` (or deletes it),
        :meth:`close`, or ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while True:
                seen = self._recent.get(key)
                # Only news wakes: a newer version, or a delete. An older version recorded
                # here is stale knowledge (another process wrote since), and returning on it
                # would make the caller re-read in a busy loop.
                if seen is not None and (seen > version or (seen == 0 and version != 0)):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return
                self._changed.wait(remaining)

    def close(self) -> None:
        """Drop every listener and wake every waiter for good."""
        self._listeners.clear()
        with self._changed:
            self._closed = True
            self._changed.notify_all()
