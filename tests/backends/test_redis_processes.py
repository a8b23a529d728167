"""Cross-process behaviour on a real redis-server: four spawned worker processes released
together by a barrier race on one task or one owner, and events and wake-ups travel between
processes through Redis pub/sub. Exact counts are asserted, latencies are measured.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

# Workers import this module to find their functions: it stays light (no fakeredis, no
# support module at import time) so four spawned processes start quickly.
pytest.importorskip("redis")

import taskstore
from taskstore import TaskStatus

if TYPE_CHECKING:
    from tests.support.redis_support import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.redis_server]

WORKERS = 4
OWNER = "alice"

# Set in each worker by the pool initializer: a barrier all WORKERS processes wait on.
_barrier: Any = None


def _init_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def fresh_prefix() -> str:
    """A key prefix no other test uses."""
    return f"ts-proc-{uuid.uuid4().hex[:12]}"


def _open(url: str, prefix: str, **options: Any) -> taskstore.TaskStore:
    return taskstore.open(url, prefix=prefix, **options)


def _set_variables(url: str, prefix: str, task_id: str, worker: int, count: int) -> int:
    with _open(url, prefix) as store:
        _barrier.wait(30)
        for i in range(count):
            store.set_variables(task_id, OWNER, {f"w{worker}-{i}": i})
        return count


def _finish(url: str, prefix: str, task_ids: list[str], worker: int) -> list[str]:
    outcomes = []
    with _open(url, prefix) as store:
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


def _create_many(url: str, prefix: str, count: int) -> list[str]:
    outcomes = []
    with _open(url, prefix, max_tasks_per_owner=10) as store:
        _barrier.wait(30)
        for _ in range(count):
            try:
                store.create(OWNER)
            except taskstore.TaskStoreError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append("created")
    return outcomes


def _wait_for(url: str, prefix: str, task_id: str, ready_key: str) -> tuple[float, str]:
    with _open(url, prefix) as store:
        store.backend.client.set(ready_key, b"1")  # type: ignore[attr-defined]
        record = store.wait(task_id, OWNER, timeout=20)
        return time.time(), record.status.value


def _drive(url: str, prefix: str, task_id: str) -> float:
    with _open(url, prefix) as store:
        store.update_status(task_id, OWNER, TaskStatus.INPUT_REQUIRED, "need input")
        store.update_status(task_id, OWNER, TaskStatus.WORKING)
        store.complete(task_id, OWNER, {"done": True})
        return time.time()


@pytest.fixture(scope="module")
def pool() -> Iterator[multiprocessing.pool.Pool]:
    """Four spawned worker processes sharing one barrier (spawn: no inherited sockets or
    threads)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    workers = context.Pool(WORKERS, initializer=_init_worker, initargs=(barrier,))
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
    prefix = fresh_prefix()
    with _open(url, prefix) as store:
        task = store.create(OWNER)
        results = pool.starmap(
            _set_variables, [(url, prefix, task.task_id, w, 25) for w in range(WORKERS)], 1
        )
        assert results == [25] * WORKERS
        final = store.get(task.task_id, OWNER)
        assert final.variables == {f"w{w}-{i}": i for w in range(WORKERS) for i in range(25)}
        assert final.version == 1 + WORKERS * 25


def test_processes_complete_versus_cancel_one_winner(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """30 rounds of 2 processes completing racing 2 cancelling one task: exactly one winner per
    round, every loser gets InvalidTransitionError, the stored status is the winner's."""
    prefix = fresh_prefix()
    with _open(url, prefix, max_tasks_per_owner=None) as store:
        task_ids = [store.create(OWNER).task_id for _ in range(30)]
        results = pool.starmap(_finish, [(url, prefix, task_ids, w) for w in range(WORKERS)], 1)
        for round_index, task_id in enumerate(task_ids):
            outcomes = [results[w][round_index] for w in range(WORKERS)]
            assert sorted(outcomes) == ["InvalidTransitionError"] * 3 + ["won"], outcomes
            winner = outcomes.index("won")
            status = store.get(task_id, OWNER).status
            assert status is (TaskStatus.CANCELLED if winner % 2 else TaskStatus.COMPLETED)


def test_processes_quota_race_admits_exactly_the_limit(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """4 processes × 8 creates for one owner with max_tasks_per_owner=10: exactly 10 succeed."""
    prefix = fresh_prefix()
    results = pool.starmap(_create_many, [(url, prefix, 8) for _ in range(WORKERS)], 1)
    outcomes = [outcome for worker in results for outcome in worker]
    assert outcomes.count("created") == 10
    assert outcomes.count("QuotaExceededError") == 22
    with _open(url, prefix) as store:
        assert len(store.list(OWNER, limit=100).tasks) == 10


def test_waiter_in_another_process_returns_within_100ms(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """A store.wait() blocked in a worker process returns within 100 ms of this process
    completing the task (measured from timestamps; pollInterval alone would take 1 s)."""
    prefix = fresh_prefix()
    latencies = []
    with _open(url, prefix) as store:
        client = store.backend.client  # type: ignore[attr-defined]
        for round_index in range(3):
            task = store.create(OWNER)
            ready_key = f"{prefix}:ready:{round_index}"
            waiting = pool.apply_async(_wait_for, (url, prefix, task.task_id, ready_key))
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
    assert max(latencies) < 0.1, latencies


def test_subscribe_receives_status_events_from_another_process(
    pool: multiprocessing.pool.Pool, url: str
) -> None:
    """store.subscribe() in this process receives every status change another process makes,
    in order, through Redis pub/sub."""
    prefix = fresh_prefix()
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    def on_event(task: dict[str, Any]) -> None:
        received.append(task)
        if task["status"] == "completed":
            arrived.set()

    with _open(url, prefix) as store:
        task = store.create(OWNER)
        store.subscribe(on_event)
        finished_at = pool.apply(_drive, (url, prefix, task.task_id))
        assert arrived.wait(10)
        assert time.time() - finished_at < 5
        assert [(e["taskId"], e["status"]) for e in received] == [
            (task.task_id, "input_required"),
            (task.task_id, "working"),
            (task.task_id, "completed"),
        ]
        assert received[0]["statusMessage"] == "need input"
