"""``OutcomeWriter``: a finished tool's outcome is stored, even across a storage outage.

The tool runner hands every outcome write (complete or fail) to an :class:`OutcomeWriter`. The
first attempt runs at once on the caller's thread (the tool-pool worker that ran the tool). If
it fails with :class:`~taskstore.errors.BackendError` (or :class:`~taskstore.errors.ConflictError`,
a compare-and-set budget spent), the write is retried on a background :class:`Timers` thread,
never on a pool worker, with jittered exponential backoff capped at
:attr:`RetryPolicy.max_delay_s`, until it succeeds or the task expires (judged by the store's
clock). A retry after a lost reply is safe: completing or failing a task again with the same
outcome is idempotent (or, on a store without that, the retry finds the task final and the
write callback treats it as done).

Logging is one line per attempt sequence, not one per attempt: ``WARNING`` at the first failure,
``DEBUG`` for each further one, ``INFO`` when a retry succeeds, ``ERROR`` when the task expired
first, ``WARNING`` when the writer is closed with the write still pending. All on the
``taskstore.mcp`` logger.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from taskstore.clock import Clock
from taskstore.errors import BackendError, ConfigurationError, ConflictError
from taskstore.mcp.timers import Timers

__all__ = ["OutcomeWriter", "RetryPolicy"]

_log = logging.getLogger("taskstore.mcp")

#: Errors worth retrying: the storage did not answer (or could not win a compare-and-set).
_RETRYABLE = (BackendError, ConflictError)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of outcome-write retries: the ``n``-th retry waits a random time in
    ``[d/2, d]`` where ``d = min(max_delay_s, first_delay_s * 2 ** (n - 1))``.

    :ivar first_delay_s: the base wait before the first retry (default 0.1 s).
    :ivar max_delay_s: the cap on any one wait (default 5 s).
    """

    first_delay_s: float = 0.1
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ConfigurationError(
                "RetryPolicy needs 0 < first_delay_s <= max_delay_s"
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` (>= 1) failed attempts."""
        ceiling = min(self.max_delay_s, self.first_delay_s * 2 ** min(failures - 1, 32))
        # Jitter keeps many writes failing together from retrying in lockstep.
        return random.uniform(ceiling / 2, ceiling)


class _Write:
    """One outcome write and its attempt count."""

    __slots__ = ("expires_at_ms", "failures", "task_id", "write")

    def __init__(self, task_id: str, write: Callable[[], bool], expires_at_ms: int | None):
        self.task_id = task_id
        self.write = write
        self.expires_at_ms = expires_at_ms
        self.failures = 0


class OutcomeWriter:
    """Stores outcomes, retrying transient storage failures until the task expires.
    Thread-safe.

    :param clock: the store's clock (a task's expiry is in its time).
    :param timers: where retries run.
    :param policy: the backoff (default :class:`RetryPolicy`).
    """

    def __init__(
        self, clock: Clock, timers: Timers, *, policy: RetryPolicy | None = None
    ) -> None:
        self.clock = clock
        self.timers = timers
        self.policy = policy if policy is not None else RetryPolicy()
        self._lock = threading.Lock()
        self._pending: dict[str, _Write] = {}
        self._closed = False

    def write(
        self, task_id: str, write: Callable[[], bool], *, expires_at_ms: int | None
    ) -> bool:
        """Run ``write()`` now; if it raises a retryable error, retry it in the background.

        ``write`` stores the outcome of task ``task_id`` and returns ``True``, or returns
        ``False`` when the task is already final or gone (cancelled, expired, or, on a store
        without idempotent completion, written by an earlier attempt whose reply was lost).
        It must be safe to repeat.

        :param expires_at_ms: the task's expiry (store clock); retries stop there. ``None``:
            until :meth:`close`.
        :returns: what ``write()`` returned if this first attempt went through; ``False``
            if the write is left to background retries, or failed for good (logged).
        """
        return self._attempt(_Write(task_id, write, expires_at_ms), first=True)

    def pending(self) -> int:
        """How many outcomes wait for a retry."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Stop retrying; each outcome still pending is logged (``WARNING``) as not stored.
        The tasks stay non-terminal until they expire or a stale-task recovery pass fails
        them. Idempotent."""
        with self._lock:
            self._closed = True
            abandoned = list(self._pending.values())
            self._pending.clear()
        for item in abandoned:
            _log.warning(
                "shutting down without the outcome of task %s: %d attempts to store it failed",
                item.task_id,
                item.failures,
            )

    # -- internals -----------------------------------------------------------------------

    def _attempt(self, item: _Write, *, first: bool = False) -> bool:
        if not first:
            with self._lock:
                if self._pending.pop(item.task_id, None) is None:
                    return False  # closed meanwhile: already reported
            if self._expired(item):
                return False
        try:
            stored = item.write()
        except _RETRYABLE as exc:
            item.failures += 1
            return self._failed(item, exc)
        except Exception:  # noqa: BLE001 - a write that cannot succeed: report it, stop
            _log.exception("could not store the outcome of task %s", item.task_id)
            return False
        if item.failures and stored:
            _log.info(
                "stored the outcome of task %s after %d failed attempts",
                item.task_id,
                item.failures,
            )
        elif item.failures:
            _log.info(
                "task %s was already final when its outcome could be written (after %d "
                "failed attempts)",
                item.task_id,
                item.failures,
            )
        return stored

    def _expired(self, item: _Write) -> bool:
        if item.expires_at_ms is None or self.clock.now_ms() < item.expires_at_ms:
            return False
        _log.error(
            "gave up storing the outcome of task %s: the task expired after %d failed attempts",
            item.task_id,
            item.failures,
        )
        return True

    def _failed(self, item: _Write, exc: Exception) -> bool:
        if self._expired(item):
            return False
        now = self.clock.now_ms()
        delay = self.policy.delay(item.failures)
        if item.expires_at_ms is not None:
            delay = min(delay, (item.expires_at_ms - now) / 1000)
        if item.failures == 1:
            _log.warning(
                "could not store the outcome of task %s (%s): retrying until it expires",
                item.task_id,
                exc,
            )
        else:
            _log.debug(
                "attempt %d to store the outcome of task %s failed (%s)",
                item.failures,
                item.task_id,
                exc,
            )
        with self._lock:
            closed = self._closed
            if not closed:
                self._pending[item.task_id] = item
        if closed:
            _log.warning(
                "shutting down without the outcome of task %s: %d attempts to store it failed",
                item.task_id,
                item.failures,
            )
            return False
        try:
            self.timers.call_later(delay, lambda: self._retry(item))
        except RuntimeError:  # the timers closed between the check and now
            with self._lock:
                self._pending.pop(item.task_id, None)
            _log.warning("shutting down without the outcome of task %s", item.task_id)
        return False

    def _retry(self, item: _Write) -> None:
        self._attempt(item)
