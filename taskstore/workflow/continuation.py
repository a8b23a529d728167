"""Recording client continuations against a workflow task (DESIGN §9b, step 5–6).

A ``tools/call`` whose ``_meta`` carries ``{"_task_id": id}`` runs normally; afterwards
:func:`record_continuation` marks the first unfinished step calling that tool completed (or
failed), stores its output and clears the pause reason, all in one compare-and-set, so parallel
continuations lose nothing. Calls of tools outside the workflow are kept as extras. When every
step is completed the task completes with the summary result. Recording never fails the call:
every error is logged and swallowed here, and only here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from taskstore.errors import InvalidTransitionError, TaskStoreError
from taskstore.record import TaskRecord
from taskstore.store import TaskStore
from taskstore.types import WorkflowPauseReason, to_builtins
from taskstore.workflow.engine import error_text
from taskstore.workflow.progress import (
    EXTRAS,
    PAUSE_REASON,
    PROGRESS,
    RESULT_PREFIX,
    step_output,
    step_statuses,
    summary_result,
    with_statuses,
)

__all__ = ["record_continuation"]

_log = logging.getLogger("taskstore.workflow")


def _changes(
    record: TaskRecord, tool: str, arguments: Mapping[str, Any], result: Mapping[str, Any]
) -> dict[str, Any] | None:
    if record.is_terminal or PROGRESS not in record.variables:
        return None
    progress = record.variables[PROGRESS]
    statuses = step_statuses(record.variables)
    step = next(
        (s for s in progress["steps"] if s["tool"] == tool and statuses[s["name"]] != "completed"),
        None,
    )
    failed = result.get("isError") is True
    if step is None:
        extras = list(record.variables.get(EXTRAS, []))
        extras.append(
            {
                "tool": tool,
                "arguments": dict(arguments),
                "output": None if failed else step_output(result),
                "isError": failed,
            }
        )
        return {EXTRAS: extras}
    if failed:
        reason = WorkflowPauseReason(
            type="toolError",
            blocked_step=step["name"],
            suggested_tool=tool,
            error=error_text(result),
            retryable=None,
        )
        return {
            PROGRESS: with_statuses(record.variables, {step["name"]: "failed"}),
            PAUSE_REASON: to_builtins(reason),
        }
    return {
        RESULT_PREFIX + step["name"]: step_output(result),
        PROGRESS: with_statuses(record.variables, {step["name"]: "completed"}),
        PAUSE_REASON: None,
    }


def record_continuation(
    store: TaskStore,
    owner: str,
    task_id: str,
    tool: str,
    arguments: Mapping[str, Any],
    result: Mapping[str, Any],
) -> bool:
    """Record a continuation call's ``result`` against workflow task ``task_id``.

    :returns: ``True`` if something was recorded; ``False`` when the task is not a live
        workflow task of ``owner`` or recording failed (logged, never raised).
    """
    recorded = False

    def update(current: TaskRecord) -> dict[str, Any] | None:
        nonlocal recorded  # reflects the attempt that finally won the compare-and-set
        changes = _changes(current, tool, arguments, result)
        recorded = changes is not None
        return changes

    try:
        record = store.update_variables(task_id, owner, update)
        if not recorded:
            return False
        statuses = step_statuses(record.variables)
        if statuses and all(status == "completed" for status in statuses.values()):
            try:
                store.complete(
                    task_id,
                    owner,
                    summary_result(record.request_method, record.variables),
                    message=f"Workflow {record.request_method} completed",
                )
            except InvalidTransitionError:
                pass  # a parallel continuation completed it first: same summary
        return True
    except TaskStoreError as exc:
        _log.warning("could not record %s against workflow task %s: %s", tool, task_id, exc)
        return False
