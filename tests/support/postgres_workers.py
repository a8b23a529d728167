"""Process bodies for the cross-process tests on the private PostgreSQL cluster
(``backends/test_postgres.py``), and :func:`run_processes` to race them.

They run in ``spawn``ed interpreters, so they live in an importable module that stays light
(no fixtures) for several processes to start quickly. Each opens its own backend or store over
the shared cluster and waits on a barrier shared by every racer (handed over at spawn, the only
way a barrier can be shared).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import taskstore
from taskstore.backends.postgres import PostgresBackend
from taskstore.errors import TaskStoreError, VersionConflict

__all__ = [
    "OWNER",
    "create_schema",
    "create_threads",
    "put_if_version_once",
    "run_processes",
    "wait_for_change",
    "write_event",
]

OWNER = "alice"


def _main(target: Callable[..., Any], barrier: Any, results: Any, index: int, args: Any) -> None:
    try:
        outcome: Any = ("ok", target(barrier, *args))
    except BaseException:
        outcome = ("error", traceback.format_exc())
    results.put((index, outcome))


def run_processes(
    target: Callable[..., Any], arguments: list[tuple[Any, ...]], timeout_s: float = 60.0
) -> list[Any]:
    """Run ``target(barrier, *args)`` in one spawned process per entry of ``arguments``,
    all sharing one barrier; their return values, by index.

    :raises AssertionError: a process raised (its traceback is the message) or hung.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(arguments))
    results = context.Queue()
    processes = [
        context.Process(target=_main, args=(target, barrier, results, index, args), daemon=True)
        for index, args in enumerate(arguments)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outcomes) < len(processes):
            try:
                index, outcome = results.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"worker processes hung for {timeout_s} s") from None
            kind, value = outcome
            assert kind == "ok", value
            outcomes[index] = value
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    return [outcomes[index] for index in range(len(processes))]


def create_threads(barrier: Any, url: str, table: str, threads: int, max_live: int) -> list[str]:
    """After the barrier, ``threads`` threads of this process each ``store.create`` once for
    one owner (quota ``max_live``), released together; their outcomes."""
    outcomes: list[str] = []
    lock = threading.Lock()
    with taskstore.open(url, table=table, max_tasks_per_owner=max_live) as store:
        store.list(OWNER)  # a connection open, the schema checked: the race is the creates'
        start = threading.Barrier(threads + 1)

        def create() -> None:
            start.wait(30)
            try:
                store.create(OWNER)
            except TaskStoreError as exc:
                outcome = type(exc).__name__
            else:
                outcome = "created"
            with lock:
                outcomes.append(outcome)

        workers = [threading.Thread(target=create) for _ in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait(30)
        start.wait(30)
        for worker in workers:
            worker.join(60)
    return outcomes


def put_if_version_once(barrier: Any, url: str, table: str, worker: int) -> str:
    """After the barrier, one compare-and-set from version 1 of ``(OWNER, "t")``: ``"won:2"``
    or ``"conflict:<actual>"``."""
    backend = PostgresBackend.from_url(url, table=table)
    try:
        backend.get((OWNER, "t"))  # warm: the race is the writes'
        barrier.wait(30)
        try:
            version = backend.put_if_version((OWNER, "t"), f'{{"w":{worker}}}'.encode(), 1)
        except VersionConflict as conflict:
            return f"conflict:{conflict.actual}"
        return f"won:{version}"
    finally:
        backend.close()


def wait_for_change(
    barrier: Any, url: str, table: str, version: int, ready: Any
) -> tuple[float, int]:
    """Wait (10 s timeout, one 30 s slice: only a notification can end it early) for
    ``(OWNER, "t")`` to leave ``version``, after setting ``ready`` once LISTEN is in place;
    the wall-clock time it returned and the version it then read."""
    backend = PostgresBackend.from_url(url, table=table, wait_slice_s=30.0)
    try:
        backend.wait_for_change((OWNER, "t"), -1, 5.0)  # starts LISTEN, returns at once
        barrier.wait(30)
        ready.set()
        backend.wait_for_change((OWNER, "t"), version, 10.0)
        returned = time.time()
        return returned, backend.get((OWNER, "t")).version
    finally:
        backend.close()


def write_event(barrier: Any, url: str, table: str, events: list[bytes]) -> float:
    """After the barrier, one put of ``(OWNER, "t")`` per event, each carrying it; the
    wall-clock time the last returned."""
    backend = PostgresBackend.from_url(url, table=table)
    try:
        barrier.wait(30)
        for event in events:
            backend.put((OWNER, "t"), b"{}", None, event=event)
        return time.time()
    finally:
        backend.close()


def create_schema(barrier: Any, url: str) -> str:
    """After the barrier, ``PostgresBackend.create_schema(url)``: ``"ok"`` or the error."""
    barrier.wait(30)
    try:
        PostgresBackend.create_schema(url)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"
