"""Cross-process behaviour on a real redis-server: four spawned worker processes released
together by a barrier race on one task or one owner, and events and wake-ups travel between
processes through Redis pub/sub. Exact counts are asserted; latencies are benchmarked
(``benchmarks/bench_redis.py``), only liveness is asserted here.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from support.servers import fresh_name, require_modules

require_modules("redis", markers=["redis", "redis_server"])

from support.redis_workers import (
    OWNER,
    WORKERS,
    create_many,
    drive,
    finish,
    init_worker,
    open_store,
    set_variables,
    wait_for,
)
from taskstore import TaskStatus

if TYPE_CHECKING:
    from support.redis_support import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.redis_server]

@pytest.fixture(scope="module")
def pool() -> Iterator[multiprocessing.pool.Pool]:
    """Four spawned worker processes sharing one barrier (spawn: no inherited sockets or
    threads)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    workers = context.Pool(WORKERS, initializer=init_worker, initargs=(barrier,))
    yield workers
    workers.terminate()  # idle workers hold nothing worth a graceful shutdown
    workers.join()


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """The session redis-server's URL."""
    return redis_server.url


def test_processes_setting_variables_lose_nothing(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """4 processes × 25 set_variables on one task: all 100 keys land, version 101."""
    prefix = fresh_name()
    with open_store(url, prefix) as store:
        task = store.create(OWNER)
        results = pool.starmap(
            set_variables, [(url, prefix, task.task_id, w, 25) for w in range(WORKERS)], 1
        )
        assert results == [25] * WORKERS
        final = store.get(task.task_id, OWNER)
        assert final.variables == {f"w{w}-{i}": i for w in range(WORKERS) for i in range(25)}
        assert final.version == 1 + WORKERS * 25


def test_processes_complete_versus_cancel_one_winner(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """30 rounds of 2 processes completing racing 2 cancelling one task: exactly one outcome
    per round. A completion that wins leaves the other three InvalidTransitionError; a cancel
    that wins makes the other cancel an idempotent repeat (it succeeds too) and both
    completions InvalidTransitionError. The stored status is the winner's."""
    prefix = fresh_name()
    with open_store(url, prefix, max_tasks_per_owner=None) as store:
        task_ids = [store.create(OWNER).task_id for _ in range(30)]
        results = pool.starmap(finish, [(url, prefix, task_ids, w) for w in range(WORKERS)], 1)
        for round_index, task_id in enumerate(task_ids):
            outcomes = [results[w][round_index] for w in range(WORKERS)]
            won = [w for w, outcome in enumerate(outcomes) if outcome == "won"]
            assert set(outcomes) <= {"won", "InvalidTransitionError"}, outcomes
            completed = any(w % 2 == 0 for w in won)
            if completed:
                assert len(won) == 1, outcomes
            else:
                assert won == [w for w in range(WORKERS) if w % 2], outcomes
            status = store.get(task_id, OWNER).status
            assert status is (TaskStatus.COMPLETED if completed else TaskStatus.CANCELLED)


def test_processes_quota_race_admits_exactly_the_limit(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """4 processes × 8 creates for one owner with max_tasks_per_owner=10: exactly 10 succeed."""
    prefix = fresh_name()
    results = pool.starmap(create_many, [(url, prefix, 8) for _ in range(WORKERS)], 1)
    outcomes = [outcome for worker in results for outcome in worker]
    assert outcomes.count("created") == 10
    assert outcomes.count("QuotaExceededError") == 22
    with open_store(url, prefix) as store:
        assert len(store.list(OWNER, limit=100).tasks) == 10


def test_waiter_in_another_process_is_woken_by_the_completion(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """A store.wait() blocked in a worker process (30 s poll interval, 20 s timeout) returns
    the completed task long before any re-poll could: the wake-up came through pub/sub.
    (How fast it wakes is measured in benchmarks/bench_redis.py, not asserted here.)"""
    prefix = fresh_name()
    latencies = []
    with open_store(url, prefix) as store:
        client = store.backend.client  # type: ignore[attr-defined]
        for round_index in range(3):
            task = store.create(OWNER)
            ready_key = f"{prefix}:ready:{round_index}"
            waiting = pool.apply_async(wait_for, (url, prefix, task.task_id, ready_key))
            deadline = time.monotonic() + 30
            while not client.exists(ready_key):
                assert time.monotonic() < deadline, "the waiter never started"
                time.sleep(0.01)
            # Let the waiter get past its first read into the blocking wait, so the wake-up
            # (not the initial read) is what is measured.
            time.sleep(0.3)
            completed_at = time.time()
            store.complete(task.task_id, OWNER, {"n": round_index})
            returned_at, status = waiting.get(30)
            assert status == "completed"
            latencies.append(returned_at - completed_at)
    assert max(latencies) < 5.0, latencies


def test_subscribe_receives_status_events_from_another_process(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """store.subscribe() in this process receives every status change another process makes,
    in order, through Redis pub/sub."""
    prefix = fresh_name()
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    def on_event(task: dict[str, Any]) -> None:
        received.append(task)
        if task["status"] == "completed":
            arrived.set()

    with open_store(url, prefix) as store:
        task = store.create(OWNER)
        store.subscribe(on_event)
        finished_at = pool.apply(drive, (url, prefix, task.task_id))
        assert arrived.wait(10)
        assert time.time() - finished_at < 5
        assert [(e["taskId"], e["status"]) for e in received] == [
            (task.task_id, "input_required"),
            (task.task_id, "working"),
            (task.task_id, "completed"),
        ]
        assert received[0]["statusMessage"] == "need input"
