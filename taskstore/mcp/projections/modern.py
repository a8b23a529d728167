"""The MCP 2026-07-28 projection (DESIGN §9c): the tasks extension's wire shapes (SEP-2663).

Flat ``CreateTaskResult`` with ``resultType: "task"``; ``tasks/get`` with the outcome inline
(``result`` for a completed task, ``isError`` results included; ``error`` for a failed one; every
outstanding ``inputRequests`` while waiting); ``tasks/cancel`` an empty acknowledgement; no
``tasks/list`` or ``tasks/result``; ``ttlMs``/``pollIntervalMs`` instead of ``ttl``/
``pollInterval``; no related-task ``_meta``. A tool's ``isError`` result completes its task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import INTERNAL_ERROR, METHOD_NOT_FOUND, ProtocolError
from taskstore.record import Outcome, TaskRecord
from taskstore.states import TaskStatus
from taskstore.types import ModernCreateTaskResult, ModernGetTaskResult, to_builtins

__all__ = ["MODERN", "ModernProjection", "complete"]


def complete(result: Mapping[str, Any] | None = None) -> JsonDict:
    """``result`` (default empty) with ``resultType: "complete"``: the 2026-07-28 envelope of
    a final answer."""
    return {**(result or {}), "resultType": "complete"}


def _task_fields(record: TaskRecord) -> dict[str, Any]:
    """The fields of :class:`~taskstore.types.ModernTask` (the base of both results)."""
    task = record.task
    return {
        "task_id": task.task_id,
        "status": task.status,
        "created_at": task.created_at,
        "last_updated_at": task.last_updated_at,
        "ttl_ms": task.ttl,
        "status_message": task.status_message,
        "poll_interval_ms": task.poll_interval,
    }


class ModernProjection:
    """MCP 2026-07-28 with the tasks extension. Stateless and thread-safe."""

    #: A tool's ``isError: true`` result completes its task; ``failed`` is for JSON-RPC errors.
    is_error_status = TaskStatus.COMPLETED

    def task(self, record: TaskRecord) -> JsonDict:
        """``tasks/get`` of ``record`` without its outcome (which needs a read of its own; see
        :meth:`detail`), with its outstanding input requests."""
        return self.detail(record, None, record.input_requests)

    def detail(
        self,
        record: TaskRecord,
        outcome: Outcome | None,
        input_requests: Mapping[str, Any] | None,
    ) -> JsonDict:
        """``tasks/get``: the task flat, plus the outcome of a terminal task (``result`` when
        completed, ``error`` when failed) or the outstanding ``input_requests`` while the task
        waits for input."""
        result = error = requests = None
        if record.status is TaskStatus.INPUT_REQUIRED and input_requests:
            requests = dict(input_requests)
        elif outcome is not None and record.status is TaskStatus.COMPLETED:
            value = outcome.result if outcome.kind == "result" else None
            result = dict(value) if isinstance(value, Mapping) else {"content": []}
        elif outcome is not None and record.status is TaskStatus.FAILED:
            error = self._error(outcome)
        detail: JsonDict = to_builtins(
            ModernGetTaskResult(
                **_task_fields(record),
                result=result,
                error=error,
                input_requests=requests,
            )
        )
        return detail

    @staticmethod
    def _error(outcome: Outcome) -> JsonDict:
        if outcome.kind == "error" and outcome.error is not None:
            return dict(outcome.error)
        # A legacy-created task failed by an isError result: its error is that result's text.
        value = outcome.result if isinstance(outcome.result, Mapping) else {}
        texts = [
            str(block["text"])
            for block in value.get("content") or []
            if isinstance(block, Mapping) and isinstance(block.get("text"), str)
        ]
        return {"code": INTERNAL_ERROR, "message": " ".join(texts) or "The task failed"}

    def created(self, record: TaskRecord, *, immediate_response: str | None = None) -> JsonDict:
        """``CreateTaskResult``: the task flat with ``resultType: "task"`` (no ``_meta``: the
        extension has no immediate-response hint)."""
        created: JsonDict = to_builtins(ModernCreateTaskResult(**_task_fields(record)))
        return created

    def cancelled(self, record: TaskRecord) -> JsonDict:
        """``tasks/cancel``: an empty acknowledgement."""
        return complete()

    def listed(self, records: Sequence[TaskRecord], next_cursor: str | None) -> JsonDict:
        """There is no ``tasks/list`` in this era.

        :raises ProtocolError: -32601.
        """
        raise ProtocolError(METHOD_NOT_FOUND, "Method not found: tasks/list")

    def payload(self, record: TaskRecord, outcome: Outcome) -> JsonDict:
        """There is no ``tasks/result`` in this era (``tasks/get`` carries the outcome).

        :raises ProtocolError: -32601.
        """
        raise ProtocolError(METHOD_NOT_FOUND, "Method not found: tasks/result")

    def status_notification(self, record: TaskRecord) -> None:
        """This era sends no unsolicited status notifications (clients poll ``tasks/get``)."""
        return None


#: The shared MCP 2026-07-28 projection.
MODERN = ModernProjection()
