"""The MCP 2025-11-25 projection (DESIGN §3): every wire shape of the ``tasks`` utility.

Flat ``Task`` for ``tasks/get``/``tasks/cancel`` and ``notifications/tasks/status``, wrapped
``CreateTaskResult``, ``tasks/list`` pages, ``tasks/result`` as the underlying result plus
related-task ``_meta`` (or the stored JSON-RPC error), and ``isError`` → ``failed`` (spec E4).
Every shape is encoded through the wire Structs of :mod:`taskstore.types`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import OutcomeError
from taskstore.mcp.jsonrpc import notification
from taskstore.record import Outcome, TaskRecord
from taskstore.states import TaskStatus
from taskstore.types import (
    META_MODEL_IMMEDIATE_RESPONSE,
    META_RELATED_TASK,
    CreateTaskResult,
    ListTasksResult,
    RelatedTaskMetadata,
    task_wire,
    to_builtins,
)

__all__ = ["LEGACY", "STATUS_METHOD", "LegacyProjection", "OutcomeError", "status_notification"]

#: The 2025-11-25 status notification.
STATUS_METHOD = "notifications/tasks/status"


class LegacyProjection:
    """MCP 2025-11-25 (DESIGN §3). Stateless and thread-safe."""

    #: A tool's ``isError: true`` result fails its task (2025-11-25 spec, E4).
    is_error_status = TaskStatus.FAILED

    def task(self, record: TaskRecord) -> JsonDict:
        """The flat ``Task`` object."""
        return task_wire(record.task)

    def created(self, record: TaskRecord, *, immediate_response: str | None = None) -> JsonDict:
        """``CreateTaskResult``: ``{"task": Task, "_meta"?: {model-immediate-response}}``."""
        meta = None
        if immediate_response is not None:
            meta = {META_MODEL_IMMEDIATE_RESPONSE: immediate_response}
        created: JsonDict = to_builtins(CreateTaskResult(task=record.task, meta=meta))
        return created

    def cancelled(self, record: TaskRecord) -> JsonDict:
        """The flat ``Task`` after the cancel."""
        return task_wire(record.task)

    def listed(self, records: Sequence[TaskRecord], next_cursor: str | None) -> JsonDict:
        """``{"tasks": [Task...], "nextCursor"?: str}``."""
        page = ListTasksResult(tasks=[record.task for record in records], next_cursor=next_cursor)
        listed: JsonDict = to_builtins(page)
        return listed

    def payload(self, record: TaskRecord, outcome: Outcome) -> JsonDict:
        """The stored result with related-task ``_meta`` merged in, or the stored error.

        A result that is not a JSON object (only possible for tasks completed through the
        store directly, e.g. ``tasks/cancel`` with a ``result``) is wrapped as
        ``{"result": value}`` so the answer stays a JSON-RPC result object.

        :raises OutcomeError: the outcome is a JSON-RPC error.
        """
        if outcome.kind == "error":
            raise OutcomeError(dict(outcome.error or {}))
        value: Any = outcome.result
        payload: JsonDict = dict(value) if isinstance(value, dict) else {"result": value}
        meta = payload.get("_meta")
        merged: JsonDict = dict(meta) if isinstance(meta, dict) else {}
        merged[META_RELATED_TASK] = to_builtins(RelatedTaskMetadata(task_id=record.task_id))
        payload["_meta"] = merged
        return payload

    def status_notification(self, record: TaskRecord) -> JsonDict:
        """``notifications/tasks/status`` for ``record`` (see :func:`status_notification`)."""
        return status_notification(task_wire(record.task))


def status_notification(task: Mapping[str, Any]) -> JsonDict:
    """``notifications/tasks/status`` for a task's flat 2025-11-25 wire dict: the Task fields
    flat, without related-task ``_meta`` (the task id is already there)."""
    params = dict(task)
    meta = params.get("_meta")
    if isinstance(meta, Mapping) and META_RELATED_TASK in meta:
        rest = {k: v for k, v in meta.items() if k != META_RELATED_TASK}
        if rest:
            params["_meta"] = rest
        else:
            del params["_meta"]
    return notification(STATUS_METHOD, params)


#: The shared MCP 2025-11-25 projection.
LEGACY = LegacyProjection()
