"""Wire projections: how stored task records look to one protocol era.

One store, several wire shapes. A :class:`TaskRecord` and its :class:`Outcome` are
era-neutral; a *projection* turns them into an era's result objects and decides how a tool's
``isError`` result settles a task. :class:`LegacyProjection` is MCP 2025-11-25 (DESIGN §3):
flat ``Task`` for ``tasks/get``/``tasks/cancel``, wrapped ``CreateTaskResult``, ``tasks/result``
as the underlying result plus related-task ``_meta``, and ``isError`` → ``failed``.

A later era (MCP 2026-07-28, DESIGN §9c) adds its own projection over the same records; nothing
here is specific to HTTP or to a server object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from taskstore.mcp.jsonrpc import INTERNAL_ERROR, JsonDict, ProtocolError
from taskstore.record import Outcome, TaskRecord
from taskstore.states import TaskStatus
from taskstore.types import META_MODEL_IMMEDIATE_RESPONSE, META_RELATED_TASK

__all__ = ["LEGACY", "LegacyProjection", "OutcomeError", "Projection"]


class OutcomeError(ProtocolError):
    """The task's stored outcome is a JSON-RPC error: ``tasks/result`` must answer with it.

    A :class:`ProtocolError` rather than a :class:`~taskstore.errors.TaskStoreError`: it
    carries a stored error verbatim (its code included), which the error tree's fixed
    per-class codes cannot express.

    :param error: the stored error object, sent unchanged (same code, message, data).
    """

    def __init__(self, error: JsonDict) -> None:
        code = error.get("code")
        super().__init__(
            code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
            str(error.get("message", "")),
            error.get("data"),
        )
        self.error = error


class Projection(Protocol):
    """How one protocol era projects task records onto the wire."""

    #: Status a task ends in when its tool returns a result with ``isError: true``.
    is_error_status: TaskStatus

    def task(self, record: TaskRecord) -> JsonDict:
        """The task as the era's ``tasks/get`` answers it."""
        ...

    def created(self, record: TaskRecord, *, immediate_response: str | None = None) -> JsonDict:
        """The answer to a task-augmented request that created ``record``."""
        ...

    def cancelled(self, record: TaskRecord) -> JsonDict:
        """The answer to ``tasks/cancel`` (``record`` is the task after the cancel)."""
        ...

    def listed(self, records: Sequence[TaskRecord], next_cursor: str | None) -> JsonDict:
        """The answer to ``tasks/list``."""
        ...

    def payload(self, record: TaskRecord, outcome: Outcome) -> JsonDict:
        """The answer to ``tasks/result`` for a terminal task with ``outcome``.

        :raises OutcomeError: the outcome is a JSON-RPC error to send as such.
        """
        ...


class LegacyProjection:
    """MCP 2025-11-25 (DESIGN §3). Stateless and thread-safe."""

    is_error_status = TaskStatus.FAILED

    def task(self, record: TaskRecord) -> JsonDict:
        """The flat ``Task`` object (also the ``notifications/tasks/status`` params)."""
        return record.to_wire()

    def created(self, record: TaskRecord, *, immediate_response: str | None = None) -> JsonDict:
        """``CreateTaskResult``: ``{"task": Task, "_meta"?: {model-immediate-response}}``."""
        result: JsonDict = {"task": record.to_wire()}
        if immediate_response is not None:
            result["_meta"] = {META_MODEL_IMMEDIATE_RESPONSE: immediate_response}
        return result

    def cancelled(self, record: TaskRecord) -> JsonDict:
        """The flat ``Task`` after the cancel."""
        return record.to_wire()

    def listed(self, records: Sequence[TaskRecord], next_cursor: str | None) -> JsonDict:
        """``{"tasks": [Task...], "nextCursor"?: str}``."""
        result: JsonDict = {"tasks": [record.to_wire() for record in records]}
        if next_cursor is not None:
            result["nextCursor"] = next_cursor
        return result

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
        merged[META_RELATED_TASK] = {"taskId": record.task_id}
        payload["_meta"] = merged
        return payload


#: The shared MCP 2025-11-25 projection.
LEGACY = LegacyProjection()
