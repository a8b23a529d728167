"""MCP 2026-07-28 through the WSGI endpoint (DESIGN §9c; /work/notes/modern-spec.md §1–§5,
§9.2.1–9.2.2): era detection, envelope and routing-header rules in their pinned order,
``server/discover`` and the result envelope, per-request capabilities, multi-round-trip input
(SEP-2322), GET/DELETE, and a legacy session served beside stateless requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

import taskstore
from support.mcp import INIT_PARAMS, call_app, open_session
from support.modern import (
    ALL_CAPABILITIES,
    CONFIRM_SCHEMA,
    META_CAPABILITIES,
    META_CLIENT_INFO,
    META_RELATED_TASK,
    META_SERVER_INFO,
    META_VERSION,
    MODERN,
    NAME_SCHEMA,
    TASKS_EXTENSION,
    b64_sentinel,
    build_modern_server,
    headers,
    message,
    meta,
    params,
    post,
    tool_text,
)
from taskstore import TaskStore
from taskstore.mcp import Caller, McpServer
from taskstore.wsgi import McpWsgiApp, bearer_authenticator

NO_SESSION = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32600, "message": "Bad Request: Mcp-Session-Id header required"},
}


@pytest.fixture
def store() -> Iterator[TaskStore]:
    """An in-memory store polling fast."""
    made = taskstore.open("memory://", poll_interval_ms=20)
    yield made
    made.close()


@pytest.fixture
def server(store: TaskStore) -> Iterator[McpServer]:
    """A server with the modern-era test tools."""
    made = build_modern_server(store)
    yield made
    made.close()


@pytest.fixture
def app(server: McpServer) -> Iterator[McpWsgiApp]:
    """A loopback-protected app."""
    made = McpWsgiApp(server, loopback_only=True, keepalive_s=0.2)
    yield made
    made.close()


def error_of(reply: Any) -> tuple[int, int, Any]:
    """(HTTP status, JSON-RPC error code, echoed id) of an error reply."""
    body = reply.json()
    assert "result" not in body, body
    return reply.status, body["error"]["code"], body["id"]


def result_of(reply: Any) -> dict[str, Any]:
    """The result of a successful 200 reply."""
    assert reply.status == 200, reply.body
    body = reply.json()
    assert "error" not in body, body
    result: dict[str, Any] = body["result"]
    return result


def discover(app: McpWsgiApp) -> dict[str, Any]:
    """The server's ``server/discover`` result."""
    return result_of(post(app, "server/discover"))


# -- era detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "only_key",
    [META_VERSION, META_CAPABILITIES, META_CLIENT_INFO],
)
def test_any_per_request_meta_key_makes_a_request_modern(app: McpWsgiApp, only_key: str) -> None:
    """A session-less request whose _meta carries any one per-request key gets the modern
    -32602/400 for its incomplete envelope, not the legacy 'session required' refusal."""
    full = meta()
    body = message("tools/list", {"_meta": {only_key: full[only_key]}}, id=5)
    reply = call_app(app, body=body, headers={"Mcp-Method": "tools/list"})
    assert error_of(reply) == (400, -32602, 5)


@pytest.mark.parametrize("body_params", [None, {}, {"_meta": {}}])
def test_discover_without_meta_is_modern_invalid_params(app: McpWsgiApp, body_params: Any) -> None:
    """server/discover without _meta is modern (no header needed): -32602 with HTTP 400
    (probe 101)."""
    reply = call_app(app, body=message("server/discover", body_params, id=101))
    assert error_of(reply) == (400, -32602, 101)


@pytest.mark.parametrize("version", [MODERN, "v999.0.0", "2030-01-01"])
def test_non_legacy_protocol_header_makes_a_request_modern(app: McpWsgiApp, version: str) -> None:
    """A request without _meta but with a non-2025 MCP-Protocol-Version header is modern:
    -32602/400 with its id, not a session error."""
    reply = call_app(
        app, body=message("tools/list", {}, id="h"), headers=headers("tools/list", version=version)
    )
    assert error_of(reply) == (400, -32602, "h")


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"])
def test_legacy_protocol_header_without_session_stays_legacy(app: McpWsgiApp, version: str) -> None:
    """A session-less request with a 2025-era header and no modern markers is legacy: 400
    'Mcp-Session-Id header required'."""
    reply = call_app(app, body=message("tools/list", {}), headers={"MCP-Protocol-Version": version})
    assert reply.status == 400
    assert reply.json() == NO_SESSION


def test_legacy_initialize_and_session_are_unaffected(app: McpWsgiApp) -> None:
    """initialize opens a 2025-11-25 session whose replies keep the legacy shapes (no
    resultType, tools with execution.taskSupport)."""
    reply = call_app(app, body=message("initialize", INIT_PARAMS, id=0))
    assert reply.status == 200
    result = reply.json()["result"]
    assert set(result) == {"protocolVersion", "capabilities", "serverInfo"}
    assert result["protocolVersion"] == "2025-11-25"
    session = reply.headers["mcp-session-id"]
    listed = call_app(
        app,
        body=message("tools/list", id=1),
        headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"},
    )
    assert listed.status == 200
    tools = listed.json()["result"]
    assert set(tools) == {"tools"}
    assert all("execution" in tool for tool in tools["tools"])


def test_legacy_session_tolerates_an_older_legacy_header(app: McpWsgiApp) -> None:
    """A session negotiated at 2025-11-25 still answers a request sent with
    MCP-Protocol-Version 2025-03-26 (0.1.16's server-sse-multiple-streams, D7)."""
    session = open_session(app)
    reply = call_app(
        app,
        body=message("tools/list", {}, id=1000),
        headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-03-26"},
    )
    assert reply.status == 200
    assert set(reply.json()["result"]) == {"tools"}


def test_related_task_meta_does_not_make_a_request_modern(app: McpWsgiApp) -> None:
    """_meta holding only io.modelcontextprotocol/related-task stays legacy: without a session
    it is refused as legacy, in a session it is served as legacy."""
    body = message("tools/list", {"_meta": {META_RELATED_TASK: {"taskId": "t"}}}, id=3)
    refused = call_app(app, body=body)
    assert refused.status == 400
    assert refused.json() == NO_SESSION
    session = open_session(app)
    served = call_app(app, body=body, headers={"Mcp-Session-Id": session})
    assert served.status == 200
    assert set(served.json()["result"]) == {"tools"}


def test_unparsable_body_with_modern_header_is_400(app: McpWsgiApp) -> None:
    """A body that is not JSON, under a modern header, is -32700 with HTTP 400 and id null;
    without any modern marker it stays the legacy 200."""
    modern = call_app(app, body=b"{not json", headers={"MCP-Protocol-Version": MODERN})
    assert (modern.status, modern.json()) == (
        400,
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}},
    )
    legacy = call_app(app, body=b"{not json")
    assert (legacy.status, legacy.json()["error"]["code"]) == (200, -32700)


# -- envelope and header rules, in order ------------------------------------------------------

_NO_VERSION = {k: v for k, v in meta().items() if k != META_VERSION}
_NO_CAPABILITIES = {k: v for k, v in meta().items() if k != META_CAPABILITIES}


@pytest.mark.parametrize(
    "body_params",
    [
        pytest.param(None, id="no-params"),
        pytest.param({}, id="no-meta"),
        pytest.param({"_meta": _NO_VERSION}, id="no-version"),
        pytest.param({"_meta": _NO_CAPABILITIES}, id="no-capabilities"),
        pytest.param({"_meta": {**meta(), META_VERSION: 20260728}}, id="version-not-string"),
        pytest.param({"_meta": {**meta(), META_CAPABILITIES: ["sampling"]}}, id="caps-not-object"),
        pytest.param({"_meta": {**meta(), META_CAPABILITIES: None}}, id="caps-null"),
        pytest.param({"_meta": [meta()]}, id="meta-not-object"),
    ],
)
@pytest.mark.parametrize(
    "sent_headers",
    [
        pytest.param(headers("server/discover"), id="matching-headers"),
        pytest.param(headers("tools/list", version="v999.0.0"), id="mismatching-headers"),
        pytest.param({"MCP-Protocol-Version": MODERN}, id="no-method-header"),
    ],
)
def test_incomplete_meta_is_invalid_params_before_any_header_rule(
    app: McpWsgiApp, body_params: Any, sent_headers: dict[str, str]
) -> None:
    """A missing or ill-typed _meta, protocolVersion or clientCapabilities is -32602/400 even
    when the headers also disagree (probes 101, 102, 104: the envelope is checked first)."""
    reply = call_app(
        app, body=message("server/discover", body_params, id=102), headers=sent_headers
    )
    assert error_of(reply) == (400, -32602, 102)


def test_params_that_are_not_an_object_are_invalid_params(app: McpWsgiApp) -> None:
    """params given as an array on a modern request is -32602 with HTTP 400."""
    reply = call_app(
        app, body=message("server/discover", [meta()], id=9), headers=headers("server/discover")
    )
    assert error_of(reply) == (400, -32602, 9)


def test_client_info_is_optional(app: McpWsgiApp) -> None:
    """_meta with only protocolVersion and clientCapabilities is a valid request (probe 105)."""
    body = message("server/discover", {"_meta": meta({}, client_info=False)}, id=105)
    reply = call_app(app, body=body, headers=headers("server/discover"))
    assert result_of(reply)["resultType"] == "complete"


@pytest.mark.parametrize(
    ("meta_version", "header_version"),
    [
        pytest.param("v999.0.0", MODERN, id="probe-302"),
        pytest.param(MODERN, "v999.0.0", id="header-unknown"),
        pytest.param(MODERN, "2025-11-25", id="header-legacy"),
        pytest.param(MODERN, None, id="header-missing"),
        pytest.param(MODERN, "2026-07-29", id="header-other"),
    ],
)
def test_protocol_header_disagreeing_with_meta_is_header_mismatch(
    app: McpWsgiApp, meta_version: str, header_version: str | None
) -> None:
    """MCP-Protocol-Version missing or unequal to the _meta version is -32020/400, checked
    before the version's support (probe 302 must be -32020, not -32022)."""
    sent = {"Mcp-Method": "server/discover"}
    if header_version is not None:
        sent["MCP-Protocol-Version"] = header_version
    body = message("server/discover", params(version=meta_version), id=302)
    assert error_of(call_app(app, body=body, headers=sent)) == (400, -32020, 302)


@pytest.mark.parametrize("version", ["v999.0.0", "2025-11-25", "1900-01-01"])
def test_unsupported_version_is_32022_with_supported_and_requested(
    app: McpWsgiApp, version: str
) -> None:
    """Header and _meta agreeing on a version the modern path does not serve is -32022/400
    whose data lists exactly discover's supportedVersions and echoes the request (probe 301)."""
    supported = discover(app)["supportedVersions"]
    body = message("server/discover", params(version=version), id=301)
    reply = call_app(app, body=body, headers=headers("server/discover", version=version))
    assert error_of(reply) == (400, -32022, 301)
    assert reply.json()["error"]["data"] == {"supported": supported, "requested": version}


def test_unsupported_version_is_checked_before_method_headers(app: McpWsgiApp) -> None:
    """An unsupported version is -32022 even when Mcp-Method is missing (version before
    routing headers)."""
    body = message("tools/list", params(version="v999.0.0"), id=4)
    reply = call_app(app, body=body, headers={"MCP-Protocol-Version": "v999.0.0"})
    assert error_of(reply) == (400, -32022, 4)


@pytest.mark.parametrize(
    "method_header",
    [
        pytest.param(None, id="missing"),
        pytest.param("TOOLS/LIST", id="value-case"),
        pytest.param("Tools/List", id="value-mixed-case"),
        pytest.param("prompts/list", id="other-method"),
        pytest.param("", id="empty"),
    ],
)
def test_mcp_method_missing_or_different_is_header_mismatch(
    app: McpWsgiApp, method_header: str | None
) -> None:
    """Mcp-Method missing, empty, or differing from the body method (values are
    case-sensitive) is -32020/400."""
    sent = {"MCP-Protocol-Version": MODERN}
    if method_header is not None:
        sent["Mcp-Method"] = method_header
    reply = call_app(app, body=message("tools/list", params(), id=100), headers=sent)
    assert error_of(reply) == (400, -32020, 100)


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param({"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}, id="lower"),
        pytest.param({"MCP-PROTOCOL-VERSION": MODERN, "MCP-METHOD": "tools/list"}, id="upper"),
        pytest.param({"Mcp-Protocol-Version": MODERN, "mCp-MeThOd": "tools/list"}, id="mixed"),
    ],
)
def test_header_names_are_case_insensitive(app: McpWsgiApp, sent: dict[str, str]) -> None:
    """Routing header names in any case are accepted (sep-2243-header-name-case-insensitive)."""
    reply = call_app(app, body=message("tools/list", params()), headers=sent)
    assert result_of(reply)["resultType"] == "complete"


@pytest.mark.parametrize(
    "name_header",
    [
        pytest.param(None, id="missing"),
        pytest.param("wrong_tool_name", id="wrong"),
        pytest.param("GREET", id="value-case"),
        pytest.param("", id="empty"),
        pytest.param(b64_sentinel("echo"), id="base64-of-another-name"),
        pytest.param("=?base64?!!not-base64!!?=", id="base64-invalid"),
    ],
)
def test_mcp_name_missing_or_wrong_on_tools_call_is_header_mismatch(
    app: McpWsgiApp, name_header: str | None
) -> None:
    """tools/call whose Mcp-Name is missing or does not name params.name is -32020/400."""
    sent = headers("tools/call")
    if name_header is not None:
        sent["Mcp-Name"] = name_header
    body = message("tools/call", params({"name": "greet", "arguments": {}}), id=110)
    assert error_of(call_app(app, body=body, headers=sent)) == (400, -32020, 110)


@pytest.mark.parametrize(
    "name_header",
    [
        pytest.param("greet", id="plain"),
        pytest.param("  greet  ", id="surrounding-spaces"),
        pytest.param("\tgreet ", id="surrounding-tab"),
        pytest.param(b64_sentinel("greet"), id="base64-sentinel"),
    ],
)
def test_mcp_name_accepted_forms(app: McpWsgiApp, name_header: str) -> None:
    """Mcp-Name naming the tool plainly, with surrounding whitespace, or in the =?base64?…?=
    form is accepted (sep-2243-server-accepts-whitespace-header-value)."""
    sent = {**headers("tools/call"), "Mcp-Name": name_header}
    body = message("tools/call", params({"name": "greet", "arguments": {"name": "sep-2243"}}))
    result = result_of(call_app(app, body=body, headers=sent))
    assert tool_text(result) == "Hello, sep-2243!"


def test_base64_sentinel_carries_a_name_with_surrounding_spaces(
    app: McpWsgiApp, server: McpServer
) -> None:
    """A tool whose name a plain header cannot carry is routed by its base64 form."""
    server.add_tool(lambda arguments, ctx: "odd", name="odd name ✓", description="Odd.")
    sent = {**headers("tools/call"), "Mcp-Name": b64_sentinel("odd name ✓")}
    body = message("tools/call", params({"name": "odd name ✓", "arguments": {}}))
    assert tool_text(result_of(call_app(app, body=body, headers=sent))) == "odd"


@pytest.mark.parametrize("name_header", [None, "nope"])
def test_mcp_name_missing_or_wrong_on_prompts_get_is_header_mismatch(
    app: McpWsgiApp, name_header: str | None
) -> None:
    """prompts/get whose Mcp-Name is missing or does not name params.name is -32020/400."""
    sent = headers("prompts/get", name_header)
    body = message("prompts/get", params({"name": "hello"}), id=111)
    assert error_of(call_app(app, body=body, headers=sent)) == (400, -32020, 111)


def test_prompts_get_with_matching_name(app: McpWsgiApp) -> None:
    """prompts/get with a matching Mcp-Name answers the prompt with resultType complete."""
    result = result_of(post(app, "prompts/get", {"name": "hello"}))
    assert result["resultType"] == "complete"
    assert result["messages"] == [
        {"role": "user", "content": {"type": "text", "text": "Say hello."}}
    ]


def test_routing_headers_are_checked_before_dispatch(app: McpWsgiApp) -> None:
    """A tools/call announced as tasks/get, and an unknown method announced as another one,
    are -32020 (header checks precede the method lookup), not -32601."""
    body = message("tools/call", params({"name": "greet", "arguments": {}}), id=120)
    reply = call_app(app, body=body, headers=headers("tasks/get", "greet"))
    assert error_of(reply) == (400, -32020, 120)
    body = message("unknown/method", params(), id=121)
    reply = call_app(app, body=body, headers=headers("tools/list"))
    assert error_of(reply) == (400, -32020, 121)


def test_header_checks_precede_unknown_tool(app: McpWsgiApp) -> None:
    """tools/call of an unknown tool with a wrong Mcp-Name is -32020; with a matching one it
    is -32602 (method-specific errors come after the headers)."""
    body = message("tools/call", params({"name": "nope", "arguments": {}}), id=130)
    assert error_of(call_app(app, body=body, headers=headers("tools/call", "greet"))) == (
        400,
        -32020,
        130,
    )
    reply = call_app(app, body=body, headers=headers("tools/call", "nope"))
    assert error_of(reply)[1:] == (-32602, 130)


@pytest.mark.parametrize(
    "method",
    [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "resources/list",
        "tasks/result",
        "tasks/list",
        "unknown/method",
        "subscriptions/listen",
        "completion/complete",
    ],
)
def test_removed_and_unknown_methods_are_32601_with_404(app: McpWsgiApp, method: str) -> None:
    """A removed, unadvertised or unknown method sent with a full envelope and matching headers
    is -32601 with HTTP 404."""
    extra: dict[str, Any] = {}
    if method == "initialize":
        extra = dict(INIT_PARAMS)
    elif method == "tasks/result":
        extra = {"taskId": "tasks-conformance-isolation-probe"}
    reply = post(app, method, extra, id=500)
    assert error_of(reply) == (404, -32601, 500)


@pytest.mark.parametrize("request_id", ["abc", 7, 0, -1, ""])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-meta", (400, -32602)),
        ("header-mismatch", (400, -32020)),
        ("unsupported", (400, -32022)),
        ("unknown-method", (404, -32601)),
        ("missing-capability", (400, -32021)),
        ("tool-raised", (200, -32603)),
    ],
)
def test_every_error_echoes_the_request_id(
    app: McpWsgiApp, request_id: Any, case: str, expected: tuple[int, int]
) -> None:
    """Every modern error carries the request's id (string, integer, 0), on one JSON line."""
    if case == "missing-meta":
        reply = call_app(
            app, body=message("server/discover", {}, request_id), headers=headers("server/discover")
        )
    elif case == "header-mismatch":
        reply = call_app(
            app, body=message("tools/list", params(), request_id), headers=headers("prompts/list")
        )
    elif case == "unsupported":
        reply = call_app(
            app,
            body=message("tools/list", params(version="v9"), request_id),
            headers=headers("tools/list", version="v9"),
        )
    elif case == "unknown-method":
        reply = post(app, "unknown/method", id=request_id)
    elif case == "missing-capability":
        reply = post(
            app,
            "tools/call",
            {"name": "needs_sampling", "arguments": {}},
            capabilities={},
            id=request_id,
        )
    else:
        reply = post(app, "tools/call", {"name": "explode", "arguments": {}}, id=request_id)
    assert error_of(reply) == (*expected, request_id)
    assert reply.headers["content-type"] == "application/json"
    assert b"\n" not in reply.body.strip()


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        ("evil.example.com", "http://evil.example.com", 403),
        ("127.0.0.1:8000", "http://evil.example.com", 403),
        ("localhost:8000", "http://localhost:8000", 200),
        ("127.0.0.1:8000", None, 200),
    ],
)
def test_dns_rebinding_protection_covers_modern_requests(
    app: McpWsgiApp, host: str, origin: str | None, status: int
) -> None:
    """A loopback app refuses a modern server/discover with a foreign Host or Origin (403) and
    serves a loopback one (dns-rebinding-protection at 2026-07-28)."""
    sent = {**headers("server/discover"), "Host": host}
    if origin is not None:
        sent["Origin"] = origin
    reply = call_app(app, body=message("server/discover", params({}), id=1), headers=sent)
    assert reply.status == status


# -- server/discover and the result envelope -------------------------------------------------


def test_discover_result_shape(app: McpWsgiApp, server: McpServer) -> None:
    """server/discover answers exactly resultType, supportedVersions, capabilities, ttlMs,
    cacheScope and _meta with serverInfo {name, version}; no legacy capabilities.tasks."""
    result = discover(app)
    assert set(result) == {
        "resultType",
        "supportedVersions",
        "capabilities",
        "ttlMs",
        "cacheScope",
        "_meta",
    }
    assert result["resultType"] == "complete"
    assert result["supportedVersions"] == [MODERN]
    capabilities = result["capabilities"]
    assert capabilities["tools"] == {} and capabilities["prompts"] == {}
    assert "tasks" not in capabilities
    assert set(capabilities) <= {
        "tools",
        "prompts",
        "resources",
        "completions",
        "logging",
        "experimental",
        "extensions",
    }
    assert isinstance(result["ttlMs"], int) and result["ttlMs"] >= 0
    assert result["cacheScope"] in ("public", "private")
    assert result["_meta"] == {
        META_SERVER_INFO: {"name": "taskstore", "version": taskstore.__version__}
    }


def test_discover_carries_instructions_and_cache_ttl(store: TaskStore) -> None:
    """A server's instructions and cache_ttl_ms show in discover; the ttl also on the lists."""
    server = build_modern_server(store, instructions="Be nice.", cache_ttl_ms=5000, name="srv")
    app = McpWsgiApp(server)
    try:
        result = discover(app)
        assert result["instructions"] == "Be nice."
        assert result["ttlMs"] == 5000
        assert result["_meta"][META_SERVER_INFO]["name"] == "srv"
        assert result_of(post(app, "tools/list"))["ttlMs"] == 5000
        assert result_of(post(app, "prompts/list"))["ttlMs"] == 5000
    finally:
        app.close()
        server.close()


def test_discover_ignores_declared_capabilities(app: McpWsgiApp) -> None:
    """server/discover answers the same whatever capabilities the request declares."""
    with_all = discover(app)
    with_none = result_of(post(app, "server/discover", capabilities={}))
    assert with_all == with_none


@pytest.mark.parametrize("method", ["tools/list", "prompts/list"])
def test_lists_carry_result_type_and_cache_hints(app: McpWsgiApp, method: str) -> None:
    """tools/list and prompts/list carry resultType complete, an integer ttlMs ≥ 0 and a
    cacheScope of public or private."""
    result = result_of(post(app, method))
    key = method.split("/")[0]
    assert set(result) == {key, "resultType", "ttlMs", "cacheScope", "_meta"}
    assert result["resultType"] == "complete"
    assert type(result["ttlMs"]) is int and result["ttlMs"] >= 0
    assert result["cacheScope"] in ("public", "private")


def test_modern_tools_have_no_execution_key(app: McpWsgiApp) -> None:
    """Modern tools/list lists every tool with name, description and inputSchema, greet first,
    and never execution.taskSupport."""
    tools = result_of(post(app, "tools/list"))["tools"]
    assert tools[0]["name"] == "greet"
    for tool in tools:
        assert "execution" not in tool
        assert {"name", "description", "inputSchema"} <= set(tool)


def test_tools_call_result_has_result_type_complete(app: McpWsgiApp) -> None:
    """An inline tools/call result is the CallToolResult with resultType complete."""
    result = result_of(post(app, "tools/call", {"name": "greet", "arguments": {"name": "rt"}}))
    assert result["resultType"] == "complete"
    assert result["content"] == [{"type": "text", "text": "Hello, rt!"}]
    assert "taskId" not in result


def test_tool_errors_are_complete_results(app: McpWsgiApp, server: McpServer) -> None:
    """A tool's isError result is still resultType complete."""
    from taskstore.mcp import ToolError

    def refuse(arguments: dict[str, Any], ctx: Any) -> str:
        raise ToolError("no")

    server.add_tool(refuse, name="refuse", description="Refuses.")
    result = result_of(post(app, "tools/call", {"name": "refuse", "arguments": {}}))
    assert result["resultType"] == "complete"
    assert result["isError"] is True


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("server/discover", None),
        ("tools/list", None),
        ("prompts/list", None),
        ("tools/call", {"name": "greet", "arguments": {}}),
        ("tools/call", {"name": "ask_name", "arguments": {}}),
        ("tools/call", {"name": "needs_sampling", "arguments": {}}),
        ("unknown/method", None),
    ],
)
def test_replies_are_one_line_of_json_without_session(
    app: McpWsgiApp, method: str, extra: Any
) -> None:
    """Every modern reply is one compact JSON line, application/json, with no Mcp-Session-Id."""
    reply = post(app, method, extra, capabilities={"elicitation": {}})
    assert reply.headers["content-type"] == "application/json"
    assert "mcp-session-id" not in reply.headers
    assert b"\n" not in reply.body and b"\r" not in reply.body
    assert msgspec.json.decode(reply.body)["jsonrpc"] == "2.0"


def test_session_header_on_a_modern_request_is_ignored(app: McpWsgiApp, server: McpServer) -> None:
    """A modern request carrying an unknown or a live Mcp-Session-Id is served statelessly as
    the anonymous caller, and its reply names no session."""
    seen: list[Caller] = []
    server.add_tool_call_hook(lambda params, result, caller, task_id: seen.append(caller))
    live = open_session(app)
    for session_id in ("not-a-session", live):
        reply = post(
            app,
            "tools/call",
            {"name": "greet", "arguments": {}},
            more_headers={"Mcp-Session-Id": session_id},
        )
        assert tool_text(result_of(reply)) == "Hello, World!"
        assert "mcp-session-id" not in reply.headers
    assert [(caller.owner, caller.session_id) for caller in seen] == [("local", None)] * 2


# -- capabilities -----------------------------------------------------------------------------


def test_tool_needing_sampling_without_it_is_32021(app: McpWsgiApp) -> None:
    """A tool requiring sampling, called with clientCapabilities {}, is -32021/400 with
    data.requiredCapabilities {sampling: {}} (probe 401)."""
    reply = post(
        app, "tools/call", {"name": "needs_sampling", "arguments": {}}, capabilities={}, id=401
    )
    assert error_of(reply) == (400, -32021, 401)
    assert reply.json()["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


def test_tool_needing_sampling_with_it_runs(app: McpWsgiApp) -> None:
    """The same tool called with {sampling: {}} answers its result."""
    reply = post(
        app,
        "tools/call",
        {"name": "needs_sampling", "arguments": {}},
        capabilities={"sampling": {}},
    )
    assert tool_text(result_of(reply)) == "sampled"


def test_capabilities_count_for_one_request_only(app: McpWsgiApp) -> None:
    """A request declaring sampling does not let a later one without it through."""
    call = {"name": "needs_sampling", "arguments": {}}
    assert tool_text(result_of(post(app, "tools/call", call, capabilities={"sampling": {}})))
    reply = post(app, "tools/call", call, capabilities={"elicitation": {}}, id=2)
    assert error_of(reply) == (400, -32021, 2)
    assert reply.json()["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


def test_capability_declared_as_non_object_is_missing(app: McpWsgiApp) -> None:
    """sampling declared as true (not an object) does not count as declared."""
    reply = post(
        app,
        "tools/call",
        {"name": "needs_sampling", "arguments": {}},
        capabilities={"sampling": True},
    )
    assert error_of(reply)[:2] == (400, -32021)


@pytest.mark.parametrize("declared", [{}, {"extensions": {}}, {"extensions": {"other/ext": {}}}])
def test_nested_extension_requirement_names_the_extension(
    app: McpWsgiApp, declared: dict[str, Any]
) -> None:
    """A tool requiring the tasks extension, called without it, gets -32021 whose data names
    extensions[io.modelcontextprotocol/tasks]."""
    reply = post(app, "tools/call", {"name": "needs_tasks", "arguments": {}}, capabilities=declared)
    assert error_of(reply)[:2] == (400, -32021)
    assert reply.json()["error"]["data"] == {
        "requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}
    }


def test_nested_extension_requirement_met(app: McpWsgiApp) -> None:
    """The same tool runs once the request declares the extension."""
    reply = post(
        app,
        "tools/call",
        {"name": "needs_tasks", "arguments": {}},
        capabilities={"extensions": {TASKS_EXTENSION: {}}},
    )
    assert tool_text(result_of(reply)) == "extended"


# -- multi round-trip requests (SEP-2322) ------------------------------------------------------


def ask(
    app: McpWsgiApp,
    tool: str,
    arguments: dict[str, Any] | None = None,
    *,
    id: Any = 1,  # noqa: A002
    capabilities: dict[str, Any] | None = None,
    more_headers: dict[str, str] | None = None,
    **retry: Any,
) -> Any:
    """tools/call of ``tool`` with ``retry`` (inputResponses, requestState) as extra params."""
    extra = {"name": tool, "arguments": arguments or {}, **retry}
    return post(
        app, "tools/call", extra, id=id, capabilities=capabilities, more_headers=more_headers
    )


def flip(token: str, part: int) -> str:
    """``token`` with one character of its body (part 0) or signature (part 1) changed."""
    pieces = token.split(".")
    target = pieces[part]
    index = len(target) // 2
    pieces[part] = target[:index] + ("A" if target[index] != "A" else "B") + target[index + 1 :]
    return ".".join(pieces)


def test_eliciting_tool_answers_input_required(app: McpWsgiApp) -> None:
    """A tool that elicits answers InputRequiredResult: resultType, one elicitation/create
    request with message and requestedSchema, an opaque requestState, and nothing else."""
    result = result_of(ask(app, "ask_name"))
    assert set(result) == {"resultType", "inputRequests", "requestState", "_meta"}
    assert result["resultType"] == "input_required"
    assert isinstance(result["requestState"], str) and result["requestState"]
    ((key, request),) = result["inputRequests"].items()
    assert isinstance(key, str) and key
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "What is your name?"
    assert request["params"]["requestedSchema"] == NAME_SCHEMA
    assert set(request["params"]) <= {"mode", "message", "requestedSchema"}
    assert request["params"].get("mode", "form") == "form"


def test_retry_with_answer_completes(app: McpWsgiApp) -> None:
    """The retry (new id, inputResponses, echoed requestState) completes with the tool having
    seen the answer."""
    first = result_of(ask(app, "ask_name", id=1))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_name",
        id=2,
        inputResponses={key: {"action": "accept", "content": {"name": "Alice"}}},
        requestState=first["requestState"],
    )
    assert reply.json()["id"] == 2
    result = result_of(reply)
    assert result["resultType"] == "complete"
    assert tool_text(result) == "Hello, Alice!"
    assert "requestState" not in result and "inputRequests" not in result


def test_declined_answer_reaches_the_tool(app: McpWsgiApp) -> None:
    """A decline (no content) is handed to the tool as it came."""
    first = result_of(ask(app, "ask_twice"))
    (key,) = first["inputRequests"]
    second = result_of(
        ask(
            app,
            "ask_twice",
            id=2,
            inputResponses={key: {"action": "decline"}},
            requestState=first["requestState"],
        )
    )
    assert second["resultType"] == "input_required"
    (key2,) = second["inputRequests"]
    done = result_of(
        ask(
            app,
            "ask_twice",
            id=3,
            inputResponses={key2: {"action": "cancel"}},
            requestState=second["requestState"],
        )
    )
    assert done["structuredContent"] == {
        "first": {"action": "decline"},
        "second": {"action": "cancel"},
    }


def test_two_elicitations_take_two_rounds(app: McpWsgiApp, server: McpServer) -> None:
    """A tool eliciting twice needs two retries; the second carries only the second answer
    (the first travels in requestState), and the tool sees both."""
    first = result_of(ask(app, "ask_twice", id=1))
    (key1,) = first["inputRequests"]
    answer1 = {"action": "accept", "content": {"name": "Alice"}}
    second = result_of(
        ask(
            app,
            "ask_twice",
            id=2,
            inputResponses={key1: answer1},
            requestState=first["requestState"],
        )
    )
    assert second["resultType"] == "input_required"
    (key2,) = second["inputRequests"]
    assert key2 != key1
    assert second["inputRequests"][key2]["params"]["message"] == "Are you sure?"
    assert second["inputRequests"][key2]["params"]["requestedSchema"] == CONFIRM_SCHEMA
    assert second["requestState"] != first["requestState"]
    answer2 = {"action": "accept", "content": {"confirm": True}}
    done = result_of(
        ask(
            app,
            "ask_twice",
            id=3,
            inputResponses={key2: answer2},
            requestState=second["requestState"],
        )
    )
    assert done["resultType"] == "complete"
    assert done["structuredContent"] == {"first": answer1, "second": answer2}
    assert server.runs == ["start"] * 3  # type: ignore[attr-defined]


def test_answer_to_an_earlier_key_cannot_replace_a_sealed_one(app: McpWsgiApp) -> None:
    """On the second retry, a fresh answer to the first key is ignored: the sealed first
    answer stands."""
    first = result_of(ask(app, "ask_twice", id=1))
    (key1,) = first["inputRequests"]
    answer1 = {"action": "accept", "content": {"name": "Alice"}}
    second = result_of(
        ask(
            app,
            "ask_twice",
            id=2,
            inputResponses={key1: answer1},
            requestState=first["requestState"],
        )
    )
    (key2,) = second["inputRequests"]
    answer2 = {"action": "accept", "content": {"confirm": True}}
    forged = {"action": "accept", "content": {"name": "Mallory"}}
    done = result_of(
        ask(
            app,
            "ask_twice",
            id=3,
            inputResponses={key1: forged, key2: answer2},
            requestState=second["requestState"],
        )
    )
    assert done["structuredContent"] == {"first": answer1, "second": answer2}


@pytest.mark.parametrize("part", [0, 1], ids=["body", "signature"])
def test_tampered_request_state_is_invalid_params(app: McpWsgiApp, part: int) -> None:
    """A requestState with one character changed (in its body or its signature) is -32602."""
    first = result_of(ask(app, "ask_name"))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_name",
        id=2,
        inputResponses={key: {"action": "accept", "content": {"name": "Alice"}}},
        requestState=flip(first["requestState"], part),
    )
    assert error_of(reply) == (400, -32602, 2)


@pytest.mark.parametrize(
    "state",
    ["", "garbage", "a.b.c", "not base64!.sig", 42, {"state": 1}, ["x"]],
)
def test_malformed_request_state_is_invalid_params(app: McpWsgiApp, state: Any) -> None:
    """A requestState that is not a token this server issued (any type) is -32602."""
    reply = ask(
        app,
        "ask_name",
        id=3,
        inputResponses={"elicitation-1": {"action": "accept", "content": {"name": "A"}}},
        requestState=state,
    )
    assert error_of(reply) == (400, -32602, 3)


def test_request_state_of_other_arguments_is_invalid_params(app: McpWsgiApp) -> None:
    """A requestState issued for the same tool with other arguments is -32602."""
    first = result_of(ask(app, "ask_name", {"greeting": "Hello"}))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_name",
        {"greeting": "Hi"},
        id=2,
        inputResponses={key: {"action": "accept", "content": {"name": "Alice"}}},
        requestState=first["requestState"],
    )
    assert error_of(reply) == (400, -32602, 2)


def test_request_state_of_another_tool_is_invalid_params(app: McpWsgiApp) -> None:
    """A requestState issued for another tool is -32602."""
    first = result_of(ask(app, "ask_twice"))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_name",
        id=2,
        inputResponses={key: {"action": "accept", "content": {"name": "Alice"}}},
        requestState=first["requestState"],
    )
    assert error_of(reply) == (400, -32602, 2)


def test_request_state_of_another_caller_is_invalid_params(server: McpServer) -> None:
    """A requestState issued to one authenticated caller is -32602 for another, and still
    valid for its own."""
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"ta": "alice", "tb": "bob"}))
    try:
        first = result_of(ask(app, "ask_name", more_headers={"Authorization": "Bearer ta"}))
        (key,) = first["inputRequests"]
        retry = {
            "inputResponses": {key: {"action": "accept", "content": {"name": "Alice"}}},
            "requestState": first["requestState"],
        }
        stolen = ask(app, "ask_name", id=2, more_headers={"Authorization": "Bearer tb"}, **retry)
        assert error_of(stolen) == (400, -32602, 2)
        own = ask(app, "ask_name", id=3, more_headers={"Authorization": "Bearer ta"}, **retry)
        assert tool_text(result_of(own)) == "Hello, Alice!"
    finally:
        app.close()


def test_request_state_of_an_authenticated_caller_is_refused_anonymously(
    server: McpServer,
) -> None:
    """A requestState issued to an authenticated caller is -32602 for an anonymous one."""
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"ta": "alice"}, required=False))
    try:
        first = result_of(ask(app, "ask_name", more_headers={"Authorization": "Bearer ta"}))
        (key,) = first["inputRequests"]
        reply = ask(
            app,
            "ask_name",
            id=2,
            inputResponses={key: {"action": "accept", "content": {"name": "Alice"}}},
            requestState=first["requestState"],
        )
        assert error_of(reply) == (400, -32602, 2)
    finally:
        app.close()


def test_request_state_is_shared_by_servers_with_one_key(store: TaskStore) -> None:
    """A retry may reach another server process holding the same request_state_key; a server
    with another key refuses the state (-32602)."""
    made = [
        build_modern_server(store, request_state_key=key) for key in ("shared", "shared", "other")
    ]
    apps = [McpWsgiApp(each) for each in made]
    try:
        first = result_of(ask(apps[0], "ask_name"))
        (key,) = first["inputRequests"]
        retry = {
            "inputResponses": {key: {"action": "accept", "content": {"name": "Alice"}}},
            "requestState": first["requestState"],
        }
        assert tool_text(result_of(ask(apps[1], "ask_name", id=2, **retry))) == "Hello, Alice!"
        assert error_of(ask(apps[2], "ask_name", id=3, **retry)) == (400, -32602, 3)
    finally:
        for each_app, each_server in zip(apps, made, strict=True):
            each_app.close()
            each_server.close()


def test_unknown_input_response_keys_are_ignored(app: McpWsgiApp) -> None:
    """Extra keys in inputResponses, whatever their value, are ignored."""
    first = result_of(ask(app, "ask_name"))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_name",
        id=2,
        inputResponses={
            "unknown-key": {"ignored": True},
            "elicitation-99": "not even an object",
            key: {"action": "accept", "content": {"name": "Alice"}},
        },
        requestState=first["requestState"],
    )
    assert tool_text(result_of(reply)) == "Hello, Alice!"


def test_retry_without_the_awaited_answer_asks_again(app: McpWsgiApp) -> None:
    """A retry with the state but without an answer to the asked key gets a new
    InputRequiredResult for the same question, not an error."""
    first = result_of(ask(app, "ask_name"))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_name",
        id=2,
        inputResponses={"unknown-key": {"action": "accept"}},
        requestState=first["requestState"],
    )
    again = result_of(reply)
    assert again["resultType"] == "input_required"
    assert again["inputRequests"] == first["inputRequests"]
    assert set(again["inputRequests"]) == {key}


@pytest.mark.parametrize("responses", [["x"], "x", 3])
def test_input_responses_not_an_object_is_invalid_params(app: McpWsgiApp, responses: Any) -> None:
    """inputResponses that is not an object is -32602."""
    first = result_of(ask(app, "ask_name"))
    reply = ask(app, "ask_name", id=2, inputResponses=responses, requestState=first["requestState"])
    assert error_of(reply) == (400, -32602, 2)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("yes", id="string"),
        pytest.param(["accept"], id="array"),
        pytest.param({"content": {"name": "Alice"}}, id="no-action"),
        pytest.param({"action": "maybe"}, id="unknown-action"),
        pytest.param({"action": "accept", "content": "Alice"}, id="content-not-object"),
    ],
)
def test_malformed_answer_to_an_asked_key_is_invalid_params(app: McpWsgiApp, answer: Any) -> None:
    """An answer to an asked key that is not an ElicitResult is -32602 (spec §5: validate the
    shape of the responses, answer a JSON-RPC error for malformed ones)."""
    first = result_of(ask(app, "ask_name"))
    (key,) = first["inputRequests"]
    reply = ask(
        app, "ask_name", id=2, inputResponses={key: answer}, requestState=first["requestState"]
    )
    assert error_of(reply)[1:] == (-32602, 2)


@pytest.mark.parametrize("capabilities", [{}, {"sampling": {}}, {"elicitation": True}])
def test_eliciting_without_elicitation_capability_is_32021(
    app: McpWsgiApp, capabilities: dict[str, Any]
) -> None:
    """A client that does not declare elicitation, calling a tool that elicits, gets -32021
    with data.requiredCapabilities {elicitation: {}} (no inputRequests it cannot answer)."""
    reply = ask(app, "ask_name", id=7, capabilities=capabilities)
    assert error_of(reply) == (400, -32021, 7)
    assert reply.json()["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}


def test_elicitation_capability_is_needed_on_every_round(app: McpWsgiApp) -> None:
    """A retry that no longer declares elicitation, reaching a second question, gets -32021."""
    first = result_of(ask(app, "ask_twice", capabilities={"elicitation": {}}))
    (key,) = first["inputRequests"]
    reply = ask(
        app,
        "ask_twice",
        id=2,
        capabilities={},
        inputResponses={key: {"action": "accept", "content": {"name": "A"}}},
        requestState=first["requestState"],
    )
    assert error_of(reply) == (400, -32021, 2)


@pytest.mark.parametrize("tool", ["greet", "echo"])
def test_task_param_on_modern_tools_call_is_ignored(
    app: McpWsgiApp, server: McpServer, tool: str
) -> None:
    """The legacy task param on a modern tools/call is ignored: an inline complete result, no
    taskId, no task created (for a forbidden and an optional tool alike)."""
    created: list[Any] = []
    server.add_tool_call_hook(lambda params, result, caller, task_id: created.append(task_id))
    arguments = {"name": "legacy-hint"} if tool == "greet" else {"text": "legacy-hint"}
    reply = post(
        app,
        "tools/call",
        {"name": tool, "arguments": arguments, "task": {"ttl": 60000, "pollInterval": 100}},
    )
    result = result_of(reply)
    assert result["resultType"] == "complete"
    assert "taskId" not in result and "task" not in result
    assert "legacy-hint" in tool_text(result)
    assert created == [None]


# -- GET and DELETE --------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["GET", "DELETE"])
@pytest.mark.parametrize(
    "sent",
    [
        pytest.param({}, id="bare"),
        pytest.param({"MCP-Protocol-Version": MODERN}, id="modern-header"),
    ],
)
def test_get_and_delete_without_session_are_405(
    app: McpWsgiApp, verb: str, sent: dict[str, str]
) -> None:
    """GET and DELETE without Mcp-Session-Id answer 405 with Allow: POST."""
    reply = call_app(app, verb, headers=sent)
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"


def test_legacy_get_and_delete_with_a_session_still_work(app: McpWsgiApp) -> None:
    """With a session, GET opens its SSE stream and DELETE ends it (later requests 404)."""
    session = open_session(app)
    stream = call_app(
        app, "GET", headers={"Mcp-Session-Id": session, "Accept": "text/event-stream"}
    )
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert next(stream.chunks) == b": stream open\n\n"
    stream.chunks.close()  # type: ignore[attr-defined]
    assert call_app(app, "DELETE", headers={"Mcp-Session-Id": session}).status == 200
    after = call_app(app, body=message("ping"), headers={"Mcp-Session-Id": session})
    assert after.status == 404


# -- both eras on one app --------------------------------------------------------------------


def legacy_call(
    app: McpWsgiApp,
    session: str,
    method: str,
    body_params: Any = None,
    id: Any = 1,  # noqa: A002
) -> Any:
    """One legacy request in ``session``."""
    return call_app(
        app,
        body=message(method, body_params, id),
        headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"},
    )


QUOTA_ERROR = {
    "code": -32010,
    "message": "Task quota exceeded: at most 1 live tasks per owner; retry when some have "
    "ended or expired",
    "data": {"limit": 1},
}


@pytest.mark.parametrize("era", ["2025-11-25", MODERN])
def test_quota_rejection_reaches_the_client_unchanged(era: str) -> None:
    """A task-augmented tools/call over the owner's quota is answered, in either era, with
    the quota error as the store made it (-32010, the limit, the retry hint; not -32603),
    HTTP 200 (not an envelope error) and the request's id."""
    store = taskstore.open("memory://", max_tasks_per_owner=1, allow_anonymous=True)
    server = build_modern_server(store)
    app = McpWsgiApp(server, loopback_only=True)
    try:
        if era == MODERN:
            tasks = {**ALL_CAPABILITIES, "extensions": {TASKS_EXTENSION: {}}}

            def create(id: int) -> Any:  # noqa: A002
                return post(
                    app,
                    "tools/call",
                    {"name": "echo", "arguments": {"text": "x"}},
                    capabilities=tasks,
                    id=id,
                )

        else:
            session = open_session(app)

            def create(id: int) -> Any:  # noqa: A002
                call = {"name": "echo", "arguments": {"text": "x"}, "task": {}}
                return legacy_call(app, session, "tools/call", call, id)

        first = create(1)
        assert first.status == 200 and "result" in first.json(), first.body
        refused = create(2)
        assert refused.status == 200
        assert refused.json() == {"jsonrpc": "2.0", "id": 2, "error": QUOTA_ERROR}
    finally:
        app.close()
        server.close()
        store.close()


def check_legacy_reply(method: str, reply: Any) -> None:
    """A legacy reply has none of the modern envelope."""
    assert reply.status == 200, reply.body
    assert "mcp-session-id" not in reply.headers
    result = reply.json()["result"]
    assert "resultType" not in result and "ttlMs" not in result and "cacheScope" not in result
    assert META_SERVER_INFO not in (result.get("_meta") or {})
    if method == "ping":
        assert result == {}
    elif method == "tools/list":
        assert set(result) == {"tools"}
        assert all("execution" in tool for tool in result["tools"])
    elif method == "tools/call":
        assert result == {"content": [{"type": "text", "text": "Hello, legacy!"}], "isError": False}


def check_modern_reply(method: str, reply: Any) -> None:
    """A modern reply has the modern envelope."""
    result = result_of(reply)
    assert result["resultType"] == "complete"
    assert result["_meta"][META_SERVER_INFO]["name"] == "taskstore"
    if method == "tools/list":
        assert all("execution" not in tool for tool in result["tools"])


def test_eras_interleave_sequentially(app: McpWsgiApp) -> None:
    """Alternating legacy session requests and modern requests on one app: legacy replies keep
    their shapes (ping exactly {}), modern ones always carry resultType."""
    session = open_session(app)
    for round_ in range(3):
        for method, extra in (
            ("ping", None),
            ("tools/list", None),
            ("tools/call", {"name": "greet", "arguments": {"name": "legacy"}}),
        ):
            check_legacy_reply(method, legacy_call(app, session, method, extra, id=round_))
            modern_extra = extra if method != "ping" else None
            modern_method = "server/discover" if method == "ping" else method
            check_modern_reply(modern_method, post(app, modern_method, modern_extra, id=round_))


def test_eras_interleave_on_threads(app: McpWsgiApp) -> None:
    """Legacy and modern requests from many threads at once never borrow each other's
    envelope."""
    sessions = [open_session(app) for _ in range(4)]
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def legacy_worker(session: str) -> None:
        try:
            start.wait(5)
            for i in range(15):
                method = ("ping", "tools/list", "tools/call")[i % 3]
                extra = {"name": "greet", "arguments": {"name": "legacy"}} if i % 3 == 2 else None
                check_legacy_reply(method, legacy_call(app, session, method, extra, id=i))
        except BaseException as exc:
            failures.append(exc)

    def modern_worker() -> None:
        try:
            start.wait(5)
            for i in range(15):
                method = ("server/discover", "tools/list", "tools/call")[i % 3]
                extra = {"name": "greet", "arguments": {}} if i % 3 == 2 else None
                check_modern_reply(method, post(app, method, extra, id=i))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=legacy_worker, args=(s,)) for s in sessions]
    threads += [threading.Thread(target=modern_worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


def test_legacy_task_is_not_visible_to_an_anonymous_modern_caller(
    app: McpWsgiApp, store: TaskStore
) -> None:
    """A task created in a legacy session is not served to a modern anonymous tasks/get, even
    one presenting that session's id: -32602 (foreign task) when the server offers the tasks
    extension, else -32601 (method not served)."""
    session = open_session(app)
    created = legacy_call(
        app, session, "tools/call", {"name": "echo", "arguments": {"text": "x"}, "task": {}}
    )
    task_id = created.json()["result"]["task"]["taskId"]
    assert store.get(task_id, session).owner == session
    offers_tasks = TASKS_EXTENSION in discover(app)["capabilities"].get("extensions", {})
    expected = (400, -32602) if offers_tasks else (404, -32601)
    for more in ({}, {"Mcp-Session-Id": session}):
        reply = post(
            app,
            "tasks/get",
            {"taskId": task_id},
            capabilities={**ALL_CAPABILITIES, "extensions": {TASKS_EXTENSION: {}}},
            name=task_id,
            more_headers=more,
            id="g",
        )
        assert error_of(reply) == (*expected, "g")
        assert '"status"' not in reply.body.decode()


def test_legacy_reply_never_gains_modern_meta(app: McpWsgiApp) -> None:
    """A legacy tools/call whose params carry a progress token and related-task _meta is
    answered without resultType or serverInfo."""
    session = open_session(app)
    reply = legacy_call(
        app,
        session,
        "tools/call",
        {
            "name": "greet",
            "arguments": {"name": "legacy"},
            "_meta": {"progressToken": "p", META_RELATED_TASK: {"taskId": "t"}},
        },
    )
    check_legacy_reply("tools/call", reply)


# -- notifications ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["notifications/cancelled", "notifications/progress", "notifications/whatever"]
)
def test_modern_notifications_get_202_and_no_body(app: McpWsgiApp, method: str) -> None:
    """A notification (no id) with a modern envelope is answered 202 with an empty body and no
    session."""
    body = {"jsonrpc": "2.0", "method": method, "params": params({"requestId": 1})}
    reply = call_app(app, body=body, headers=headers(method))
    assert (reply.status, reply.body) == (202, b"")
    assert "mcp-session-id" not in reply.headers
