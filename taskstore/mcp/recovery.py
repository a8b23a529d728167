"""Stale-task recovery: tasks whose tool died with its process are failed, not polled forever.

A task-augmented call's task stays ``working`` while its tool runs. If the process running the
tool dies (a crash, ``SIGKILL``, a lost machine), nobody will ever finish it and its clients
poll until it expires. Recovery turns that into a clear failure:

- **Heartbeat.** Every runner with recovery on refreshes the ``lastUpdatedAt`` of each task it
  holds (queued or running) every ``stale_after_ms / 3`` (:meth:`~taskstore.TaskStore.touch`);
  a live task is never older than that.
- **Recovery pass.** Every ``stale_after_ms / 2`` (and once at start) the runner calls the
  store's :meth:`~taskstore.TaskStore.fail_stale` over every owner, which fails every
  non-terminal ``tools/call`` task whose ``lastUpdatedAt`` is older than ``stale_after_ms``
  with :data:`STALE_MESSAGE` (a ``-32603`` error). Any process may run it, and several may:
  failing is a compare-and-set that re-checks the task, one wins. A pass reads every task of
  the store (the backend's scan), so it needs a backend that can scan across owners
  (:class:`~taskstore.backends.base.ScanningBackend`: every bundled one).

Choose ``stale_after_ms`` well above the longest storage outage you want to ride out (a
heartbeat that cannot be written for ``stale_after_ms`` makes a live task look dead; its tool
is then told to stop, as on cancel). Every process sharing a store should run with recovery on,
or none should: a process without it does not heartbeat, so its long calls would look stale to
a process with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from taskstore.backends.base import ScanningBackend
from taskstore.errors import (
    ConfigurationError,
    InvalidTransitionError,
    TaskNotFoundError,
    TaskStoreError,
)
from taskstore.mcp.timers import Timers
from taskstore.store import TaskStore

__all__ = ["STALE_MESSAGE", "StaleRecovery"]

_log = logging.getLogger("taskstore.mcp")

#: Error message of tasks a recovery pass failed.
STALE_MESSAGE = "The task was abandoned: the server running it stopped before it finished"


class StaleRecovery:
    """Heartbeats a runner's tasks and runs recovery passes (see the module docstring).
    Thread-safe.

    :param store: where the tasks live.
    :param live_tasks: ``(task_id, owner)`` of every task this process holds right now.
    :param timers: where the periodic work runs.
    :param stale_after_ms: age after which a task nobody refreshes counts as abandoned;
        ``None`` turns the periodic work off (:meth:`heartbeat` and :meth:`recover` still
        work when called).
    :raises ConfigurationError: ``stale_after_ms`` below 1000, or periodic recovery asked for
        on a store whose backend cannot scan across owners.
    """

    def __init__(
        self,
        store: TaskStore,
        live_tasks: Callable[[], list[tuple[str, str]]],
        timers: Timers,
        *,
        stale_after_ms: int | None = None,
    ) -> None:
        if stale_after_ms is not None and (
            isinstance(stale_after_ms, bool)
            or not isinstance(stale_after_ms, int)
            or stale_after_ms < 1000
        ):
            raise ConfigurationError("stale_after_ms must be an integer >= 1000 (or None)")
        # Refused here rather than at the first pass: a server started with recovery on must
        # not run for hours believing it recovers tasks.
        if stale_after_ms is not None and not isinstance(store.backend, ScanningBackend):
            raise ConfigurationError(
                f"stale-task recovery (stale_after_ms) needs a backend that can scan every "
                f"owner's tasks; {type(store.backend).__name__} does not declare "
                "taskstore.backends.base.ScanningBackend"
            )
        self.store = store
        self.stale_after_ms = stale_after_ms
        self._live_tasks = live_tasks
        self._timers = timers
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Start the periodic heartbeat and recovery passes (nothing when
        ``stale_after_ms`` is ``None``)."""
        if self.stale_after_ms is None:
            return
        self._timers.call_later(0, self._periodic_recover)
        self._timers.call_later(self.stale_after_ms / 3000, self._periodic_heartbeat)

    def stop(self) -> None:
        """Stop the periodic work. Idempotent."""
        with self._lock:
            self._stopped = True

    def heartbeat(self) -> int:
        """Refresh the ``lastUpdatedAt`` of every task this process holds
        (:meth:`~taskstore.TaskStore.touch`); return how many were refreshed. A task that just
        ended is skipped quietly; one that cannot be written is skipped and counted in one
        warning."""
        refreshed = 0
        failed = 0
        for task_id, owner in self._live_tasks():
            try:
                self.store.touch(task_id, owner)
            except (InvalidTransitionError, TaskNotFoundError):
                continue  # finished (or cancelled, failed, expired) since it was listed
            except TaskStoreError as exc:
                failed += 1
                _log.debug("heartbeat of task %s failed: %s", task_id, exc)
            else:
                refreshed += 1
        if failed:
            _log.warning(
                "heartbeat: %d of %d tasks could not be refreshed", failed, failed + refreshed
            )
        return refreshed

    def recover(self, older_than_ms: int | None = None) -> int:
        """Run one recovery pass: fail every ``tools/call`` task (of every owner) not
        refreshed for ``older_than_ms`` (default ``stale_after_ms``); return how many were
        failed.

        :raises ConfigurationError: no age given or configured; a backend that cannot scan
            across owners.
        :raises TaskStoreError: the store's (e.g. :class:`~taskstore.errors.BackendError`).
        """
        age = older_than_ms if older_than_ms is not None else self.stale_after_ms
        if age is None:
            raise ConfigurationError("recover() needs older_than_ms (no stale_after_ms is set)")
        failed = self.store.fail_stale(
            older_than_ms=age, message=STALE_MESSAGE, request_method="tools/call"
        )
        if failed:
            _log.warning(
                "recovery: failed %d abandoned tasks (not refreshed for %d ms)", failed, age
            )
        return failed

    # -- periodic work -------------------------------------------------------------------

    def _again(self, delay_s: float, callback: Callable[[], None]) -> None:
        with self._lock:
            if self._stopped:
                return
        try:
            self._timers.call_later(delay_s, callback)
        except RuntimeError:  # the timers closed: the runner is shutting down
            pass

    def _periodic_heartbeat(self) -> None:
        assert self.stale_after_ms is not None
        try:
            self.heartbeat()
        finally:
            self._again(self.stale_after_ms / 3000, self._periodic_heartbeat)

    def _periodic_recover(self) -> None:
        assert self.stale_after_ms is not None
        try:
            self.recover()
        except TaskStoreError as exc:
            _log.warning("recovery pass failed: %s", exc)
        finally:
            self._again(self.stale_after_ms / 2000, self._periodic_recover)
