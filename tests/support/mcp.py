"""Helpers shared by the MCP, WSGI and end-to-end tests: a server with test tools, an
in-process WSGI caller, and a real threaded HTTP server on a free loopback port."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from wsgiref.util import setup_testing_defaults

import msgspec

from taskstore.http.serve import ThreadingWSGIServer
from taskstore.mcp import McpServer, ToolContext, ToolError
from taskstore.mcp.demo import confirm_action
from taskstore.store import TaskStore
from taskstore.wsgi import McpWsgiApp, make_wsgi_server

INIT_PARAMS = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"},
}


def build_server(store: TaskStore, **options: Any) -> McpServer:
    """An McpServer with the tools the tests use (each documents its behaviour)."""
    server = McpServer(store, **options)
    release = threading.Event()
    server.release = release  # type: ignore[attr-defined]

    @server.tool(
        "echo",
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    )
    def echo(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return str(arguments["text"])

    @server.tool("echo_required", task_support="required")
    def echo_required(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return str(arguments.get("text", ""))

    @server.tool("plain")
    def plain(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"ok": True}

    @server.tool("wait_for_cancel", task_support="required")
    def wait_for_cancel(arguments: dict[str, Any], ctx: ToolContext) -> str:
        # Bounded: a test that forgets to cancel still ends.
        cancelled = ctx.sleep(30)
        return "cancelled" if cancelled else "timed out"

    @server.tool("gated", task_support="optional")
    def gated(arguments: dict[str, Any], ctx: ToolContext) -> str:
        release.wait(30)
        return "released"

    @server.tool("tool_error", task_support="required")
    def tool_error(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise ToolError("the tool could not do it")

    @server.tool("crash", task_support="optional")
    def crash(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise RuntimeError("boom")

    server.add_tool(
        confirm_action,
        task_support="required",
        input_schema={
            "type": "object",
            "properties": {"action": {"type": "string"}},
            "required": ["action"],
        },
    )
    return server


class WsgiResponse:
    """What a WSGI app answered."""

    def __init__(self, status: str, headers: list[tuple[str, str]], chunks: Iterator[bytes]):
        self.status_line = status
        self.status = int(status.split()[0])
        self.headers = {k.lower(): v for k, v in headers}
        self.chunks = chunks
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        """The whole body (consumes a streamed one)."""
        if self._body is None:
            self._body = b"".join(self.chunks)
        return self._body

    def json(self) -> Any:
        """The body decoded as JSON."""
        return msgspec.json.decode(self.body)


def call_app(
    app: McpWsgiApp,
    method: str = "POST",
    body: bytes | Mapping[str, Any] | list[Any] | None = None,
    headers: Mapping[str, str] | None = None,
    path: str = "/mcp",
) -> WsgiResponse:
    """Call ``app`` in-process like a WSGI server would."""
    raw = body if isinstance(body, bytes) else (b"" if body is None else msgspec.json.encode(body))
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": "application/json",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT": "application/json, text/event-stream",
        "wsgi.input": io.BytesIO(raw),
    }
    setup_testing_defaults(environ)
    for key, value in (headers or {}).items():
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
        else:
            environ["HTTP_" + name] = value
    captured: dict[str, Any] = {}

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        captured["status"] = status
        captured["headers"] = response_headers
        return lambda data: None

    result = app(environ, start_response)
    return WsgiResponse(captured["status"], captured["headers"], iter(result))


def open_session(app: McpWsgiApp, headers: Mapping[str, str] | None = None) -> str:
    """Initialize through ``app`` and return the session id."""
    reply = call_app(
        app,
        body={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS},
        headers=headers,
    )
    assert reply.status == 200, reply.body
    return reply.headers["mcp-session-id"]


@contextmanager
def served(app: Any, **limits: Any) -> Iterator[ThreadingWSGIServer]:
    """Any WSGI ``app`` on the bundled server with ``limits`` (``make_wsgi_server``'s), on a
    free loopback port, served by a thread; at the end the server stops and the app is closed
    if it has a ``close`` (an ``McpWsgiApp`` does)."""
    httpd = make_wsgi_server(app, "127.0.0.1", 0, **limits)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        close = getattr(app, "close", None)
        if close is not None:
            close()
        httpd.server_close()
        thread.join(5)


@contextmanager
def serving(app: McpWsgiApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yield the endpoint URL."""
    with served(app) as httpd:
        yield f"http://127.0.0.1:{httpd.server_port}/mcp"


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    """Wait (bounded) for an asynchronous effect; return whether it happened."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


class ListSender:
    """A NotificationSender collecting messages (thread-safe)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(message)
