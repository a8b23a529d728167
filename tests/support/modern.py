"""Helpers of the MCP 2026-07-28 (stateless, "modern") tests: the per-request ``_meta``
envelope, the routing headers, a server with tools exercising capabilities and multi-round
input, and a one-call WSGI request builder."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from support.mcp import WsgiResponse, call_app
from taskstore.mcp import McpServer, ToolContext
from taskstore.store import TaskStore
from taskstore.wsgi import McpWsgiApp

MODERN = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_RELATED_TASK = "io.modelcontextprotocol/related-task"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
CLIENT_INFO = {"name": "modern-test-client", "version": "1.0.0"}
#: The conformance harness's default capabilities (everything but the tasks extension).
ALL_CAPABILITIES: dict[str, Any] = {
    "sampling": {},
    "elicitation": {},
    "roots": {"listChanged": True},
}

#: Schemas the eliciting tools ask with.
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean"}},
    "required": ["confirm"],
}


def meta(
    capabilities: Mapping[str, Any] | None = None,
    *,
    version: str = MODERN,
    client_info: bool = True,
) -> dict[str, Any]:
    """A complete per-request ``_meta`` (capabilities default to :data:`ALL_CAPABILITIES`)."""
    made: dict[str, Any] = {
        META_VERSION: version,
        META_CAPABILITIES: dict(ALL_CAPABILITIES if capabilities is None else capabilities),
    }
    if client_info:
        made[META_CLIENT_INFO] = dict(CLIENT_INFO)
    return made


def params(
    extra: Mapping[str, Any] | None = None,
    capabilities: Mapping[str, Any] | None = None,
    *,
    version: str = MODERN,
) -> dict[str, Any]:
    """Request params: ``extra`` plus a complete ``_meta``."""
    return {**(extra or {}), "_meta": meta(capabilities, version=version)}


def message(method: str, body_params: Any = None, id: Any = 1) -> dict[str, Any]:  # noqa: A002
    """A JSON-RPC request (``body_params`` omitted when ``None``)."""
    made: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if body_params is not None:
        made["params"] = body_params
    return made


def headers(method: str, name: str | None = None, *, version: str = MODERN) -> dict[str, str]:
    """The standard routing headers of a modern request."""
    made = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        made["Mcp-Name"] = name
    return made


def b64_sentinel(value: str) -> str:
    """``value`` in the ``=?base64?…?=`` header encoding."""
    return "=?base64?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def post(
    app: McpWsgiApp,
    method: str,
    extra: Mapping[str, Any] | None = None,
    *,
    capabilities: Mapping[str, Any] | None = None,
    id: Any = 1,  # noqa: A002
    name: str | None = None,
    more_headers: Mapping[str, str] | None = None,
) -> WsgiResponse:
    """POST one well-formed modern request: full ``_meta``, matching ``MCP-Protocol-Version``
    and ``Mcp-Method``, and ``Mcp-Name`` (``name``, default ``extra["name"]`` for
    ``tools/call``/``prompts/get``)."""
    if name is None and method in ("tools/call", "prompts/get") and extra is not None:
        name = extra.get("name")
    sent = headers(method, name)
    sent.update(more_headers or {})
    return call_app(app, body=message(method, params(extra, capabilities), id), headers=sent)


def tool_text(result: Mapping[str, Any]) -> str:
    """The text of a ``CallToolResult``'s first content block."""
    return str(result["content"][0]["text"])


def build_modern_server(store: TaskStore, **options: Any) -> McpServer:
    """A server with tools for the modern-era tests (``greet`` first, as the conformance
    fixtures list it):

    - ``greet {name?}`` → ``Hello, <name>!``;
    - ``echo {text}`` → the text; task support ``optional`` (a legacy session can make a task);
    - ``needs_sampling`` requires the ``sampling`` client capability;
    - ``needs_tasks`` requires the tasks extension (a nested requirement);
    - ``ask_name`` elicits a name once → ``Hello, <name>!``;
    - ``ask_twice`` elicits a name, then a confirmation → both answers as structured content
      (``runs`` counts how often it started);
    - ``explode`` raises.
    """
    server = McpServer(store, **options)
    runs: list[str] = []
    server.runs = runs  # type: ignore[attr-defined]

    @server.tool(
        "greet",
        description="Say hello.",
        input_schema={"type": "object", "properties": {"name": {"type": "string"}}},
    )
    def greet(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return f"Hello, {arguments.get('name', 'World')}!"

    @server.tool(
        "echo",
        task_support="optional",
        description="Echo the text (a task when the caller asks for one).",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    )
    def echo(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return str(arguments["text"])

    @server.tool(
        "needs_sampling",
        description="Needs the sampling capability.",
        required_capabilities={"sampling": {}},
    )
    def needs_sampling(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return "sampled"

    @server.tool(
        "needs_tasks",
        description="Needs the tasks extension.",
        required_capabilities={"extensions": {TASKS_EXTENSION: {}}},
    )
    def needs_tasks(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return "extended"

    @server.tool(
        "ask_name",
        description="Asks for a name.",
        input_schema={"type": "object", "properties": {"greeting": {"type": "string"}}},
    )
    def ask_name(arguments: dict[str, Any], ctx: ToolContext) -> str:
        answer = ctx.elicit("What is your name?", NAME_SCHEMA)
        content = answer.get("content") or {}
        return f"{arguments.get('greeting', 'Hello')}, {content.get('name')}!"

    @server.tool("ask_twice", description="Asks for a name, then for a confirmation.")
    def ask_twice(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        runs.append("start")
        first = ctx.elicit("What is your name?", NAME_SCHEMA)
        second = ctx.elicit("Are you sure?", CONFIRM_SCHEMA)
        return {"first": first, "second": second}

    @server.tool("explode", description="Always raises.")
    def explode(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise RuntimeError("boom")

    @server.prompt("hello", description="A greeting prompt.")
    def hello(arguments: dict[str, str], ctx: Any) -> str:
        return "Say hello."

    return server
