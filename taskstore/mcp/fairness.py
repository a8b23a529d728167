"""``FairScheduler``: the tool pool shared fairly between owners.

Task-augmented tool calls run on a fixed pool of threads. Served first come first served, one
owner's backlog of long calls would fill the pool and keep every other owner's quick call
waiting. The scheduler prevents that with two rules:

- **A per-owner cap**: an owner has at most ``per_owner`` calls running at once (default
  ``max(1, max_workers // 4)``: 4 of the 16 workers of ``McpServer``'s default), so most of the
  pool stays free for others. Calls beyond the cap wait in the owner's own queue, in the order
  they came (FIFO). The queue itself is bounded by the store's per-owner task quota, since
  every queued call holds a live task.
- **Fair dispatch**: whenever a worker is free, the next call comes from the owner with the
  fewest calls running, among owners under their cap with calls waiting; ties go round-robin
  (the owner served longest ago first).

The cap holds even when workers sit idle: threads cannot be taken back from a call once it
runs, so lending them to a backlog would starve the next owner to arrive.

The runner keys jobs by task owner: the authenticated subject, else the session. Anonymous
MCP 2026-07-28 callers share one owner, so together they get one owner's share.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from taskstore import telemetry
from taskstore.errors import ConfigurationError

__all__ = ["FairScheduler", "default_per_owner"]

_log = logging.getLogger("taskstore.mcp")


def default_per_owner(max_workers: int) -> int:
    """The default per-owner cap for a pool of ``max_workers``: ``max(1, max_workers // 4)``."""
    return max(1, max_workers // 4)


class _Job:
    __slots__ = ("fn", "key", "owner")

    def __init__(self, owner: str, key: str, fn: Callable[[], None]) -> None:
        self.owner = owner
        self.key = key
        self.fn = fn


class FairScheduler:
    """Runs jobs on a thread pool, at most ``per_owner`` at once per owner, fairly across
    owners (see the module docstring). Thread-safe.

    :param max_workers: threads in the pool (>= 1).
    :param per_owner: cap on one owner's running jobs (default :func:`default_per_owner`).
    :param thread_name_prefix: names of the pool's threads.
    :raises ConfigurationError: ``max_workers`` or ``per_owner`` below 1.
    """

    def __init__(
        self,
        max_workers: int,
        per_owner: int | None = None,
        *,
        thread_name_prefix: str = "taskstore-tool",
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError("max_workers must be an integer >= 1")
        if per_owner is None:
            per_owner = default_per_owner(max_workers)
        if isinstance(per_owner, bool) or not isinstance(per_owner, int) or per_owner < 1:
            raise ConfigurationError("max_running_per_owner must be an integer >= 1")
        self.max_workers = max_workers
        self.per_owner = per_owner
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=thread_name_prefix
        )
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Job]] = {}  # owner → its waiting jobs, oldest first
        self._ready: deque[str] = deque()  # owners with waiting jobs, served longest ago first
        self._running: dict[str, int] = {}  # owner → running jobs
        self._waiting: dict[str, _Job] = {}  # key → its waiting job (discard without a scan)
        self._busy = 0
        self._closed = False
        # taskstore.runner.queue_depth and .running read queued() and running() when collected.
        telemetry.track_scheduler(self)

    def __repr__(self) -> str:
        return (
            f"FairScheduler(max_workers={self.max_workers}, per_owner={self.per_owner}, "
            f"running={self.running()}, queued={self.queued()})"
        )

    def submit(self, owner: str, key: str, fn: Callable[[], None]) -> None:
        """Queue ``fn()`` for ``owner``; it starts as soon as the rules allow (at once when
        the owner is under its cap and a worker is free).

        :param key: identifies the job for :meth:`discard` (a task id).
        :raises RuntimeError: the scheduler is closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the tool pool is shut down")
            queue = self._queues.get(owner)
            if queue is None:
                queue = self._queues[owner] = deque()
                self._ready.append(owner)
            job = _Job(owner, key, fn)
            queue.append(job)
            self._waiting[key] = job
            starting = self._dispatch()
        self._start(starting)

    def discard(self, key: str) -> bool:
        """Remove the waiting job ``key`` so it never starts; ``True`` if it was waiting
        (``False``: unknown, already started or finished)."""
        with self._lock:
            job = self._waiting.pop(key, None)
            if job is None:
                return False
            queue = self._queues[job.owner]
            queue.remove(job)
            if not queue:
                self._forget(job.owner)
            return True

    def running(self) -> int:
        """How many jobs run now."""
        with self._lock:
            return self._busy

    def queued(self) -> int:
        """How many jobs wait."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def close(self) -> list[str]:
        """Stop: waiting jobs are dropped (never start) and their keys returned; running ones
        finish on their own. Idempotent."""
        with self._lock:
            self._closed = True
            dropped = [job.key for queue in self._queues.values() for job in queue]
            self._queues.clear()
            self._ready.clear()
            self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        return dropped

    # -- internals ------------------------------------------------------------------------

    def _dispatch(self) -> list[_Job]:
        """Take the jobs that may start now and count them as running (lock held)."""
        starting: list[_Job] = []
        while self._busy < self.max_workers and not self._closed:
            job = self._next_job()
            if job is None:
                break
            self._busy += 1
            self._running[job.owner] = self._running.get(job.owner, 0) + 1
            starting.append(job)
        return starting

    def _start(self, jobs: list[_Job]) -> None:
        # Outside the lock: starting a pool thread waits for it, and the job it runs may
        # call back into the scheduler (a cancel event discarding a queued job) at once.
        for job in jobs:
            try:
                self._executor.submit(self._run, job)
            except RuntimeError:  # closed meanwhile: the job never starts
                self._release(job)

    def _next_job(self) -> _Job | None:
        """The next job to start under the rules, or ``None`` (lock held)."""
        best: int | None = None
        fewest = self.per_owner
        for index, owner in enumerate(self._ready):
            running = self._running.get(owner, 0)
            if running < fewest:
                best, fewest = index, running
                if running == 0:
                    break
        if best is None:
            return None
        owner = self._ready[best]
        del self._ready[best]
        queue = self._queues[owner]
        job = queue.popleft()
        del self._waiting[job.key]
        if queue:
            self._ready.append(owner)  # served now: to the back of the line
        else:
            del self._queues[owner]
        return job

    def _forget(self, owner: str) -> None:
        """Drop ``owner``'s emptied queue (lock held)."""
        del self._queues[owner]
        self._ready.remove(owner)

    def _run(self, job: _Job) -> None:
        try:
            job.fn()
        except Exception:  # noqa: BLE001 - a job's failure must not leak its slot
            _log.exception("tool job %s raised", job.key)
        finally:
            self._release(job)

    def _release(self, job: _Job) -> None:
        """Free ``job``'s slot and start what may start now."""
        with self._lock:
            self._busy -= 1
            left = self._running[job.owner] - 1
            if left:
                self._running[job.owner] = left
            else:
                del self._running[job.owner]
            starting = self._dispatch()
        self._start(starting)
