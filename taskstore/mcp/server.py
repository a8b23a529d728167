"""``McpServer``: store + tools + prompts + task router behind one entry point.

Transport-neutral: :meth:`McpServer.handle` takes one decoded JSON-RPC message and its
:class:`~taskstore.mcp.request.RequestContext` (the caller resolved once by the transport, the
era decided once by :func:`taskstore.mcp.era.era_of`) and returns the reply: a response
message, ``None`` for notifications and responses, or (only when the transport can stream and
the answer cannot come at once) a stream of messages. The transport then only chooses JSON or
SSE. The WSGI endpoint
(:mod:`taskstore.http`) adds HTTP and sessions on top; any other sync transport (stdio, a custom
HTTP stack) can call these directly.

Methods (MCP 2025-11-25): ``initialize``, ``ping``, ``tools/list``, ``tools/call``,
``prompts/list``, ``prompts/get``, ``tasks/get``, ``tasks/result``, ``tasks/list``,
``tasks/cancel``; each era has its own dispatch table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal, Protocol, Union, overload

from taskstore._version import __version__
from taskstore.aliases import JsonDict, RequestId
from taskstore.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    BackendError,
    ProtocolError,
    TaskStoreError,
)
from taskstore.mcp.auth import AuthContext, Caller
from taskstore.mcp.capabilities import negotiate_version, server_capabilities
from taskstore.mcp.era import ERA_2025_11_25, ERA_2026_07_28, Era, era_of
from taskstore.mcp.host import ToolCallHook
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import (
    error_object,
    error_response,
    is_valid_id,
    result_response,
)
from taskstore.mcp.modern import ModernService
from taskstore.mcp.modern_tasks import ExtensionTaskRouter
from taskstore.mcp.mrtr import RequestStateCodec
from taskstore.mcp.notifications import NotificationSender, StatusNotifier
from taskstore.mcp.prompts import PromptArgument, PromptContext, PromptHandler, PromptRegistry
from taskstore.mcp.request import RequestContext, as_context
from taskstore.mcp.router import TaskRouter
from taskstore.mcp.runner import ToolAnswer, ToolRunner
from taskstore.mcp.tools import ToolHandler, ToolRegistry, ToolSpec
from taskstore.record import TaskRecord
from taskstore.store import TaskStore
from taskstore.types import GetTaskPayloadParams, TaskSupport, decode

__all__ = ["McpServer", "Reply", "ReplyStream", "RequestContext", "ToolCallHook"]

_log = logging.getLogger("taskstore.mcp")

_Method = Callable[[Mapping[str, Any] | None, RequestContext], JsonDict]

#: A streamed reply: server → client messages (input requests), ``None`` for each keep-alive
#: slot of silence, and finally the response, after which it ends. Close it when the client
#: goes away.
ReplyStream = Generator[Union[JsonDict, None], None, None]  # noqa: UP007 - runtime alias
#: What :meth:`McpServer.handle` returns.
Reply = Union[JsonDict, ReplyStream, None]  # noqa: UP007 - runtime alias


class McpServer:
    """An MCP server (2025-11-25 ``tasks`` utility included) over a :class:`TaskStore`.

    Thread-safe: ``handle`` may be called from many threads at once (a blocking
    ``tasks/result`` holds only its own thread).

    :param store: where tasks live (any backend).
    :param name: ``serverInfo.name``.
    :param version: ``serverInfo.version``.
    :param instructions: optional ``InitializeResult.instructions``.
    :param max_workers: threads running task-augmented tool calls.
    :param max_running_per_owner: cap on one owner's task-augmented calls running at once
        (default ``max(1, max_workers // 4)``: 4 of the default 16); the rest wait in the
        owner's queue, in order, and owners are served fairly (see
        :class:`~taskstore.mcp.runner.ToolRunner`).
    :param expose_tool_errors: send unexpected tool exceptions' own texts to clients instead
        of a generic message with an error id. Development only: they may hold secrets.
    :param stale_after_ms: turn on stale-task recovery: this server heartbeats its running
        tasks and fails ``tools/call`` tasks nobody heartbeated for this long (their process
        died), through :meth:`TaskStore.fail_stale <taskstore.TaskStore.fail_stale>`; needs a
        backend that can scan across owners (every bundled one). Default ``None``: off.
    :param result_timeout: cap in seconds on a blocking ``tasks/result`` (``None``: none).
    :param request_state_key: signs the ``requestState`` of MCP 2026-07-28 calls that need
        input (default: ``$TASKSTORE_REQUEST_STATE_KEY``, else one derived from the store's
        :attr:`~taskstore.TaskStore.deployment_key`, which every worker opened on the same
        storage URL shares, else a random key of this process).
    :param cache_ttl_ms: the ``ttlMs`` caching hint of MCP 2026-07-28 ``server/discover``,
        ``tools/list`` and ``prompts/list``.
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        name: str = "taskstore",
        version: str | None = None,
        instructions: str | None = None,
        max_workers: int = 16,
        max_running_per_owner: int | None = None,
        expose_tool_errors: bool = False,
        stale_after_ms: int | None = None,
        result_timeout: float | None = None,
        request_state_key: bytes | str | None = None,
        cache_ttl_ms: int = 0,
    ) -> None:
        self._store = store
        self.name = name
        self.version = version if version is not None else __version__
        self.instructions = instructions
        self.tools = ToolRegistry()
        self.prompts = PromptRegistry()
        self.inputs = InputBroker(store)
        self.router = TaskRouter(store, result_timeout=result_timeout)
        self.runner = ToolRunner(
            store,
            self.tools,
            inputs=self.inputs,
            max_workers=max_workers,
            max_running_per_owner=max_running_per_owner,
            expose_tool_errors=expose_tool_errors,
            stale_after_ms=stale_after_ms,
        )
        self.notifier = StatusNotifier(store)
        legacy = _LegacyService(
            {
                "initialize": self._initialize,
                "ping": lambda params, ctx: {},
                "tools/list": lambda params, ctx: {"tools": self.tools.declarations()},
                "tools/call": self._call_tool,
                "prompts/list": lambda params, ctx: {"prompts": self.prompts.declarations()},
                "prompts/get": self._get_prompt,
                **self.router.methods,
            }
        )
        modern = ModernService(
            tools=self.tools,
            prompts=self.prompts,
            runner=self.runner,
            render_prompt=self._get_prompt,
            observe_call=self._observe_call,
            server_info={"name": self.name, "version": self.version},
            instructions=instructions,
            state_codec=RequestStateCodec(
                request_state_key, deployment_key=store.deployment_key
            ),
            task_router=ExtensionTaskRouter(store),
            cache_ttl_ms=cache_ttl_ms,
        )
        #: Each era's service: its admission, its dispatch table, its result envelope.
        self._eras: dict[Era, _EraService] = {ERA_2025_11_25: legacy, ERA_2026_07_28: modern}
        self._methods = legacy.methods  # the 2025-11-25 dispatch table
        self._closed = threading.Event()
        self._tool_call_hooks: list[ToolCallHook] = []

    # -- registration --------------------------------------------------------------------

    def tool(
        self,
        name: str | None = None,
        *,
        task_support: TaskSupport = "forbidden",
        input_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
        **options: Any,
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator registering ``handler(arguments, ctx)`` as a tool; see
        :meth:`taskstore.mcp.tools.ToolRegistry.register` for the options."""
        return self.tools.tool(
            name,
            task_support=task_support,
            input_schema=input_schema,
            description=description,
            **options,
        )

    def add_tool(self, handler: ToolHandler, **options: Any) -> ToolSpec:
        """Register a plain callable as a tool (keyword options as :meth:`tool`)."""
        return self.tools.register(handler, **options)

    def prompt(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        arguments: Sequence[PromptArgument] = (),
        title: str | None = None,
    ) -> Callable[[PromptHandler], PromptHandler]:
        """Decorator registering ``handler(arguments, ctx)`` as a prompt."""
        return self.prompts.prompt(name, description=description, arguments=arguments, title=title)

    def add_tool_call_hook(self, hook: ToolCallHook) -> None:
        """Call ``hook(params, result, caller, task_id)`` after every successful
        ``tools/call`` (``result`` is the answer sent, ``task_id`` the id of the task the call
        created or ``None``). The workflow bridge records continuations this way. A hook that
        raises is logged; the call's answer is unaffected."""
        self._tool_call_hooks.append(hook)

    # -- the host interface (taskstore.mcp.host.Host) --------------------------------------

    @property
    def store(self) -> TaskStore:
        """Where the server's tasks live (owned by the caller: :meth:`close` leaves it open)."""
        return self._store

    def get_tool(self, name: str) -> ToolSpec | None:
        """The registered tool called ``name``, or ``None``."""
        return self.tools.get(name)

    def run_tool(self, name: str, arguments: Mapping[str, Any], caller: Caller) -> JsonDict:
        """Run tool ``name`` inline for ``caller`` (see
        :meth:`taskstore.mcp.runner.ToolRunner.run_inline`)."""
        return self.runner.run_inline(name, arguments, caller)

    # -- dispatch ------------------------------------------------------------------------

    @overload
    def handle(
        self,
        message: object,
        ctx: RequestContext | None = None,
        *,
        caller: Caller | None = None,
        auth: AuthContext | None = None,
        session_id: str | None = None,
        sender: NotificationSender | None = None,
        stream: Literal[False] = False,
        keepalive_s: float = 15.0,
    ) -> JsonDict | None: ...

    @overload
    def handle(
        self,
        message: object,
        ctx: RequestContext | None = None,
        *,
        caller: Caller | None = None,
        auth: AuthContext | None = None,
        session_id: str | None = None,
        sender: NotificationSender | None = None,
        stream: bool,
        keepalive_s: float = 15.0,
    ) -> Reply: ...

    def handle(
        self,
        message: object,
        ctx: RequestContext | None = None,
        *,
        caller: Caller | None = None,
        auth: AuthContext | None = None,
        session_id: str | None = None,
        sender: NotificationSender | None = None,
        stream: bool = False,
        keepalive_s: float = 15.0,
    ) -> Reply:
        """Answer one decoded JSON-RPC message: the one entry point of every transport.

        Never raises: every failure becomes a JSON-RPC error response.

        :param ctx: the request's context (caller, era, sender), resolved once by the
            transport; its ``request_id`` is taken from the message. Without one, it is built
            from ``caller`` (else resolved from ``auth`` and ``session_id`` by
            :meth:`Caller.resolve`), ``sender`` and the message's era.
        :param stream: the transport can stream (SSE): a ``tasks/result`` whose answer cannot
            come at once then returns a :data:`ReplyStream` instead of blocking.
        :param keepalive_s: seconds of silence after which a stream yields ``None``.
        :returns: the response, ``None`` for a notification or a response (client answers to
            input requests are routed to the waiting tool), or (only with ``stream``) a stream.
        """
        if ctx is None:
            if caller is None:
                caller = Caller.resolve(auth=auth, session_id=session_id)
            era = era_of(message) if isinstance(message, Mapping) else ERA_2025_11_25
            ctx = RequestContext(caller=caller, sender=sender, era=era)
        if not isinstance(message, dict):
            return error_response(None, {"code": INVALID_REQUEST, "message": "Invalid Request"})
        raw_id = message.get("id")
        request_id = raw_id if is_valid_id(raw_id) else None
        if message.get("jsonrpc") != "2.0":
            return error_response(
                request_id,
                {"code": INVALID_REQUEST, "message": "Invalid Request: jsonrpc must be '2.0'"},
            )
        method = message.get("method")
        if (
            method is None
            and request_id is not None
            and ("result" in message or "error" in message)
        ):
            self.inputs.resolve(message, ctx.caller.owner)
            return None
        if not isinstance(method, str):
            return error_response(
                request_id, {"code": INVALID_REQUEST, "message": "Invalid Request: no method"}
            )
        if "id" not in message:
            self._notify(method, message.get("params"), ctx.caller)
            return None
        if request_id is None:
            return error_response(
                None,
                {
                    "code": INVALID_REQUEST,
                    "message": "Invalid Request: id must be a string or an integer",
                },
            )
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            return error_response(
                request_id,
                {"code": INVALID_PARAMS, "message": "Invalid params: params must be an object"},
            )
        ctx = ctx.with_request_id(request_id)
        if stream and method == "tasks/result":
            return self._streamed_result(params, ctx, keepalive_s)
        try:
            # The handler's result is its own fresh object: sent as is (result_response
            # would copy it).
            return {"jsonrpc": "2.0", "id": request_id, "result": self.call(method, params, ctx)}
        except TaskStoreError as exc:
            return error_response(request_id, self._error(method, exc))
        except Exception:  # noqa: BLE001 - never a traceback on the wire: log it, answer -32603
            _log.exception("internal error in %s", method)
            return error_response(request_id, {"code": INTERNAL_ERROR, "message": "Internal error"})

    def call(
        self, method: str, params: Mapping[str, Any] | None, ctx: RequestContext | Caller
    ) -> JsonDict:
        """Run one request method of the context's era and return its ``result`` object.

        :raises ProtocolError: ``-32601`` unknown method, or the method's protocol error.
        :raises TaskStoreError: the method's task error (with its JSON-RPC code).
        """
        ctx = as_context(ctx)
        service = self._eras[ctx.era]
        ctx = service.admit(method, params, ctx)
        handler = service.methods.get(method)
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
        return service.finish(handler(params, ctx))

    @staticmethod
    def _error(method: str, exc: TaskStoreError) -> JsonDict:
        if isinstance(exc, BackendError):  # the client gets no driver details: log them
            _log.error("storage failure in %s: %s", method, exc, exc_info=exc)
        return exc.to_jsonrpc()

    def _streamed_result(
        self, params: Mapping[str, Any] | None, ctx: RequestContext, keepalive_s: float
    ) -> Reply:
        request_id = ctx.request_id
        assert request_id is not None
        try:
            events = self.result_stream(params, ctx, request_id, keepalive_s=keepalive_s)
            # Answer plainly whenever the first thing to say is the answer itself; stream only
            # to push input requests or keep-alives before it.
            first = next(events)
        except TaskStoreError as exc:
            return error_response(request_id, self._error("tasks/result", exc))
        except Exception:  # noqa: BLE001 - never a traceback on the wire
            _log.exception("internal error in tasks/result")
            return error_response(request_id, {"code": INTERNAL_ERROR, "message": "Internal error"})
        if first is not None and first.get("id") == request_id and "method" not in first:
            events.close()
            return first
        return _prepend(first, events)

    def result_stream(
        self,
        params: Mapping[str, Any] | None,
        caller: Caller | RequestContext,
        request_id: RequestId,
        *,
        keepalive_s: float = 15.0,
    ) -> ReplyStream:
        """``tasks/result`` as a stream, for transports that can push (SSE).

        Checks the params and the task first (raising like :meth:`call`), then returns an
        iterator that yields the task's input requests to the client as they come up (spec:
        a requestor sees ``input_required`` and calls ``tasks/result`` to receive them),
        ``None`` every ``keepalive_s`` of silence (so the transport can detect a client that
        went away), and finally the ``tasks/result`` response, after which it ends.

        :raises TaskNotFoundError: unknown, expired or foreign task (-32602).
        :raises InvalidParamsError: malformed params (-32602).
        """
        ctx = as_context(caller)
        decoded = decode(dict(params or {}), GetTaskPayloadParams)
        task_id = decoded.task_id
        record = self.store.get_with_outcome(task_id, ctx.caller.owner)
        # A finished task (the usual case: clients poll tasks/get first) never changes: this
        # read answers it. A running one is read again once the stream watches it, so that
        # no change between the two goes unnoticed.
        first = record if record.is_terminal else None
        return self._result_events(task_id, ctx, request_id, keepalive_s, first)

    def _result_events(
        self,
        task_id: str,
        ctx: RequestContext,
        request_id: RequestId,
        keepalive_s: float,
        first: TaskRecord | None,
    ) -> ReplyStream:
        if first is not None:
            yield self._answer(first, ctx, request_id)
            return
        sent: set[str] = set()
        wake = threading.Event()
        caller = ctx.caller

        def on_change(record: TaskRecord) -> None:
            if record.task_id == task_id:
                wake.set()

        unsubscribe = self.store.watch(on_change, owner=caller.owner, every_change=True)
        last_sent = time.monotonic()
        try:
            while True:
                wake.clear()
                try:
                    record = self.store.get_with_outcome(task_id, caller.owner)
                    if not record.is_terminal:
                        # The task's input requests, read from its record: relayed by
                        # whichever process serves this stream.
                        for message in self.inputs.messages(record, sent):
                            last_sent = time.monotonic()
                            yield message
                except Exception as exc:  # noqa: BLE001 - mapped like handle() maps errors
                    yield _result_failure(request_id, exc)
                    return
                if record.is_terminal:
                    yield self._answer(record, ctx, request_id)
                    return
                if self._closed.is_set():
                    yield error_response(
                        request_id,
                        {"code": INTERNAL_ERROR, "message": "The server is shutting down"},
                    )
                    return
                # Backends without cross-process events are re-read at the poll interval.
                poll_s = (record.task.poll_interval or 1000) / 1000
                wake.wait(min(poll_s, keepalive_s))
                if time.monotonic() - last_sent >= keepalive_s:
                    last_sent = time.monotonic()
                    yield None
        finally:
            unsubscribe()

    def _answer(self, record: TaskRecord, ctx: RequestContext, request_id: RequestId) -> JsonDict:
        """The ``tasks/result`` response (or error) for the terminal ``record``."""
        try:
            return result_response(request_id, self.router.answer(record, ctx))
        except Exception as exc:  # noqa: BLE001 - mapped like handle() maps errors
            return _result_failure(request_id, exc)

    def close(self) -> None:
        """Stop running tools (their tasks fail with a shutdown message) and end streams.
        The store is not closed: it belongs to the caller."""
        self._closed.set()
        self.runner.close()

    # -- methods -------------------------------------------------------------------------

    def _initialize(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        if params is None or not isinstance(params.get("protocolVersion"), str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: protocolVersion is required")
        result: JsonDict = {
            "protocolVersion": negotiate_version(params["protocolVersion"]),
            "capabilities": server_capabilities(identified=ctx.caller.identified),
            "serverInfo": {"name": self.name, "version": self.version},
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    def _call_tool(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        answer = self.runner.call_tool(params, ctx)
        self._observe_call(params or {}, answer, ctx)
        return answer.result

    def _observe_call(
        self, params: Mapping[str, Any], answer: ToolAnswer, ctx: RequestContext
    ) -> None:
        for hook in self._tool_call_hooks:
            try:
                hook(params, answer.result, ctx.caller, answer.task_id)
            except Exception:  # noqa: BLE001 - an observer must never fail the call it observes
                _log.exception("tools/call hook %r failed", hook)

    def _get_prompt(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        if params is None or not isinstance(params.get("name"), str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: name must be a string")
        spec = self.prompts.get(params["name"])
        if spec is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown prompt: {params['name']}")
        meta = params.get("_meta")
        prompt_ctx = PromptContext(
            caller=ctx.caller, host=self, meta=dict(meta) if isinstance(meta, Mapping) else {}
        )
        return spec.render(params.get("arguments"), prompt_ctx)

    def _notify(self, method: str, params: object, caller: Caller) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            if isinstance(request_id, (str, int)) and is_valid_id(request_id):
                self.runner.cancel_inline(caller, request_id)
        # Everything else (notifications/initialized, progress, roots changes, ...) needs no
        # action from a server that keeps no per-client protocol state beyond the session.


class _EraService(Protocol):
    """What the server needs of one era: admission, a dispatch table, a result envelope."""

    @property
    def methods(self) -> Mapping[str, _Method]:
        """The era's dispatch table."""
        ...

    def admit(
        self, method: str, params: Mapping[str, Any] | None, ctx: RequestContext
    ) -> RequestContext:
        """Check the request before dispatch; return its context (raise to refuse it)."""
        ...

    def finish(self, result: JsonDict) -> JsonDict:
        """The result as the era sends it."""
        ...


class _LegacyService:
    """MCP 2025-11-25: sessions checked by the transport, results sent as handlers return
    them."""

    def __init__(self, methods: dict[str, _Method]) -> None:
        self.methods = methods

    def admit(
        self, method: str, params: Mapping[str, Any] | None, ctx: RequestContext
    ) -> RequestContext:
        return ctx

    def finish(self, result: JsonDict) -> JsonDict:
        return result


def _result_failure(request_id: RequestId, exc: Exception) -> JsonDict:
    """The error response of a ``tasks/result`` stream that failed with ``exc`` (logged when it
    is not one of ours)."""
    if not isinstance(exc, TaskStoreError):
        _log.exception("internal error in tasks/result", exc_info=exc)
    return error_response(request_id, error_object(exc))


def _prepend(first: JsonDict | None, rest: ReplyStream) -> ReplyStream:
    try:
        yield first
        yield from rest
    finally:
        rest.close()
