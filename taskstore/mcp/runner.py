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
- an unexpected exception → ``failed`` with a JSON-RPC error outcome ``{-32603, message}`` and
  that message as ``statusMessage``, where the message is generic with an error id and the
  exception is logged (:mod:`taskstore.mcp.failures`; ``expose_tool_errors`` shows raw texts);
- a tool finishing after its task was cancelled changes nothing and raises nothing.

Reliability (DESIGN §9, issue 15):

- **Fair pool.** Calls run on a :class:`~taskstore.mcp.fairness.FairScheduler`: at most
  ``max_running_per_owner`` per owner at once (default ``max(1, max_workers // 4)``), the rest
  queued per owner in order, owners served fairly.
- **Outcomes are never dropped.** Storing an outcome that fails on the storage is retried in
  the background until the task expires (:mod:`taskstore.mcp.outcomes`).
- **Abandoned tasks are failed.** With ``stale_after_ms``, the runner heartbeats its tasks and
  runs recovery passes that fail tasks nobody heartbeats (:mod:`taskstore.mcp.recovery`).

Ordinary calls of ``optional`` (and ``forbidden``) tools run inline on the caller's thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from taskstore import telemetry
from taskstore.aliases import JsonDict, RequestId
from taskstore.context import TaskContext
from taskstore.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    BackendError,
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
from taskstore.mcp.failures import unexpected_failure
from taskstore.mcp.fairness import FairScheduler
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import is_valid_id
from taskstore.mcp.notifications import NotificationSender
from taskstore.mcp.outcomes import OutcomeWriter, RetryPolicy
from taskstore.mcp.projections import Projection
from taskstore.mcp.recovery import STALE_MESSAGE, StaleRecovery
from taskstore.mcp.request import RequestContext
from taskstore.mcp.timers import Timers
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

__all__ = [
    "SHUTDOWN_MESSAGE",
    "STALE_MESSAGE",
    "RetryPolicy",
    "ToolAnswer",
    "ToolCall",
    "ToolRunner",
]

_log = logging.getLogger("taskstore.mcp")

#: Error message of tasks a shutting-down server could not finish.
SHUTDOWN_MESSAGE = "The server shut down before the task finished"
# Status messages the runner writes go to clients on every tasks/get; keep them short.
_MAX_STATUS_CHARS = 500
#: A queued call that waited this long (seconds) is checked against the store before its tool
#: starts: long enough for a client to have read the task id and cancelled it elsewhere.
_RECHECK_QUEUED_S = 0.05


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


class ToolRunner:
    """Runs ``tools/call`` for a :class:`ToolRegistry`. Thread-safe.

    :param store: where tasks live.
    :param tools: the registry to call into.
    :param inputs: carries tools' input requests to clients (a fresh broker by default).
    :param max_workers: size of the thread pool running task-augmented calls.
    :param max_running_per_owner: cap on one owner's task-augmented calls running at once
        (default ``max(1, max_workers // 4)``, so one owner never holds more than a quarter of
        the pool); calls beyond it wait in the owner's queue, in order, their tasks ``working``
        meanwhile, and owners are served fairly (:mod:`taskstore.mcp.fairness`). Pass
        ``max_workers`` to let one owner use the whole pool.
    :param expose_tool_errors: send an unexpected tool exception's own text to the client
        (``"Tool t failed: RuntimeError: ..."``) instead of the generic
        ``"Tool t failed unexpectedly (error id ...)"``. For development only: exception texts
        may hold secrets. The exception is logged either way.
    :param result_retry: backoff of retries when storing an outcome fails on the storage
        (default :class:`RetryPolicy`: from 0.1 s, jittered, capped at 5 s, until the task
        expires).
    :param stale_after_ms: turn on stale-task recovery (:mod:`taskstore.mcp.recovery`): this
        runner heartbeats its tasks every ``stale_after_ms / 3``
        (:meth:`~taskstore.TaskStore.touch`) and, every ``stale_after_ms / 2``, fails
        ``tools/call`` tasks nobody heartbeated for ``stale_after_ms`` (with
        :data:`STALE_MESSAGE`, through :meth:`~taskstore.TaskStore.fail_stale`). ``None``
        (default): off.
    :raises ConfigurationError: a bad ``max_workers``, ``max_running_per_owner`` or
        ``stale_after_ms``; recovery asked for on a backend that cannot scan across owners
        (:class:`~taskstore.backends.base.ScanningBackend`).
    """

    def __init__(
        self,
        store: TaskStore,
        tools: ToolRegistry,
        *,
        inputs: InputBroker | None = None,
        max_workers: int = 16,
        max_running_per_owner: int | None = None,
        expose_tool_errors: bool = False,
        result_retry: RetryPolicy | None = None,
        stale_after_ms: int | None = None,
    ) -> None:
        self.store = store
        self.tools = tools
        self.inputs = inputs if inputs is not None else InputBroker(store)
        #: Whether unexpected tool exceptions reach clients word for word (development).
        self.expose_tool_errors = expose_tool_errors
        self._scheduler = FairScheduler(max_workers, max_running_per_owner)
        #: The per-owner cap on running task-augmented calls in force.
        self.max_running_per_owner = self._scheduler.per_owner
        self._retry_timers = Timers("taskstore-results")
        self._outcomes = OutcomeWriter(store.clock, self._retry_timers, policy=result_retry)
        self._recovery_timers = Timers("taskstore-recovery")
        self._lock = threading.Lock()
        # Task id → (context, caller) of every task queued or running here.
        self._tasks: dict[str, tuple[ToolContext, Caller]] = {}
        # (session or owner, request id) → context of inline calls, for notifications/cancelled.
        self._inline: dict[tuple[str, RequestId], ToolContext] = {}
        self._unsubscribe: Any = None
        self._closed = False
        self._recovery = StaleRecovery(
            store,
            self._live_tasks,
            self._recovery_timers,
            stale_after_ms=stale_after_ms,
        )
        self._recovery.start()

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

    def pending_results(self) -> int:
        """How many finished calls' outcomes wait for a retry to be stored (the storage
        failed when they finished)."""
        return self._outcomes.pending()

    def heartbeat(self) -> int:
        """Refresh the ``lastUpdatedAt`` of every task queued or running here, so recovery
        passes see them alive; return how many were refreshed. Runs by itself every
        ``stale_after_ms / 3`` when ``stale_after_ms`` is set."""
        return self._recovery.heartbeat()

    def recover_stale(self, older_than_ms: int | None = None) -> int:
        """Run one stale-task recovery pass now: fail every non-terminal ``tools/call`` task
        (any owner's) not refreshed for ``older_than_ms`` (default ``stale_after_ms``) with
        :data:`STALE_MESSAGE`; return how many were failed. Safe to run from any process, e.g.
        once at start-up; tasks queued or running in a process that does not heartbeat them
        (``stale_after_ms`` unset there) look stale too. A pass reads every task of the store
        (:meth:`~taskstore.TaskStore.fail_stale` without an owner).

        :raises ConfigurationError: no age given or configured; a backend that cannot scan
            across owners.
        :raises TaskStoreError: the storage failed.
        """
        return self._recovery.recover(older_than_ms)

    def close(self) -> None:
        """Stop: tasks queued or running here fail with :data:`SHUTDOWN_MESSAGE` (their
        tools see ``ctx.cancelled``), queued ones never start; outcomes still waiting for a
        storage retry are given up (and logged). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            tasks = list(self._tasks.items())
        self._recovery.stop()
        self._recovery_timers.close()
        self._scheduler.close()
        for task_id, (ctx, caller) in tasks:
            # Fail first, then signal: the tool's own late completion is then refused.
            try:
                self._fail_now(task_id, caller, _shutdown_error(), None)
            except TaskStoreError:
                _log.exception("could not record the shutdown of task %s", task_id)
            ctx.signal_cancel()
        self._outcomes.close()
        self._retry_timers.close()
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
            with telemetry.tool_run(spec.name) as run:
                result = to_call_tool_result(spec.handler(arguments, ctx))
                if is_error_result(result):
                    run.failed("tool_error")
            return result
        except ToolError as exc:
            return exc.to_result()
        except TaskCancelled:
            raise ProtocolError(INTERNAL_ERROR, f"Tool {spec.name} was cancelled") from None
        except TaskStoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a tool's bug becomes a -32603 answer
            message = unexpected_failure(
                _log, f"Tool {spec.name}", exc, expose=self.expose_tool_errors
            )
            raise ProtocolError(INTERNAL_ERROR, message) from None
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
        audit("task.created", owner=caller, task_id=record.task_id, tool=spec.name)
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
        job = functools.partial(
            self._run_task,
            spec,
            arguments,
            ctx,
            caller,
            projection,
            record,
            time.monotonic(),
            telemetry.current_context(),  # the tool's span joins this request's trace
        )
        try:
            self._scheduler.submit(caller.owner, record.task_id, job)
        except RuntimeError:  # the pool shut down between the check and the submit
            with self._lock:
                self._tasks.pop(record.task_id, None)
            try:
                self._fail_now(record.task_id, caller, _shutdown_error(), None)
            except TaskStoreError:
                _log.exception("could not record the shutdown of task %s", record.task_id)
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
        # A task ended by someone else (tasks/cancel, a recovery pass): its tool should stop,
        # and a call still queued never starts.
        if not record.is_terminal:
            return
        with self._lock:
            entry = self._tasks.get(record.task_id)
        if entry is None:
            return
        entry[0].signal_cancel()
        if self._scheduler.discard(record.task_id):
            with self._lock:
                self._tasks.pop(record.task_id, None)
            _log.debug("task %s ended while queued: its tool never starts", record.task_id)

    def _live_tasks(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(task_id, caller.owner) for task_id, (_ctx, caller) in self._tasks.items()]

    def _run_task(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        ctx: ToolContext,
        caller: Caller,
        projection: Projection,
        created: TaskRecord,
        queued_at: float,
        trace_parent: Any = None,
    ) -> None:
        task_id = ctx.task_id
        assert task_id is not None
        try:
            try:
                # Cancelled while queued: never start the tool. This process hears of cancels
                # through its subscription (the call is signalled, a queued job discarded);
                # the store is asked too only when the call waited long enough for a cancel
                # to have come from where no event reaches (another process, on a backend
                # without cross-process events). A call started at once skips that round
                # trip, which would delay every result; its tool sees a cancel as any does.
                if ctx.cancel_signalled or (
                    time.monotonic() - queued_at >= _RECHECK_QUEUED_S and ctx.cancelled
                ):
                    return
            except BackendError:
                pass  # cannot tell now: run it; its outcome is stored once the storage is back
            try:
                with telemetry.tool_run(spec.name, task_id, trace_parent) as run:
                    result = to_call_tool_result(spec.handler(arguments, ctx))
                    if is_error_result(result):
                        run.failed("tool_error")
            except TaskCancelled:
                _log.debug("tool %s stopped: task %s was cancelled", spec.name, task_id)
                return
            except ToolError as exc:
                result = exc.to_result()
            except TaskStoreError as exc:
                if isinstance(exc, BackendError):  # the client gets no driver details: log them
                    _log.warning(
                        "tool %s (task %s) hit a storage failure: %s", spec.name, task_id, exc
                    )
                self._settle_error(task_id, caller, exc.to_jsonrpc(), None, created)
                return
            except Exception as exc:  # noqa: BLE001 - a tool's bug fails its task, not us
                message = unexpected_failure(
                    _log, f"Tool {spec.name}", exc, expose=self.expose_tool_errors, task_id=task_id
                )
                error = {"code": INTERNAL_ERROR, "message": message}
                self._settle_error(task_id, caller, error, message, created)
                return
            self._settle_result(task_id, caller, result, projection, created)
        finally:
            with self._lock:
                self._tasks.pop(task_id, None)

    def _settle_result(
        self,
        task_id: str,
        caller: Caller,
        result: JsonDict,
        projection: Projection,
        created: TaskRecord,
    ) -> None:
        # ``created`` stands in for the read before the write: current unless the tool wrote
        # to its task, it saves a round trip, so a client polling at once finds the outcome
        # sooner; a retry after a lost reply loses its compare-and-set and reads afresh. Not
        # after close(): the task was failed then, and the store may be closed too, where a
        # read finds the task gone (a quiet discard) but a blind write is refused.
        def write() -> bool:
            known = None if self._closed else created
            try:
                if is_error_result(result) and projection.is_error_status is TaskStatus.FAILED:
                    text = self._status_message(error_text(result) or "The tool reported an error")
                    self.store.fail(
                        task_id, caller.owner, result=result, message=text, known=known
                    )
                    audit("task.failed", owner=caller, task_id=task_id, via="isError")
                else:
                    self.store.complete(task_id, caller.owner, result, known=known)
                    audit("task.completed", owner=caller, task_id=task_id)
            except (InvalidTransitionError, TaskNotFoundError):
                # Cancelled (or expired) first: the task is final, the late result changes
                # nothing. (Also where a retry lands whose earlier attempt was applied but
                # answered with an error, on a store without idempotent completion.)
                _log.debug("discarding the late result of task %s", task_id)
                return False
            except ResultTooLargeError as exc:
                error = {"code": INTERNAL_ERROR, "message": exc.message}
                return self._fail_now(task_id, caller, error, exc.message, created)
            return True

        self._outcomes.write(task_id, write, expires_at_ms=created.expires_at_ms)

    def _settle_error(
        self,
        task_id: str,
        caller: Caller,
        error: JsonDict,
        message: str | None,
        created: TaskRecord,
    ) -> None:
        self._outcomes.write(
            task_id,
            functools.partial(self._fail_now, task_id, caller, error, message, created),
            expires_at_ms=created.expires_at_ms,
        )

    def _fail_now(
        self,
        task_id: str,
        caller: Caller,
        error: JsonDict,
        message: str | None,
        known: TaskRecord | None = None,
    ) -> bool:
        """Fail the task (one attempt); ``False`` if it was already final (left as it is).

        :raises TaskStoreError: the storage failed (e.g. ``BackendError``).
        """
        message = self._status_message(message)
        try:
            self.store.fail(
                task_id,
                caller.owner,
                error=error,
                message=message,
                known=None if self._closed else known,  # as in _settle_result
            )
        except (InvalidTransitionError, TaskNotFoundError):
            _log.debug("discarding the late failure of task %s", task_id)
            return False
        audit("task.failed", owner=caller, task_id=task_id, code=error.get("code"))
        return True


    def _status_message(self, text: str | None) -> str | None:
        """``text`` cut to fit a ``statusMessage`` (at most 500 characters, and the store's
        cap in bytes), so a long diagnostic never makes the outcome unstorable."""
        if text is None:
            return None
        cap = getattr(self.store.config, "max_status_message_bytes", None)
        if len(text) > _MAX_STATUS_CHARS:
            text = text[: _MAX_STATUS_CHARS - 1] + "…"
        if isinstance(cap, int) and len(text.encode("utf-8", "surrogatepass")) > cap:
            cut = text.encode("utf-8", "surrogatepass")[: max(0, cap - 3)]
            text = cut.decode("utf-8", "ignore") + ("…" if cap >= 3 else "")
        return text


def _shutdown_error() -> JsonDict:
    return {"code": INTERNAL_ERROR, "message": SHUTDOWN_MESSAGE}
