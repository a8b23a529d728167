"""Hypothesis fuzzing of request bodies through the WSGI app: every answer is a well-formed
JSON-RPC message or an empty 202, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskstore
from support.mcp import call_app, open_session
from taskstore.mcp import McpServer, ToolError
from taskstore.wsgi import McpWsgiApp

METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "nope",
    "",
]
TOOLS = ["echo", "crash", "fail", "nope", 7]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = (
    st.none()
    | st.booleans()
    | st.integers(-5, 2**40)
    | st.text(max_size=8)
    | st.floats(allow_nan=False)
)
task_params = st.fixed_dictionaries(
    {},
    optional={
        "taskId": st.text(max_size=40) | json_values,
        "cursor": st.text(max_size=20) | json_values,
        "result": json_values,
        "name": st.sampled_from(TOOLS) | json_values,
        "arguments": st.fixed_dictionaries({}, optional={"text": json_values}) | json_values,
        "task": st.fixed_dictionaries({}, optional={"ttl": json_values}) | json_values,
        "_meta": st.fixed_dictionaries({}, optional={"progressToken": json_values}) | json_values,
        "protocolVersion": st.sampled_from(["2025-11-25", "2024-11-05", "x"]) | json_values,
        "requestId": ids,
    },
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values,
        "id": ids,
        "method": st.sampled_from(METHODS) | json_values,
        "params": task_params | json_values,
        "result": json_values,
        "error": json_values,
    },
)
bodies = (
    st.binary(max_size=200)
    | messages.map(msgspec.json.encode)
    | st.lists(messages, max_size=3).map(msgspec.json.encode)
    | json_values.map(msgspec.json.encode)
)


@pytest.fixture(scope="module")
def fuzz_app() -> Iterator[tuple[McpWsgiApp, str]]:
    """An app whose tools all finish fast (a fuzzed tasks/result never blocks for long)."""
    with taskstore.open("memory://", poll_interval_ms=5, max_tasks_per_owner=None) as store:
        server = McpServer(store, result_timeout=5)

        @server.tool("echo", task_support="optional")
        def echo(arguments: dict[str, Any], ctx: Any) -> Any:
            return arguments.get("text")

        @server.tool("crash", task_support="optional")
        def crash(arguments: dict[str, Any], ctx: Any) -> Any:
            raise ValueError("fuzz")

        @server.tool("fail", task_support="required")
        def fail(arguments: dict[str, Any], ctx: Any) -> Any:
            raise ToolError("fuzz")

        app = McpWsgiApp(server, max_body_bytes=4096)
        yield app, open_session(app)
        app.close()
        server.close()


def check(reply: Any) -> None:
    assert reply.status in (200, 202, 400, 404, 413), reply.status
    if reply.status == 202:
        assert reply.body == b""
        return
    if reply.headers["content-type"] == "text/event-stream":
        chunks = [c for c in reply.chunks if c.startswith(b"event:")]
        message = msgspec.json.decode(chunks[-1].split(b"data: ", 1)[1])
    else:
        message = reply.json()
    assert isinstance(message, dict)
    assert message["jsonrpc"] == "2.0"
    assert "id" in message
    assert ("result" in message) != ("error" in message)
    if "error" in message:
        assert set(message["error"]) <= {"code", "message", "data"}
        assert isinstance(message["error"]["code"], int)
        assert isinstance(message["error"]["message"], str)
        assert "Traceback" not in message["error"]["message"]
    else:
        assert isinstance(message["result"], dict)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_fuzzed_bodies_with_a_session_are_well_formed(
    fuzz_app: tuple[McpWsgiApp, str], body: bytes
) -> None:
    """Any body posted on a live session gets well-formed JSON-RPC (or 202), never a 500."""
    app, session = fuzz_app
    check(call_app(app, body=body, headers={"Mcp-Session-Id": session}))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(["Mcp-Session-Id", "MCP-Protocol-Version", "Accept", "Content-Length"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
        max_size=3,
    ),
)
def test_fuzzed_bodies_and_headers_are_well_formed(
    fuzz_app: tuple[McpWsgiApp, str], body: bytes, headers: dict[str, str]
) -> None:
    """Fuzzed bodies with fuzzed transport headers still never produce a 500."""
    app, _ = fuzz_app
    reply = call_app(app, body=body, headers=headers)
    if (
        reply.status == 200
        and reply.headers.get("content-type") == "application/json"
        and "mcp-session-id" in reply.headers
    ):
        app.sessions.remove(reply.headers["mcp-session-id"])
    check(reply)
