"""``ToolRunner``: ``tools/call``, ordinary and task-augmented.

A task-augmented call (params carry ``task: {ttl?}``) is checked against the tool's
``taskSupport`` (``forbidden`` + task → ``-32601``; ``required`` without task → ``-32601``), its
task is created with the requested ttl, the ``CreateTaskResult`` is returned at once, and the
tool runs on a bounded thread pool with a :class:`~taskstore.mcp.context.ToolContext`. Its
outcome settles the task:

- a return value → ``completed`` with the ``CallToolResult``;
- an ``isError: true`` result (or :class:`~taskstore.errors.ToolError`) → the error status of
  the creating request's projection (``failed`` in 2025-11-25, spec E4) with that result kept
  for ``tasks/result``;
- an exception → ``failed`` with a JSON-RPC error outcome ``{code, message}`` and a diagnostic
  ``statusMessage``;
- a tool finishing after its task was cancelled changes nothing and raises nothing.

Ordinary calls of ``optional`` (and ``forbidden``) tools run inline on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from taskstore.aliases import JsonDict, RequestId
from taskstore.context import TaskContext
from taskstore.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    InvalidTransitionError,
    ProtocolError,
    ResultTooLargeError,
    TaskCancelled,
    TaskNotFoundError,
    TaskStoreError,
    ToolError,
)
from taskstore.mcp.audit import audit
from taskstore.mcp.auth import Caller
from taskstore.mcp.context import InputRound, ToolContext
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import is_valid_id
from taskstore.mcp.notifications import NotificationSender
from taskstore.mcp.projections import Projection
from taskstore.mcp.request import RequestContext
from taskstore.mcp.tools import (
    ToolRegistry,
    ToolSpec,
    error_text,
    is_error_result,
    to_call_tool_result,
    validate_arguments,
)
from taskstore.record import TaskRecord
from taskstore.states import TaskStatus
from taskstore.store import TaskStore
from taskstore.types import TaskMetadata, decode

__all__ = ["SHUTDOWN_MESSAGE", "ToolAnswer", "ToolCall", "ToolRunner"]

_log = logging.getLogger("taskstore.mcp")

#: Error message of tasks a shutting-down server could not finish.
SHUTDOWN_MESSAGE = "The server shut down before the task finished"
# Diagnostics go to clients in statusMessage; keep them short.
_MAX_DIAGNOSTIC = 500


class ToolCall(NamedTuple):
    """A checked ``tools/call``: the tool, its validated arguments, the progress token and
    the original params."""

    spec: ToolSpec
    arguments: dict[str, Any]
    progress_token: str | int | None
    params: Mapping[str, Any]


class ToolAnswer(NamedTuple):
    """The answer to one ``tools/call``.

    :ivar result: the ``CallToolResult`` of an inline call, or the era's answer to a call that
        created a task.
    :ivar task_id: the created task's id, ``None`` for an inline call.
    """

    result: JsonDict
    task_id: str | None = None


def _diagnostic(tool: str, exc: BaseException) -> str:
    text = f"Tool {tool} failed: {type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_DIAGNOSTIC else text[: _MAX_DIAGNOSTIC - 1] + "…"


class ToolRunner:
    """Runs ``tools/call`` for a :class:`ToolRegistry`. Thread-safe.

    :param store: where tasks live.
    :param tools: the registry to call into.
    :param inputs: carries tools' input requests to clients (a fresh broker by default).
    :param max_workers: size of the thread pool running task-augmented calls; calls beyond it
        wait in the pool's queue, their tasks ``working`` meanwhile.
    """

    def __init__(
        self,
        store: TaskStore,
        tools: ToolRegistry,
        *,
        inputs: InputBroker | None = None,
        max_workers: int = 16,
    ) -> None:
        self.store = store
        self.tools = tools
        self.inputs = inputs if inputs is not None else InputBroker(store)
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="taskstore-tool"
        )
        self._lock = threading.Lock()
        # Task id → (context, caller) of every task queued or running here.
        self._tasks: dict[str, tuple[ToolContext, Caller]] = {}
        # (session or owner, request id) → context of inline calls, for notifications/cancelled.
        self._inline: dict[tuple[str, RequestId], ToolContext] = {}
        self._unsubscribe: Any = None
        self._closed = False

    # -- tools/call ----------------------------------------------------------------------

    def call(
        self,
        params: Mapping[str, Any] | None,
        caller: Caller | RequestContext,
        *,
        sender: NotificationSender | None = None,
        request_id: RequestId | None = None,
    ) -> JsonDict:
        """Answer one ``tools/call`` (see :meth:`call_tool`); a bare :class:`Caller` makes a
        2025-11-25 request with ``sender`` and ``request_id``.

        :returns: the answer's result (``CreateTaskResult`` or ``CallToolResult``).
        """
        if isinstance(caller, RequestContext):
            return self.call_tool(params, caller).result
        ctx = RequestContext(caller=caller, request_id=request_id, sender=sender)
        return self.call_tool(params, ctx).result

    def call_tool(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> ToolAnswer:
        """Answer one ``tools/call`` in the request's era.

        :returns: the era's answer to a task-augmented call (2025-11-25: ``CreateTaskResult``)
            with the created task's id, or the ``CallToolResult`` of an inline call.
        :raises ProtocolError: ``-32602`` unknown tool or bad arguments; ``-32601`` task
            augmentation the tool does not allow (or requires and did not get); ``-32603``
            when the tool raised (inline calls) or the server is shutting down.
        :raises TaskStoreError: the task could not be created (bad ttl ``-32602``, quota,
            anonymous owner, backend failure).
        """
        call = self.parse_call(params)
        spec = call.spec
        task = call.params.get("task")
        if task is not None and not isinstance(task, Mapping):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: task must be an object")
        # The 2025-11-25 rule: the client asks for a task with the `task` param.
        if task is not None and spec.task_support == "forbidden":
            raise ProtocolError(
                METHOD_NOT_FOUND, f"Tool {spec.name} does not support task execution"
            )
        if task is None and spec.task_support == "required":
            raise ProtocolError(
                METHOD_NOT_FOUND,
                f"Tool {spec.name} must be called as a task (task-augmented request)",
            )
        if task is None:
            return ToolAnswer(self.run_call(call, ctx))
        return self.start_call(call, ctx, ttl_ms=decode(task, TaskMetadata).ttl)

    def parse_call(self, params: Mapping[str, Any] | None) -> ToolCall:
        """Check a ``tools/call``'s params: a known tool, arguments matching its schema.

        :raises ProtocolError: ``-32602`` naming the first problem.
        """
        if params is None or not isinstance(params, Mapping):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: tools/call needs params")
        name = params.get("name")
        if not isinstance(name, str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: name must be a string")
        spec = self.tools.get(name)
        if spec is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}")
        meta = params.get("_meta")
        if meta is not None and not isinstance(meta, Mapping):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: _meta must be an object")
        arguments = validate_arguments(spec, params.get("arguments"))
        token = meta.get("progressToken") if meta is not None else None
        return ToolCall(spec, arguments, token if is_valid_id(token) else None, params)

    def run_call(
        self, call: ToolCall, ctx: RequestContext, *, input_round: InputRound | None = None
    ) -> JsonDict:
        """Run a parsed call inline, on the calling thread, and return its ``CallToolResult``
        (a tool error is an ``isError: true`` result).

        :param input_round: the answers a stateless retry brought (MCP 2026-07-28): the tool's
            input requests are answered from it, or raise :class:`~taskstore.errors.InputRequired`.
        :raises ProtocolError: ``-32603`` when the tool raised.
        :raises InputRequired: the tool needs input the round does not hold.
        """
        return self._run_inline(
            call.spec,
            call.arguments,
            ctx.caller,
            ctx.sender,
            ctx.request_id,
            call.progress_token,
            input_round,
        )

    def run_inline(self, name: str, arguments: Mapping[str, Any], caller: Caller) -> JsonDict:
        """Run tool ``name`` in the calling thread, whatever its ``taskSupport``, and return
        its ``CallToolResult`` (a tool error is an ``isError: true`` result). Used by
        server-side callers such as workflow prompts.

        :raises ProtocolError: ``-32602`` unknown tool or bad arguments; ``-32603`` when the
            tool raised.
        """
        spec = self.tools.get(name)
        if spec is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}")
        checked = validate_arguments(spec, dict(arguments))
        return self._run_inline(spec, checked, caller, None, None, None, None)

    def cancel_inline(self, caller: Caller, request_id: RequestId) -> None:
        """Signal cancellation to an inline call (``notifications/cancelled``)."""
        with self._lock:
            ctx = self._inline.get((caller.session_id or caller.owner, request_id))
        if ctx is not None:
            ctx.signal_cancel()

    def running(self) -> int:
        """How many task-augmented calls are queued or running in this process."""
        with self._lock:
            return len(self._tasks)

    def close(self) -> None:
        """Stop: tasks queued or running here fail with :data:`SHUTDOWN_MESSAGE` (their
        tools see ``ctx.cancelled``), queued ones never start. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            tasks = list(self._tasks.items())
        for task_id, (ctx, caller) in tasks:
            # Fail first, then signal: the tool's own late completion is then refused.
            self._settle_error(task_id, caller, _shutdown_error(), None)
            ctx.signal_cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- internals -----------------------------------------------------------------------

    def _run_inline(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        caller: Caller,
        sender: NotificationSender | None,
        request_id: RequestId | None,
        progress_token: str | int | None,
        input_round: InputRound | None,
    ) -> JsonDict:
        ctx = ToolContext(
            spec.name, progress_token=progress_token, sender=sender, input_round=input_round
        )
        key = (caller.session_id or caller.owner, request_id) if request_id is not None else None
        if key is not None:
            with self._lock:
                self._inline[key] = ctx
        try:
            return to_call_tool_result(spec.handler(arguments, ctx))
        except ToolError as exc:
            return exc.to_result()
        except TaskCancelled:
            raise ProtocolError(INTERNAL_ERROR, f"Tool {spec.name} was cancelled") from None
        except TaskStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a tool's bug becomes a -32603 answer
            _log.exception("tool %s failed", spec.name)
            raise ProtocolError(INTERNAL_ERROR, _diagnostic(spec.name, exc)) from None
        finally:
            if key is not None:
                with self._lock:
                    self._inline.pop(key, None)

    def start_call(
        self,
        call: ToolCall,
        request: RequestContext,
        *,
        ttl_ms: int | None = None,
        input_round: InputRound | None = None,
    ) -> ToolAnswer:
        """Create the call's task (``ttl_ms`` as requested; the store validates and clamps it),
        run the tool on the pool, and answer at once in the request's era.

        :raises TaskStoreError: the task could not be created (bad ttl, quota, anonymous
            owner, backend failure).
        :raises ProtocolError: ``-32603`` when the server is shutting down.

        :param input_round: answers gathered before the task (MCP 2026-07-28), and the client
            capabilities the tool's input requests are checked against.
        """
        spec, arguments, progress_token = call.spec, call.arguments, call.progress_token
        caller = request.caller
        if self._closed:
            raise ProtocolError(INTERNAL_ERROR, "The server is shutting down")
        self._ensure_subscribed()
        record = self.store.create(
            caller.owner,
            "tools/call",
            ttl_ms=ttl_ms,
            request={"name": spec.name, "arguments": arguments},
        )
        audit("task.created", owner=caller.audit_owner, task_id=record.task_id, tool=spec.name)
        ctx = ToolContext(
            spec.name,
            task=TaskContext(self.store, record.task_id, caller.owner),
            progress_token=progress_token,
            sender=request.sender,
            inputs=self.inputs,
            input_round=input_round,
        )
        with self._lock:
            self._tasks[record.task_id] = (ctx, caller)
        projection = request.projection
        try:
            self._executor.submit(self._run_task, spec, arguments, ctx, caller, projection)
        except RuntimeError:  # the pool shut down between the check and the submit
            with self._lock:
                self._tasks.pop(record.task_id, None)
            self._settle_error(record.task_id, caller, _shutdown_error(), None)
            raise ProtocolError(INTERNAL_ERROR, "The server is shutting down") from None
        created = projection.created(record, immediate_response=spec.immediate_response)
        return ToolAnswer(created, record.task_id)

    def _ensure_subscribed(self) -> None:
        # One subscription for every task of this runner: a tasks/cancel (here or, with a
        # backend that carries events, in another process) wakes the tool's ctx.sleep at once.
        with self._lock:
            if self._unsubscribe is None:
                self._unsubscribe = self.store.watch(self._on_status)

    def _on_status(self, record: TaskRecord) -> None:
        if record.status is not TaskStatus.CANCELLED:
            return
        with self._lock:
            entry = self._tasks.get(record.task_id)
        if entry is not None:
            entry[0].signal_cancel()

    def _run_task(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        ctx: ToolContext,
        caller: Caller,
        projection: Projection,
    ) -> None:
        task_id = ctx.task_id
        assert task_id is not None
        try:
            if ctx.cancelled:  # cancelled while queued: never start the tool
                return
            try:
                result = to_call_tool_result(spec.handler(arguments, ctx))
            except TaskCancelled:
                _log.debug("tool %s stopped: task %s was cancelled", spec.name, task_id)
                return
            except ToolError as exc:
                result = exc.to_result()
            except TaskStoreError as exc:
                self._settle_error(task_id, caller, exc.to_jsonrpc(), None)
                return
            except Exception as exc:  # noqa: BLE001 - a tool's bug fails its task, not us
                _log.exception("tool %s failed (task %s)", spec.name, task_id)
                message = _diagnostic(spec.name, exc)
                self._settle_error(
                    task_id, caller, {"code": INTERNAL_ERROR, "message": message}, message
                )
                return
            self._settle_result(task_id, caller, result, projection)
        finally:
            with self._lock:
                self._tasks.pop(task_id, None)

    def _settle_result(
        self, task_id: str, caller: Caller, result: JsonDict, projection: Projection
    ) -> None:
        try:
            if is_error_result(result) and projection.is_error_status is TaskStatus.FAILED:
                message = error_text(result) or "The tool reported an error"
                self.store.fail(task_id, caller.owner, result=result, message=message[:500])
                audit("task.failed", owner=caller.audit_owner, task_id=task_id, via="isError")
            else:
                self.store.complete(task_id, caller.owner, result)
                audit("task.completed", owner=caller.audit_owner, task_id=task_id)
        except (InvalidTransitionError, TaskNotFoundError):
            # Cancelled (or expired) first: the task is final, the late result changes nothing.
            _log.debug("discarding the late result of task %s", task_id)
        except ResultTooLargeError as exc:
            self._settle_error(
                task_id, caller, {"code": INTERNAL_ERROR, "message": exc.message}, exc.message
            )
        except TaskStoreError:
            _log.exception("could not store the result of task %s", task_id)

    def _settle_error(
        self, task_id: str, caller: Caller, error: JsonDict, message: str | None
    ) -> None:
        try:
            self.store.fail(task_id, caller.owner, error=error, message=message)
            audit("task.failed", owner=caller.audit_owner, task_id=task_id, code=error.get("code"))
        except (InvalidTransitionError, TaskNotFoundError):
            _log.debug("discarding the late failure of task %s", task_id)
        except TaskStoreError:
            _log.exception("could not record the failure of task %s", task_id)


def _shutdown_error() -> JsonDict:
    return {"code": INTERNAL_ERROR, "message": SHUTDOWN_MESSAGE}
