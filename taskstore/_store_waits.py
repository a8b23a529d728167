"""Blocking waits of :class:`~taskstore.store.TaskStore` (a mixin): :meth:`WaitingMixin.wait`
rides out storage outages until its own timeout."""

from __future__ import annotations

import time

from taskstore._keys import printable
from taskstore._store_core import OUTAGE_FIRST_PAUSE_S, StoreCore, pause_for_outage
from taskstore.backends.base import RecordKey
from taskstore.errors import BackendError, TaskNotFoundError
from taskstore.record import TaskRecord

__all__ = ["WaitingMixin"]

# A waiter re-reads at least this often, whatever the poll interval (a lost wake-up costs this).
_MAX_WAIT_SLICE_S = 30.0


class WaitingMixin(StoreCore):
    """``wait`` over the backend's change notifications."""

    def wait(self, task_id: str, owner: str, timeout: float | None = None) -> TaskRecord:
        """Block until the task is terminal and return it (without its outcome).

        Wakes as soon as the backend reports a change (a condition variable in memory, pub/sub
        on Redis) and re-reads every time, so no wake-up is lost; backends without
        notifications are polled at the task's ``pollInterval``, backing off.

        Storage outages do not end the wait: a read or subscription that fails transiently is
        tried again (jittered backoff up to 1 s) until ``timeout``, independently of
        ``retry_deadline_ms``; each try is itself bounded by the time left.

        :param timeout: seconds to wait at most; ``None`` waits as long as the task lives.
        :raises TimeoutError: still not terminal after ``timeout`` seconds (chained to the
            last ``BackendError`` when the storage was down at the end).
        :raises TaskNotFoundError: unknown, expired (also while waiting) or foreign task.
        :raises BackendError: a fault retrying cannot cure; or, with ``timeout=None``, the
            storage was unreachable before the task was first read and for the whole
            ``retry_deadline_ms`` (nothing tells how long the task lives yet).
        """
        key = self._key(task_id, owner)
        with self._traced("wait", task_id):
            return self._wait(key, timeout)

    def _wait(self, key: RecordKey, timeout: float | None) -> TaskRecord:
        task_id = key[1]
        started = time.monotonic()
        deadline = None if timeout is None else started + max(0.0, timeout)
        record: TaskRecord | None = None
        slice_s: float | None = None
        wait_s = 0.0
        pause = OUTAGE_FIRST_PAUSE_S
        while True:
            try:
                with self._operation(deadline):
                    if record is not None and wait_s > 0:
                        self.backend.wait_for_change(key, record.version, wait_s)
                    wait_s = 0.0
                    record = self._read(key)[0]
            except BackendError as exc:
                if not exc.transient:
                    raise
                exc.task_id = task_id
                wait_s = 0.0  # once the storage answers again, read before waiting
                pause = self._ride_out(exc, task_id, record, deadline, started, timeout, pause)
                continue
            pause = OUTAGE_FIRST_PAUSE_S
            if record.is_terminal:
                return record
            slice_s = (record.task.poll_interval or 1_000) / 1000 if slice_s is None else (
                slice_s * 1.5
            )
            wait_s = min(slice_s, _MAX_WAIT_SLICE_S)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"Task {printable(task_id)} did not finish within {timeout} s"
                    )
                wait_s = min(wait_s, remaining)
            if record.expires_at_ms is not None:
                until_expiry = (record.expires_at_ms - self.clock.now_ms()) / 1000
                wait_s = min(wait_s, max(until_expiry, 0.001))

    def _ride_out(
        self,
        exc: BackendError,
        task_id: str,
        record: TaskRecord | None,
        deadline: float | None,
        started: float,
        timeout: float | None,
        pause: float,
    ) -> float:
        """Sleep before ``wait`` tries the unreachable storage again and return the next
        pause, or end the wait: the caller's timeout passed, the task's known expiry passed,
        or (no timeout, task never read) the retry deadline passed."""
        expires_at_ms = None if record is None else record.expires_at_ms
        if expires_at_ms is not None and expires_at_ms <= self.clock.now_ms():
            raise TaskNotFoundError(printable(task_id)) from None
        limit = deadline
        if limit is None and record is None:
            limit = started + self.config.retry_deadline_ms / 1000
        remaining = None if limit is None else limit - time.monotonic()
        if remaining is not None and remaining <= 0:
            if deadline is None:
                raise exc
            raise TimeoutError(
                f"Task {printable(task_id)} did not finish within {timeout} s "
                "(the task storage was unreachable)"
            ) from exc
        return pause_for_outage(pause, remaining)
