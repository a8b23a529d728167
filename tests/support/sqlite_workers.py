"""Process bodies for the cross-process tests of the SQLite backend
(in ``backends/test_sqlite.py``).

They run in ``spawn``ed interpreters, so they live in an importable module that stays light
(no pytest, no fixtures). Each opens its own :class:`~taskstore.backends.sqlite.SqliteBackend`
on the shared file and, for races, waits on the pool's barrier so every process starts at once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from taskstore.backends.sqlite import SqliteBackend
from taskstore.errors import TaskStoreError

__all__ = [
    "OWNER",
    "T0",
    "compare_and_set",
    "create_many",
    "init_worker",
    "listen",
    "wait_for_write",
    "write_events",
]

OWNER = "alice"
#: The tests' clock (2026-01-01T00:00:00Z): records never expire at it.
T0 = 1_767_225_600_000

# Set in each worker by the pool initializer: a barrier every worker of the pool waits on.
_barrier: Any = None


def init_worker(barrier: Any) -> None:
    """Pool initializer: keep the barrier every worker waits on."""
    global _barrier
    _barrier = barrier


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except TaskStoreError as exc:
        return type(exc).__name__
    return "won"


def _on_threads(count: int, target: Callable[[int], str]) -> list[str]:
    """``target(i)`` on ``count`` threads released together (a light run_barrier_threads)."""
    barrier = threading.Barrier(count)
    results = [""] * count

    def run(index: int) -> None:
        barrier.wait(30)
        results[index] = target(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def create_many(path: str, table: str, threads: int, max_live: int) -> list[str]:
    """After the barrier, ``threads`` threads each create one record for :data:`OWNER` with
    room for ``max_live``; each thread's outcome (``won`` or the error's class name)."""
    backend = SqliteBackend(path, table=table)
    try:
        _barrier.wait(30)
        return _on_threads(
            threads,
            lambda i: _outcome(
                lambda: backend.create(
                    (OWNER, f"p{os.getpid()}-t{i}"),
                    b"{}",
                    None,
                    sort_ms=T0,
                    max_live=max_live,
                    now_ms=T0,
                )
            ),
        )
    finally:
        backend.close()


def compare_and_set(path: str, table: str, task_ids: list[str], worker: int) -> list[str]:
    """Per task, after the barrier: ``put_if_version(expected=1)``; each round's outcome."""
    backend = SqliteBackend(path, table=table)
    try:
        outcomes = []
        for task_id in task_ids:
            _barrier.wait(30)  # every round starts all processes on the same record
            outcomes.append(
                _outcome(
                    lambda: backend.put_if_version(
                        (OWNER, task_id), f'{{"by":{worker}}}'.encode(), 1, now_ms=T0
                    )
                )
            )
        return outcomes
    finally:
        backend.close()


def wait_for_write(
    path: str, table: str, task_id: str, ready_id: str, timeout_s: float
) -> tuple[float, int, int]:
    """Start waiting on ``task_id`` (at version 1), write ``ready_id`` to say so, and wait as a
    caller does (re-read after each return) until the version moves or ``timeout_s``; returns
    the wall-clock time it returned, how many times ``wait_for_change`` returned and the final
    version."""
    backend = SqliteBackend(path, table=table)
    try:
        key = (OWNER, task_id)
        backend.wait_for_change(key, 0, 5.0)  # starts the event thread (version 1 != 0)
        backend.put((OWNER, ready_id), b"{}", None, sort_ms=T0, now_ms=T0)
        deadline = time.monotonic() + timeout_s
        returns = 0
        while backend.get(key, now_ms=T0).version == 1 and time.monotonic() < deadline:
            backend.wait_for_change(key, 1, deadline - time.monotonic())
            returns += 1
        return time.time(), returns, backend.get(key, now_ms=T0).version
    finally:
        backend.close()


def listen(path: str, table: str, ready_id: str, count: int, timeout_s: float) -> list[bytes]:
    """Add a listener, write ``ready_id`` to say so, collect events until ``count`` arrived
    (or ``timeout_s``), then a few poll intervals more (a duplicate would show); returns them."""
    backend = SqliteBackend(path, table=table)
    try:
        received: list[bytes] = []
        backend.add_listener(received.append)
        backend.put((OWNER, ready_id), b"{}", None, sort_ms=T0, now_ms=T0)
        deadline = time.monotonic() + timeout_s
        while len(received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        return list(received)
    finally:
        backend.close()


def write_events(path: str, table: str, task_id: str, events: list[bytes]) -> int:
    """Write ``task_id`` once per event, each carrying it; returns the last version."""
    backend = SqliteBackend(path, table=table)
    try:
        version = 0
        for event in events:
            version = backend.put((OWNER, task_id), b"{}", None, sort_ms=T0, event=event, now_ms=T0)
        return version
    finally:
        backend.close()
