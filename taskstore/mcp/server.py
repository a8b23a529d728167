"""``McpServer``: store + tools + prompts + task router behind one JSON-RPC ``handle``.

Transport-neutral: :meth:`McpServer.handle` takes one decoded JSON-RPC message and the caller's
identity and returns the response message (``None`` for notifications and responses). The
WSGI endpoint (:mod:`taskstore.wsgi`) adds HTTP, sessions and streams on top; any other sync
transport (stdio, a custom HTTP stack) can call ``handle`` directly.

Methods: ``initialize``, ``ping``, ``tools/list``, ``tools/call``, ``prompts/list``,
``prompts/get``, ``tasks/get``, ``tasks/result``, ``tasks/list``, ``tasks/cancel``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskstore.errors import BackendError, TaskStoreError
from taskstore.mcp.auth import AuthContext, Caller
from taskstore.mcp.capabilities import negotiate_version, server_capabilities
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    JsonDict,
    ProtocolError,
    RequestId,
    error_object,
    error_response,
    is_valid_id,
    result_response,
)
from taskstore.mcp.notifications import NotificationSender, StatusNotifier
from taskstore.mcp.projection import LEGACY, Projection
from taskstore.mcp.prompts import PromptArgument, PromptContext, PromptHandler, PromptRegistry
from taskstore.mcp.router import TaskRouter
from taskstore.mcp.runner import ToolRunner
from taskstore.mcp.tools import ToolHandler, ToolRegistry, ToolSpec
from taskstore.store import TaskStore
from taskstore.types import GetTaskPayloadParams, TaskSupport, decode

__all__ = ["McpServer", "RequestContext", "ToolCallHook"]

_log = logging.getLogger("taskstore.mcp")


@dataclass(frozen=True)
class RequestContext:
    """One request as handlers see it.

    :ivar caller: who is calling (the task owner).
    :ivar request_id: the JSON-RPC id (``None`` for notifications).
    :ivar sender: where out-of-band messages for this caller go (progress, ...), if anywhere.
    """

    caller: Caller
    request_id: RequestId | None = None
    sender: NotificationSender | None = None


_Method = Callable[[Mapping[str, Any] | None, RequestContext], JsonDict]

#: Observes every answered ``tools/call``: ``hook(params, result, caller)``.
ToolCallHook = Callable[[Mapping[str, Any], JsonDict, Caller], None]


class McpServer:
    """An MCP server (2025-11-25 ``tasks`` utility included) over a :class:`TaskStore`.

    Thread-safe: ``handle`` may be called from many threads at once (a blocking
    ``tasks/result`` holds only its own thread).

    :param store: where tasks live (any backend).
    :param name: ``serverInfo.name``.
    :param version: ``serverInfo.version``.
    :param instructions: optional ``InitializeResult.instructions``.
    :param max_workers: threads running task-augmented tool calls.
    :param result_timeout: cap in seconds on a blocking ``tasks/result`` (``None``: none).
    :param projection: the wire era of task results (default MCP 2025-11-25).
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        name: str = "taskstore",
        version: str | None = None,
        instructions: str | None = None,
        max_workers: int = 16,
        result_timeout: float | None = None,
        projection: Projection = LEGACY,
    ) -> None:
        from taskstore import __version__

        self.store = store
        self.name = name
        self.version = version if version is not None else __version__
        self.instructions = instructions
        self.tools = ToolRegistry()
        self.prompts = PromptRegistry()
        self.inputs = InputBroker()
        self.router = TaskRouter(store, projection=projection, result_timeout=result_timeout)
        self.runner = ToolRunner(
            store, self.tools, projection=projection, inputs=self.inputs, max_workers=max_workers
        )
        self.notifier = StatusNotifier(store)
        self._methods: dict[str, _Method] = {
            "initialize": self._initialize,
            "ping": lambda params, ctx: {},
            "tools/list": lambda params, ctx: {"tools": self.tools.declarations()},
            "tools/call": self._call_tool,
            "prompts/list": lambda params, ctx: {"prompts": self.prompts.declarations()},
            "prompts/get": self._get_prompt,
        }
        for method in ("tasks/get", "tasks/result", "tasks/list", "tasks/cancel"):
            self._methods[method] = self._task_method(method)
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
        """Call ``hook(params, result, caller)`` after every successful ``tools/call`` (the
        result is the ``CallToolResult`` or the ``CreateTaskResult``). The workflow bridge
        records continuations this way. A hook that raises is logged; the call's answer is
        unaffected."""
        self._tool_call_hooks.append(hook)

    # -- dispatch ------------------------------------------------------------------------

    def handle(
        self,
        message: object,
        *,
        caller: Caller | None = None,
        auth: AuthContext | None = None,
        session_id: str | None = None,
        sender: NotificationSender | None = None,
    ) -> JsonDict | None:
        """Handle one decoded JSON-RPC message; return the response, or ``None`` for a
        notification or a response (client answers to input requests are routed to the
        waiting tool). Never raises: every failure becomes a JSON-RPC error response.

        :param caller: the identity to act as; by default resolved from ``auth`` and
            ``session_id`` (:meth:`Caller.resolve`).
        :param sender: where out-of-band messages for this caller go (progress).
        """
        if caller is None:
            caller = Caller.resolve(auth=auth, session_id=session_id)
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
            self.inputs.resolve(message, caller.owner)
            return None
        if not isinstance(method, str):
            return error_response(
                request_id, {"code": INVALID_REQUEST, "message": "Invalid Request: no method"}
            )
        if "id" not in message:
            self._notify(method, message.get("params"), caller)
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
        ctx = RequestContext(caller=caller, request_id=request_id, sender=sender)
        try:
            return result_response(request_id, self.call(method, params, ctx))
        except (ProtocolError, TaskStoreError) as exc:
            if isinstance(exc, BackendError):  # the client gets no driver details: log them
                _log.error("storage failure in %s: %s", method, exc, exc_info=exc)
            return error_response(request_id, exc.to_jsonrpc())
        except Exception:  # noqa: BLE001 - never a traceback on the wire: log it, answer -32603
            _log.exception("internal error in %s", method)
            return error_response(request_id, {"code": INTERNAL_ERROR, "message": "Internal error"})

    def call(self, method: str, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        """Run one request method and return its ``result`` object.

        :raises ProtocolError: ``-32601`` unknown method, or the method's protocol error.
        :raises TaskStoreError: the method's task error (with its JSON-RPC code).
        """
        handler = self._methods.get(method)
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
        return handler(params, ctx)

    def result_stream(
        self,
        params: Mapping[str, Any] | None,
        caller: Caller,
        request_id: RequestId,
        *,
        keepalive_s: float = 15.0,
    ) -> Generator[JsonDict | None, None, None]:
        """``tasks/result`` as a stream, for transports that can push (SSE).

        Checks the params and the task first (raising like :meth:`call`), then returns an
        iterator that yields the task's input requests to the client as they come up (spec:
        a requestor sees ``input_required`` and calls ``tasks/result`` to receive them),
        ``None`` every ``keepalive_s`` of silence (so the transport can detect a client that
        went away), and finally the ``tasks/result`` response, after which it ends.

        :raises TaskNotFoundError: unknown, expired or foreign task (-32602).
        :raises InvalidParamsError: malformed params (-32602).
        """
        decoded = decode(dict(params or {}), GetTaskPayloadParams)
        task_id = decoded.task_id
        self.store.get(task_id, caller.owner)
        return self._result_events(task_id, caller, request_id, keepalive_s)

    def _result_events(
        self, task_id: str, caller: Caller, request_id: RequestId, keepalive_s: float
    ) -> Generator[JsonDict | None, None, None]:
        holder = object()
        wake = threading.Event()

        def on_change(task: dict[str, Any]) -> None:
            if task.get("taskId") == task_id:
                wake.set()

        stop_watching = self.inputs.watch(task_id, caller.owner, wake.set)
        unsubscribe = self.store.subscribe(on_change, owner=caller.owner)
        last_sent = time.monotonic()
        try:
            while True:
                wake.clear()
                for message in self.inputs.take(task_id, caller.owner, holder):
                    last_sent = time.monotonic()
                    yield message
                try:
                    record = self.store.get(task_id, caller.owner)
                    if record.is_terminal:
                        payload = self.router.payload(task_id, caller, timeout=0)
                        yield result_response(request_id, payload)
                        return
                except Exception as exc:  # noqa: BLE001 - mapped like handle() maps errors
                    if not isinstance(exc, (ProtocolError, TaskStoreError)):
                        _log.exception("internal error in tasks/result")
                    yield error_response(request_id, error_object(exc))
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
            stop_watching()
            unsubscribe()
            self.inputs.release(holder)

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
        result = self.runner.call(params, ctx.caller, sender=ctx.sender, request_id=ctx.request_id)
        for hook in self._tool_call_hooks:
            try:
                hook(params or {}, result, ctx.caller)
            except Exception:  # noqa: BLE001 - an observer must never fail the call it observes
                _log.exception("tools/call hook %r failed", hook)
        return result

    def _get_prompt(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        if params is None or not isinstance(params.get("name"), str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: name must be a string")
        spec = self.prompts.get(params["name"])
        if spec is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown prompt: {params['name']}")
        meta = params.get("_meta")
        prompt_ctx = PromptContext(
            caller=ctx.caller, server=self, meta=dict(meta) if isinstance(meta, Mapping) else {}
        )
        return spec.render(params.get("arguments"), prompt_ctx)

    def _task_method(self, method: str) -> _Method:
        def run(params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
            return self.router.handle(method, params, ctx.caller)

        return run

    def _notify(self, method: str, params: object, caller: Caller) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            if isinstance(request_id, (str, int)) and is_valid_id(request_id):
                self.runner.cancel_inline(caller, request_id)
        # Everything else (notifications/initialized, progress, roots changes, ...) needs no
        # action from a server that keeps no per-client protocol state beyond the session.
