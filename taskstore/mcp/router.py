"""``TaskRouter``: JSON-in/JSON-out handlers for ``tasks/get``, ``tasks/result``, ``tasks/list``
and ``tasks/cancel`` (MCP 2025-11-25), usable from any synchronous JSON-RPC server.

Every handler takes the request ``params`` (a JSON object or ``None``) and the :class:`Caller`,
and returns the JSON-RPC ``result`` object or raises an error that carries its JSON-RPC code
(:mod:`taskstore.errors`, :class:`~taskstore.mcp.jsonrpc.ProtocolError`, or
:class:`~taskstore.mcp.projection.OutcomeError` for a stored error). Map errors with
:func:`taskstore.mcp.jsonrpc.error_object`.

Error codes (DESIGN §10): unknown, expired or foreign task id, bad cursor, cancel of a terminal
task, malformed params and ``tasks/result`` of a cancelled task are ``-32602``; backend
failures are ``-32603``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskstore.errors import InvalidTransitionError, TaskCancelledError
from taskstore.mcp.audit import audit
from taskstore.mcp.auth import Caller
from taskstore.mcp.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    JsonDict,
    ProtocolError,
)
from taskstore.mcp.projection import LEGACY, Projection
from taskstore.store import TaskStore
from taskstore.types import (
    CancelTaskParams,
    GetTaskParams,
    GetTaskPayloadParams,
    ListTasksParams,
    decode,
)

__all__ = ["CANCEL_MESSAGE", "TASK_METHODS", "TaskRouter"]

#: Methods a :class:`TaskRouter` answers.
TASK_METHODS = frozenset({"tasks/get", "tasks/result", "tasks/list", "tasks/cancel"})
#: ``statusMessage`` of a task cancelled through ``tasks/cancel``.
CANCEL_MESSAGE = "The task was cancelled by request."

_Handler = Callable[[Mapping[str, Any] | None, Caller], JsonDict]


def _params(params: object) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ProtocolError(INVALID_PARAMS, "Invalid params: params must be a JSON object")
    return dict(params)


class TaskRouter:
    """Answers the ``tasks/*`` methods over a :class:`TaskStore`. Thread-safe.

    :param store: where tasks live.
    :param projection: the wire era (default MCP 2025-11-25).
    :param result_timeout: seconds ``tasks/result`` blocks at most before answering ``-32603``
        (``None``: as long as the task lives, which the spec's MUST-block asks for).
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        projection: Projection = LEGACY,
        result_timeout: float | None = None,
    ) -> None:
        self.store = store
        self.projection = projection
        self.result_timeout = result_timeout
        self._handlers: dict[str, _Handler] = {
            "tasks/get": self.get,
            "tasks/result": self.result,
            "tasks/list": self.list,
            "tasks/cancel": self.cancel,
        }

    def handles(self, method: str) -> bool:
        """``True`` for the four ``tasks/*`` methods."""
        return method in self._handlers

    def handle(self, method: str, params: Mapping[str, Any] | None, caller: Caller) -> JsonDict:
        """Dispatch one ``tasks/*`` request.

        :raises ProtocolError: ``-32601`` for a method this router does not answer.
        """
        handler = self._handlers.get(method)
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
        return handler(params, caller)

    def get(self, params: Mapping[str, Any] | None, caller: Caller) -> JsonDict:
        """``tasks/get``: the flat Task.

        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises InvalidParamsError: missing or malformed ``taskId`` (-32602).
        """
        decoded = decode(_params(params), GetTaskParams)
        return self.projection.task(self.store.get(decoded.task_id, caller.owner))

    def result(self, params: Mapping[str, Any] | None, caller: Caller) -> JsonDict:
        """``tasks/result``: block until the task is terminal, then answer exactly what the
        underlying request answered (its result with related-task ``_meta``, or its error).

        :raises OutcomeError: the underlying request failed with a JSON-RPC error (sent as is).
        :raises TaskCancelledError: the task was cancelled, so no outcome exists (-32602).
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises ProtocolError: ``-32603`` when ``result_timeout`` passed first.
        """
        decoded = decode(_params(params), GetTaskPayloadParams)
        return self.payload(decoded.task_id, caller, timeout=self.result_timeout)

    def payload(self, task_id: str, caller: Caller, *, timeout: float | None = None) -> JsonDict:
        """Block until ``task_id`` is terminal and return its ``tasks/result`` answer.

        Shared by :meth:`result` and by transports that stream ``tasks/result`` (they wait
        themselves and call this once the task is terminal, with ``timeout=0``).

        :raises: as :meth:`result`.
        """
        try:
            record = self.store.wait(task_id, caller.owner, timeout=timeout)
        except TimeoutError:
            raise ProtocolError(
                INTERNAL_ERROR, "Timed out waiting for the task to finish; call tasks/result again"
            ) from None
        try:
            outcome = self.store.get_result(task_id, caller.owner)
        except TaskCancelledError:
            audit("task.result", owner=caller.audit_owner, task_id=task_id, status="cancelled")
            raise
        audit("task.result", owner=caller.audit_owner, task_id=task_id, status=record.status.value)
        return self.projection.payload(record, outcome)

    def list(self, params: Mapping[str, Any] | None, caller: Caller) -> JsonDict:
        """``tasks/list``: one page of the caller's tasks, newest first.

        :raises InvalidCursorError: malformed, foreign or stale cursor (-32602).
        """
        decoded = decode(_params(params), ListTasksParams)
        page = self.store.list(caller.owner, cursor=decoded.cursor)
        return self.projection.listed(page.tasks, page.next_cursor)

    def cancel(self, params: Mapping[str, Any] | None, caller: Caller) -> JsonDict:
        """``tasks/cancel``: move the task to ``cancelled`` before answering; with a
        ``result`` param, complete it with that result instead (cancel-as-completion).

        :raises InvalidTransitionError: the task is already terminal (-32602).
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises ResultTooLargeError: the ``result`` exceeds the result cap (-32602).
        """
        decoded = decode(_params(params), CancelTaskParams)
        try:
            if decoded.has_result:
                record = self.store.complete(decoded.task_id, caller.owner, decoded.result)
            else:
                record = self.store.cancel(decoded.task_id, caller.owner, CANCEL_MESSAGE)
        except InvalidTransitionError as exc:
            # Spec: cancelling a terminal task is -32602; say so in plain words.
            raise ProtocolError(
                INVALID_PARAMS,
                f"Cannot cancel task {decoded.task_id}: it is already {exc.from_status}",
                {"taskId": decoded.task_id, "status": exc.from_status},
            ) from None
        if decoded.has_result:
            audit("task.completed", owner=caller.audit_owner, task_id=decoded.task_id, via="cancel")
        else:
            audit("task.cancelled", owner=caller.audit_owner, task_id=decoded.task_id)
        return self.projection.cancelled(record)
