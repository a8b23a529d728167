"""Process bodies for the cross-process races on DynamoDB Local (``test_dynamodb_local.py``).

They run in ``spawn``ed interpreters, so they live in an importable module, build their own
:class:`~taskstore.TaskStore` over a fresh :class:`DynamoDbBackend` (nothing is shared with
the parent but the table), wait on a shared barrier, and report through a queue: one tuple per
attempt, or ``("error", repr)`` for anything unexpected.
"""

from __future__ import annotations

from typing import Any

from taskstore import (
    InvalidTransitionError,
    QuotaExceededError,
    SecurityConfig,
    StoreConfig,
    TaskStore,
)
from taskstore.backends.dynamodb import DynamoDbBackend

__all__ = ["create_tasks", "finish_task", "set_variables"]

_BARRIER_TIMEOUT_S = 120


def _store(endpoint_url: str, table: str, max_tasks: int | None = None) -> TaskStore:
    backend = DynamoDbBackend(table, region="us-east-1", endpoint_url=endpoint_url)
    return TaskStore(
        backend,
        # Many writers on one item: give the compare-and-set retries room on a 2-core machine.
        config=StoreConfig(conflict_retry_budget_ms=60_000),
        security=SecurityConfig(max_tasks_per_owner=max_tasks),
    )


def set_variables(
    endpoint_url: str, table: str, owner: str, task_id: str, index: int, count: int,
    barrier: Any, results: Any,
) -> None:
    """Write ``count`` distinct variables to one task, each by its own ``set_variables``."""
    try:
        store = _store(endpoint_url, table)
        barrier.wait(_BARRIER_TIMEOUT_S)
        for j in range(count):
            store.set_variables(task_id, owner, {f"p{index}-{j}": j})
            results.put(("set", index, j))
        store.close()
    except Exception as exc:
        results.put(("error", index, repr(exc)))


def finish_task(
    endpoint_url: str, table: str, owner: str, task_ids: list[str], index: int,
    barrier: Any, results: Any,
) -> None:
    """Race to end each task: even processes complete it, odd ones cancel it."""
    try:
        store = _store(endpoint_url, table)
        for round_, task_id in enumerate(task_ids):
            barrier.wait(_BARRIER_TIMEOUT_S)
            try:
                if index % 2 == 0:
                    store.complete(task_id, owner, {"by": index})
                else:
                    store.cancel(task_id, owner)
            except InvalidTransitionError:
                results.put(("lost", round_, index))
            else:
                results.put(("won", round_, index))
        store.close()
    except Exception as exc:
        results.put(("error", index, repr(exc)))


def create_tasks(
    endpoint_url: str, table: str, owner: str, index: int, count: int, limit: int,
    barrier: Any, results: Any,
) -> None:
    """Try ``count`` creates for one owner under a quota of ``limit``."""
    try:
        store = _store(endpoint_url, table, max_tasks=limit)
        barrier.wait(_BARRIER_TIMEOUT_S)
        for _ in range(count):
            try:
                record = store.create(owner)
            except QuotaExceededError:
                results.put(("quota", index, ""))
            else:
                results.put(("created", index, record.task_id))
        store.close()
    except Exception as exc:
        results.put(("error", index, repr(exc)))
