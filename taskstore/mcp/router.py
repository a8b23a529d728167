"""``TaskRouter``: JSON-in/JSON-out handlers for ``tasks/get``, ``tasks/result``, ``tasks/list``
and ``tasks/cancel`` (MCP 2025-11-25), usable from any synchronous JSON-RPC server.

Every handler takes the request ``params`` (a JSON object or ``None``) and the request's
:class:`~taskstore.mcp.request.RequestContext` (or a bare :class:`Caller`, for a 2025-11-25
request), and returns the JSON-RPC ``result`` object shaped by the context's projection, or
raises an error that carries its JSON-RPC code (:mod:`taskstore.errors`; a stored error is an
:class:`~taskstore.errors.OutcomeError`). Map errors with
:func:`taskstore.mcp.jsonrpc.error_object`. :attr:`TaskRouter.methods` is the one dispatch
table of ``tasks/*``: the server adds it to its own.

Error codes (DESIGN §10): unknown, expired or foreign task id, bad cursor, cancel of a terminal
task, malformed params and ``tasks/result`` of a cancelled task are ``-32602``; backend
failures are ``-32603``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    InvalidTransitionError,
    ProtocolError,
    TaskCancelledError,
)
from taskstore.mcp.audit import audit
from taskstore.mcp.auth import Caller
from taskstore.mcp.request import RequestContext, as_context
from taskstore.record import TaskRecord
from taskstore.states import TaskStatus
from taskstore.store import TaskStore
from taskstore.types import (
    CancelTaskParams,
    GetTaskParams,
    GetTaskPayloadParams,
    ListTasksParams,
    decode,
)

__all__ = ["CANCEL_MESSAGE", "TaskHandler", "TaskRouter"]

#: ``statusMessage`` of a task cancelled through ``tasks/cancel``.
CANCEL_MESSAGE = "The task was cancelled by request."

#: One ``tasks/*`` handler: ``handler(params, ctx) -> result``.
TaskHandler = Callable[[Mapping[str, Any] | None, RequestContext], JsonDict]
_Caller = Caller | RequestContext


def _params(params: object) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, dict):
        return params  # decoding never changes its input: no copy needed
    if not isinstance(params, Mapping):
        raise ProtocolError(INVALID_PARAMS, "Invalid params: params must be a JSON object")
    return dict(params)


class TaskRouter:
    """Answers the ``tasks/*`` methods over a :class:`TaskStore`. Thread-safe.

    :param store: where tasks live.
    :param result_timeout: seconds ``tasks/result`` blocks at most before answering ``-32603``
        (``None``: as long as the task lives, which the spec's MUST-block asks for).
    """

    def __init__(self, store: TaskStore, *, result_timeout: float | None = None) -> None:
        self.store = store
        self.result_timeout = result_timeout
        #: The ``tasks/*`` dispatch table (method → handler taking a RequestContext).
        self.methods: dict[str, TaskHandler] = {
            "tasks/get": self.get,
            "tasks/result": self.result,
            "tasks/list": self.list,
            "tasks/cancel": self.cancel,
        }

    def handle(self, method: str, params: Mapping[str, Any] | None, caller: _Caller) -> JsonDict:
        """Dispatch one ``tasks/*`` request.

        :param caller: the request's context, or a bare :class:`Caller` (2025-11-25).
        :raises ProtocolError: ``-32601`` for a method this router does not answer.
        """
        handler = self.methods.get(method)
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
        return handler(params, as_context(caller))

    def get(self, params: Mapping[str, Any] | None, caller: _Caller) -> JsonDict:
        """``tasks/get``: the flat Task.

        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises InvalidParamsError: missing or malformed ``taskId`` (-32602).
        """
        ctx = as_context(caller)
        decoded = decode(_params(params), GetTaskParams)
        return ctx.projection.task(self.store.get(decoded.task_id, ctx.caller.owner))

    def result(self, params: Mapping[str, Any] | None, caller: _Caller) -> JsonDict:
        """``tasks/result``: block until the task is terminal, then answer exactly what the
        underlying request answered (its result with related-task ``_meta``, or its error).

        :raises OutcomeError: the underlying request failed with a JSON-RPC error (sent as is).
        :raises TaskCancelledError: the task was cancelled, so no outcome exists (-32602).
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises ProtocolError: ``-32603`` when ``result_timeout`` passed first.
        """
        decoded = decode(_params(params), GetTaskPayloadParams)
        return self.payload(decoded.task_id, caller, timeout=self.result_timeout)

    def payload(self, task_id: str, caller: _Caller, *, timeout: float | None = None) -> JsonDict:
        """Block until ``task_id`` is terminal and return its ``tasks/result`` answer.

        Shared by :meth:`result` and by transports that stream ``tasks/result`` (they wait
        themselves and call this once the task is terminal, with ``timeout=0``).

        :raises: as :meth:`result`.
        """
        ctx = as_context(caller)
        owner = ctx.caller.owner
        # A task already over (the usual case: clients poll tasks/get first) is answered
        # from one read with its outcome; one still running is waited for, then read so.
        record = self.store.get_with_outcome(task_id, owner)
        if not record.is_terminal:
            try:
                self.store.wait(task_id, owner, timeout=timeout)
            except TimeoutError:
                raise ProtocolError(
                    INTERNAL_ERROR,
                    "Timed out waiting for the task to finish; call tasks/result again",
                ) from None
            record = self.store.get_with_outcome(task_id, owner)
        return self.answer(record, ctx)

    def answer(self, record: TaskRecord, caller: _Caller) -> JsonDict:
        """The ``tasks/result`` answer of a terminal ``record`` read with
        :meth:`TaskStore.get_with_outcome <taskstore.TaskStore.get_with_outcome>` (for
        transports that read the task themselves).

        :raises OutcomeError: the underlying request failed with a JSON-RPC error.
        :raises TaskCancelledError: the task was cancelled (-32602).
        """
        ctx = as_context(caller)
        task_id = record.task_id
        if record.outcome is None:  # cancelled: no outcome exists
            audit("task.result", owner=ctx.caller, task_id=task_id, status="cancelled")
            raise TaskCancelledError(task_id)
        audit("task.result", owner=ctx.caller, task_id=task_id, status=record.status.value)
        return ctx.projection.payload(record, record.outcome)

    def list(self, params: Mapping[str, Any] | None, caller: _Caller) -> JsonDict:
        """``tasks/list``: one page of the caller's tasks, newest first.

        :raises InvalidCursorError: malformed, foreign or stale cursor (-32602).
        """
        ctx = as_context(caller)
        decoded = decode(_params(params), ListTasksParams)
        page = self.store.list(ctx.caller.owner, cursor=decoded.cursor)
        return ctx.projection.listed(page.tasks, page.next_cursor)

    def cancel(self, params: Mapping[str, Any] | None, caller: _Caller) -> JsonDict:
        """``tasks/cancel``: move the task to ``cancelled`` before answering; with a
        ``result`` param, complete it with that result instead (cancel-as-completion).

        :raises InvalidTransitionError: the task is already terminal (-32602).
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises ResultTooLargeError: the ``result`` exceeds the result cap (-32602).
        """
        ctx = as_context(caller)
        owner = ctx.caller.owner
        decoded = decode(_params(params), CancelTaskParams)
        try:
            # The store finishes a task again with the same outcome as an idempotent repeat;
            # the protocol refuses to cancel a task already terminal, so check first (a task
            # finished between this read and the write is refused by the store as before).
            current = self.store.get(decoded.task_id, owner)
            if current.is_terminal:
                raise InvalidTransitionError(
                    decoded.task_id, current.status.value, TaskStatus.CANCELLED.value
                )
            if decoded.has_result:
                record = self.store.complete(decoded.task_id, owner, decoded.result)
            else:
                record = self.store.cancel(decoded.task_id, owner, CANCEL_MESSAGE)
        except InvalidTransitionError as exc:
            # Spec: cancelling a terminal task is -32602; say so in plain words.
            raise ProtocolError(
                INVALID_PARAMS,
                f"Cannot cancel task {decoded.task_id}: it is already {exc.from_status}",
                {"taskId": decoded.task_id, "status": exc.from_status},
            ) from None
        if decoded.has_result:
            audit("task.completed", owner=ctx.caller, task_id=decoded.task_id, via="cancel")
        else:
            audit("task.cancelled", owner=ctx.caller, task_id=decoded.task_id)
        return ctx.projection.cancelled(record)
