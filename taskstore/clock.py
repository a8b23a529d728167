"""Injectable time source.

The store asks its clock for epoch milliseconds and never calls ``time.time()`` itself, so tests
move a :class:`ManualClock` instead of sleeping, and every backend judges expiry by the same
"now" the store used.
"""

from __future__ import annotations

import datetime as _dt
import functools
import threading
import time
from typing import Protocol, runtime_checkable

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

__all__ = ["Clock", "ManualClock", "SystemClock", "format_timestamp", "parse_timestamp"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the current time in integer epoch milliseconds."""

    def now_ms(self) -> int:
        """Return the current time as integer milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock (``time.time_ns``), thread-safe."""

    def now_ms(self) -> int:
        """Return the wall-clock time in epoch milliseconds."""
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to; thread-safe. For tests and simulations.

    :param start_ms: initial time in epoch milliseconds (default 2026-01-01T00:00:00Z).
    """

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """Return the current manual time."""
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        """Move the clock forward by ``ms`` milliseconds (never backwards); return the new time."""
        if ms < 0:
            raise ValueError("a ManualClock never goes backwards")
        with self._lock:
            self._now += ms
            return self._now

    def set(self, now_ms: int) -> None:
        """Jump to ``now_ms`` (must not be earlier than the current time)."""
        with self._lock:
            if now_ms < self._now:
                raise ValueError("a ManualClock never goes backwards")
            self._now = now_ms


def format_timestamp(epoch_ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC with millisecond precision and ``Z``.

    >>> format_timestamp(1771929000123)
    '2026-02-24T10:30:00.123Z'
    """
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_second_prefix(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=256)
def _second_prefix(seconds: int) -> str:
    # strftime costs microseconds; every write stamps lastUpdatedAt, mostly in the same second.
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def parse_timestamp(text: str) -> int:
    """Parse an ISO-8601 timestamp (as written by :func:`format_timestamp`) to epoch ms.

    :raises ValueError: if ``text`` is not an ISO-8601 timestamp with a UTC offset.
    """
    moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    return (moment - _EPOCH) // _dt.timedelta(milliseconds=1)
