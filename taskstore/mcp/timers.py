"""``Timers``: one background thread running short callbacks at their due time.

The tool runner uses it for work that must happen later without holding a tool-pool worker:
retrying the storage of a finished tool's outcome, heartbeats, stale-task recovery passes.
The thread starts with the first scheduled callback, so a runner that never needs it costs
nothing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Timers"]

_log = logging.getLogger("taskstore.mcp")


class Timers:
    """Runs callbacks on one daemon thread, each once its delay has passed, earliest due first.
    Thread-safe.

    Callbacks run one at a time, so each should be short (a few store calls); one that raises
    is logged and the thread carries on.

    :param name: the thread's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Timers(name={self.name!r}, pending={self.pending()})"

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the timer thread in ``delay_s`` seconds (at once if ``<= 0``).

        :raises RuntimeError: :meth:`close` was called.
        """
        due = time.monotonic() + max(0.0, delay_s)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            heapq.heappush(self._heap, (due, next(self._seq), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        """How many callbacks wait for their time."""
        with self._cond:
            return len(self._heap)

    def close(self) -> None:
        """Drop every pending callback and let the thread end (after the callback it may be
        running). Idempotent; does not wait."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            _due, _seq, callback = heapq.heappop(self._heap)
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
            try:
                callback()
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                _log.exception("%s: a scheduled callback failed", self.name)
