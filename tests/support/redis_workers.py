"""Process bodies for the cross-process races on a real redis-server
(``backends/test_redis_processes.py``).

They run in ``spawn``ed interpreters, so they live in an importable module that stays light
(no fakeredis, no fixtures) for four processes to start quickly. Each opens its own
:class:`~taskstore.TaskStore` over the shared server and waits on the pool's barrier.
"""

from __future__ import annotations

import time
from typing import Any

import taskstore
from taskstore import TaskStatus

__all__ = [
    "OWNER",
    "WORKERS",
    "create_many",
    "drive",
    "finish",
    "init_worker",
    "open_store",
    "set_variables",
    "wait_for",
]

WORKERS = 4
OWNER = "alice"

# Set in each worker by the pool initializer: a barrier all WORKERS processes wait on.
_barrier: Any = None


def init_worker(barrier: Any) -> None:
    """Pool initializer: keep the barrier every worker waits on."""
    global _barrier
    _barrier = barrier


def open_store(url: str, prefix: str, **options: Any) -> taskstore.TaskStore:
    """A TaskStore on the shared server under ``prefix``."""
    return taskstore.open(url, prefix=prefix, **options)


def set_variables(url: str, prefix: str, task_id: str, worker: int, count: int) -> int:
    """After the barrier, ``count`` set_variables on one task; returns ``count``."""
    with open_store(url, prefix) as store:
        _barrier.wait(30)
        for i in range(count):
            store.set_variables(task_id, OWNER, {f"w{worker}-{i}": i})
        return count


def finish(url: str, prefix: str, task_ids: list[str], worker: int) -> list[str]:
    """Per task, after the barrier: odd workers cancel, even ones complete; the outcomes."""
    outcomes = []
    with open_store(url, prefix) as store:
        for task_id in task_ids:
            _barrier.wait(30)  # every round starts all four processes on the same task
            try:
                if worker % 2:
                    store.cancel(task_id, OWNER)
                else:
                    store.complete(task_id, OWNER, {"by": worker})
            except taskstore.TaskStoreError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append("won")
    return outcomes


def create_many(url: str, prefix: str, count: int) -> list[str]:
    """After the barrier, ``count`` creates for one owner (quota 10); the outcomes."""
    outcomes = []
    with open_store(url, prefix, max_tasks_per_owner=10) as store:
        _barrier.wait(30)
        for _ in range(count):
            try:
                store.create(OWNER)
            except taskstore.TaskStoreError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append("created")
    return outcomes


def wait_for(url: str, prefix: str, task_id: str, ready_key: str) -> tuple[float, str]:
    """Signal readiness through ``ready_key``, then ``store.wait`` (20 s timeout) with a 30 s
    poll interval, so only a pub/sub wake-up can end the wait early; returns the wall-clock
    time it returned and the status."""
    with open_store(url, prefix, poll_interval_ms=30_000) as store:
        store.backend.client.set(ready_key, b"1")  # type: ignore[attr-defined]
        record = store.wait(task_id, OWNER, timeout=20)
        return time.time(), record.status.value


def drive(url: str, prefix: str, task_id: str) -> float:
    """input_required → working → completed; returns the wall-clock time of the last write."""
    with open_store(url, prefix) as store:
        store.update_status(task_id, OWNER, TaskStatus.INPUT_REQUIRED, "need input")
        store.update_status(task_id, OWNER, TaskStatus.WORKING)
        store.complete(task_id, OWNER, {"done": True})
        return time.time()
