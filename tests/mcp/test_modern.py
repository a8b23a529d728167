"""MCP 2026-07-28, transport-neutral (DESIGN §9c; /work/notes/modern-spec.md §1–§5): the era
decision, the eras' HTTP statuses, ModernService admission without headers, McpServer.handle in
the modern era, the signed requestState codec, and missing_capabilities."""

from __future__ import annotations

from typing import Any

import pytest

import taskstore
from support.modern import (
    CLIENT_INFO,
    META_CAPABILITIES,
    META_CLIENT_INFO,
    META_RELATED_TASK,
    META_SERVER_INFO,
    META_VERSION,
    MODERN,
    NAME_SCHEMA,
    TASKS_EXTENSION,
    build_modern_server,
    message,
    meta,
    params,
)
from taskstore import TaskStore
from taskstore.errors import InputRequired, MissingCapabilityError, ProtocolError
from taskstore.mcp import Caller, McpServer
from taskstore.mcp.context import InputRound, ToolContext
from taskstore.mcp.era import ERA_2025_11_25, ERA_2026_07_28, era_of
from taskstore.mcp.mrtr import KEY_ENV, RequestStateCodec
from taskstore.mcp.request import RequestContext
from taskstore.mcp.tools import missing_capabilities


@pytest.fixture
def mserver(mstore: TaskStore) -> Any:
    """A server with the modern-era test tools over ``mstore``."""
    made = build_modern_server(mstore)
    yield made
    made.close()


def modern_ctx(caller: Caller, headers: dict[str, str] | None = None) -> RequestContext:
    """A 2026-07-28 request context (``headers`` None: a transport without headers)."""
    return RequestContext(caller=caller, era=ERA_2026_07_28, headers=headers)


# -- era_of ------------------------------------------------------------------------------------

_V = {META_VERSION: MODERN}


@pytest.mark.parametrize(
    ("msg", "header", "modern"),
    [
        pytest.param(
            message("initialize", {"protocolVersion": "2025-11-25"}),
            None,
            False,
            id="legacy-initialize",
        ),
        pytest.param(message("tools/list"), None, False, id="no-params"),
        pytest.param(message("tools/list", {}), None, False, id="empty-params"),
        pytest.param(message("tools/list", {"_meta": {}}), None, False, id="empty-meta"),
        pytest.param(message("tools/list", {"_meta": _V}), None, True, id="meta-version"),
        pytest.param(
            message("tools/list", {"_meta": {META_CAPABILITIES: {}}}),
            None,
            True,
            id="meta-capabilities",
        ),
        pytest.param(
            message("tools/list", {"_meta": {META_CLIENT_INFO: CLIENT_INFO}}),
            None,
            True,
            id="meta-client-info",
        ),
        pytest.param(
            message("tools/list", {"_meta": {META_VERSION: None}}),
            None,
            True,
            id="meta-version-null",
        ),
        pytest.param(
            message("tools/list", {"_meta": {META_RELATED_TASK: {"taskId": "t"}}}),
            None,
            False,
            id="related-task-only",
        ),
        pytest.param(
            message("tools/list", {"_meta": {"progressToken": 1}}),
            None,
            False,
            id="progress-token-only",
        ),
        pytest.param(
            message("tools/list", {"_meta": {"io.modelcontextprotocol/logLevel": "info"}}),
            None,
            False,
            id="log-level-only",
        ),
        pytest.param(
            message("tools/list", {"_meta": [META_VERSION]}), None, False, id="meta-not-object"
        ),
        pytest.param(message("tools/list", [{"_meta": _V}]), None, False, id="params-not-object"),
        pytest.param(message("initialize", {"_meta": _V}), None, True, id="modern-initialize"),
        pytest.param(message("ping", {"_meta": _V}), None, True, id="modern-ping"),
        pytest.param(message("server/discover"), None, True, id="discover-bare"),
        pytest.param(
            message("server/discover", {}), "2025-11-25", True, id="discover-legacy-header"
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            None,
            False,
            id="legacy-notification",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"_meta": _V}},
            None,
            True,
            id="modern-notification",
        ),
        pytest.param(message("tools/list"), MODERN, True, id="header-modern"),
        pytest.param(message("tools/list"), "v999.0.0", True, id="header-unknown"),
        pytest.param(message("tools/list"), " 2026-07-28 ", True, id="header-padded"),
        pytest.param(message("tools/list"), "2025-11-25", False, id="header-2025-11-25"),
        pytest.param(message("tools/list"), "2025-06-18", False, id="header-2025-06-18"),
        pytest.param(message("tools/list"), "2025-03-26", False, id="header-2025-03-26"),
        pytest.param(message("tools/list"), "2024-11-05", False, id="header-2024-11-05"),
        pytest.param(message("tools/list"), " 2025-11-25 ", False, id="header-legacy-padded"),
        pytest.param(message("tools/list"), "", False, id="header-empty"),
        pytest.param(message("tools/list"), "   ", False, id="header-blank"),
        pytest.param(None, None, False, id="unparsable"),
        pytest.param(None, MODERN, True, id="unparsable-modern-header"),
        pytest.param([message("ping")], None, False, id="batch"),
        pytest.param([message("ping")], MODERN, True, id="batch-modern-header"),
        pytest.param("text", None, False, id="string"),
        pytest.param(42, "v1", True, id="number-unknown-header"),
    ],
)
def test_era_of(msg: Any, header: str | None, modern: bool) -> None:
    """era_of: modern for any per-request _meta key, a non-2025 header or server/discover;
    legacy for everything else (related-task, progressToken and logLevel alone included)."""
    assert era_of(msg, header) is (ERA_2026_07_28 if modern else ERA_2025_11_25)


def test_era_of_without_header_argument() -> None:
    """era_of's header is optional: a bare legacy request is legacy, a _meta one modern."""
    assert era_of(message("tools/list")) is ERA_2025_11_25
    assert era_of(message("tools/list", {"_meta": meta()})) is ERA_2026_07_28


def test_eras_are_distinct() -> None:
    """The two eras differ in name, sessions and projection."""
    assert (ERA_2025_11_25.name, ERA_2026_07_28.name) == ("2025-11-25", "2026-07-28")
    assert ERA_2025_11_25.sessions is True and ERA_2026_07_28.sessions is False
    assert ERA_2025_11_25.projection is not ERA_2026_07_28.projection


@pytest.mark.parametrize(
    ("reply", "modern_status"),
    [
        ({"result": {}}, 200),
        ({"error": {"code": -32700, "message": "x"}}, 400),
        ({"error": {"code": -32600, "message": "x"}}, 400),
        ({"error": {"code": -32602, "message": "x"}}, 400),
        ({"error": {"code": -32020, "message": "x"}}, 400),
        ({"error": {"code": -32021, "message": "x"}}, 400),
        ({"error": {"code": -32022, "message": "x"}}, 400),
        ({"error": {"code": -32601, "message": "x"}}, 404),
        ({"error": {"code": -32603, "message": "x"}}, 200),
        ({"error": {"code": "-32602", "message": "x"}}, 200),
        ({"error": "broken"}, 200),
    ],
)
def test_era_http_status(reply: dict[str, Any], modern_status: int) -> None:
    """Era.http_status: the modern era maps envelope errors to 400 and -32601 to 404; the
    legacy era answers every reply with 200."""
    assert ERA_2026_07_28.http_status(reply) == modern_status
    assert ERA_2025_11_25.http_status(reply) == 200


# -- ModernService.admit without headers ---------------------------------------------------------


def modern_service(server: McpServer) -> Any:
    """The server's 2026-07-28 service."""
    return server._eras[ERA_2026_07_28]


def test_admit_returns_the_request_capabilities(mserver: McpServer, alice: Caller) -> None:
    """admit hands back the context with the request's declared capabilities."""
    declared = {"sampling": {}, "extensions": {TASKS_EXTENSION: {}}}
    ctx = modern_service(mserver).admit("tools/list", params(None, declared), modern_ctx(alice))
    assert ctx.client_capabilities == declared
    assert ctx.caller is alice and ctx.era is ERA_2026_07_28


@pytest.mark.parametrize(
    "body_params",
    [
        pytest.param(None, id="no-params"),
        pytest.param({}, id="no-meta"),
        pytest.param({"_meta": None}, id="meta-null"),
        pytest.param({"_meta": {META_CAPABILITIES: {}}}, id="no-version"),
        pytest.param({"_meta": {META_VERSION: MODERN}}, id="no-capabilities"),
        pytest.param({"_meta": {META_VERSION: 2026, META_CAPABILITIES: {}}}, id="version-int"),
        pytest.param({"_meta": {META_VERSION: MODERN, META_CAPABILITIES: []}}, id="caps-list"),
    ],
)
def test_admit_without_headers_still_checks_meta(
    mserver: McpServer, alice: Caller, body_params: Any
) -> None:
    """Without headers (ctx.headers None) the _meta rules still apply: -32602."""
    with pytest.raises(ProtocolError) as raised:
        modern_service(mserver).admit("tools/list", body_params, modern_ctx(alice))
    assert raised.value.code == -32602


def test_admit_without_headers_still_checks_the_version(mserver: McpServer, alice: Caller) -> None:
    """Without headers an unsupported _meta version is -32022 with supported and requested."""
    with pytest.raises(ProtocolError) as raised:
        modern_service(mserver).admit("tools/list", params(version="v999.0.0"), modern_ctx(alice))
    assert raised.value.code == -32022
    assert raised.value.data == {"supported": [MODERN], "requested": "v999.0.0"}


def test_admit_without_headers_skips_header_rules(mserver: McpServer, alice: Caller) -> None:
    """Without headers, tools/call needs no Mcp-Method, Mcp-Name or MCP-Protocol-Version."""
    ctx = modern_service(mserver).admit(
        "tools/call", params({"name": "greet", "arguments": {}}), modern_ctx(alice)
    )
    assert ctx.client_capabilities == meta()[META_CAPABILITIES]


@pytest.mark.parametrize(
    ("method", "extra", "headers", "ok"),
    [
        ("tools/list", None, {}, False),
        ("tools/list", None, {"mcp-protocol-version": MODERN}, False),
        ("tools/list", None, {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}, True),
        (
            "tools/list",
            None,
            {"mcp-protocol-version": " 2026-07-28 ", "mcp-method": "tools/list"},
            True,
        ),
        (
            "tools/call",
            {"name": "greet"},
            {"mcp-protocol-version": MODERN, "mcp-method": "tools/call"},
            False,
        ),
        (
            "tools/call",
            {"name": "greet"},
            {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "greet"},
            True,
        ),
        (
            "tools/call",
            {"name": 5},
            {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "5"},
            False,
        ),
        (
            "prompts/get",
            {"name": "hello"},
            {"mcp-protocol-version": MODERN, "mcp-method": "prompts/get", "mcp-name": "hi"},
            False,
        ),
    ],
)
def test_admit_with_headers_checks_routing(
    mserver: McpServer,
    alice: Caller,
    method: str,
    extra: Any,
    headers: dict[str, str],
    ok: bool,
) -> None:
    """With headers (lower-case names), a missing or disagreeing routing header is -32020."""
    service = modern_service(mserver)
    ctx = modern_ctx(alice, headers)
    if ok:
        service.admit(method, params(extra), ctx)
        return
    with pytest.raises(ProtocolError) as raised:
        service.admit(method, params(extra), ctx)
    assert raised.value.code == -32020


def test_finish_adds_result_type_and_server_info(mserver: McpServer) -> None:
    """finish adds resultType complete (keeping one already set) and serverInfo in _meta,
    letting a result's own _meta keys win."""
    service = modern_service(mserver)
    info = {"name": "taskstore", "version": taskstore.__version__}
    assert service.finish({"x": 1}) == {
        "x": 1,
        "resultType": "complete",
        "_meta": {META_SERVER_INFO: info},
    }
    kept = service.finish({"resultType": "input_required", "_meta": {"k": "v"}})
    assert kept == {"resultType": "input_required", "_meta": {META_SERVER_INFO: info, "k": "v"}}
    own = service.finish({"_meta": {META_SERVER_INFO: {"name": "mine", "version": "1"}}})
    assert own["_meta"][META_SERVER_INFO] == {"name": "mine", "version": "1"}


# -- McpServer.handle in the modern era --------------------------------------------------------


def handle(
    server: McpServer,
    caller: Caller,
    method: str,
    body_params: Any = None,
    id: Any = 1,  # noqa: A002
) -> Any:
    """handle() one request as a header-less modern transport would."""
    return server.handle(message(method, body_params, id), modern_ctx(caller))


def test_handle_discover(mserver: McpServer, alice: Caller) -> None:
    """server/discover through handle answers the discover result with the id."""
    reply = handle(mserver, alice, "server/discover", params(), id="d1")
    assert reply["id"] == "d1"
    result = reply["result"]
    assert result["resultType"] == "complete"
    assert result["supportedVersions"] == [MODERN]
    assert result["_meta"][META_SERVER_INFO]["name"] == "taskstore"


def test_handle_tools_call_without_headers(mserver: McpServer, alice: Caller) -> None:
    """tools/call through handle without headers runs the tool inline."""
    reply = handle(mserver, alice, "tools/call", params({"name": "greet", "arguments": {}}))
    assert reply["result"]["content"] == [{"type": "text", "text": "Hello, World!"}]
    assert reply["result"]["resultType"] == "complete"


@pytest.mark.parametrize(
    "method",
    ["initialize", "ping", "tasks/list", "tasks/result", "logging/setLevel", "nope"],
)
def test_handle_unserved_methods(mserver: McpServer, alice: Caller, method: str) -> None:
    """Methods the modern era does not serve are -32601 through handle."""
    reply = handle(mserver, alice, method, params(), id=0)
    assert reply["id"] == 0
    assert reply["error"]["code"] == -32601


def test_handle_same_method_in_both_eras(mserver: McpServer, alice: Caller) -> None:
    """tools/list answers the legacy shape in the legacy era and the modern one in the modern
    era."""
    legacy = mserver.handle(message("tools/list"), RequestContext(caller=alice))
    assert set(legacy["result"]) == {"tools"}
    modern = handle(mserver, alice, "tools/list", params())
    assert modern["result"]["resultType"] == "complete"
    assert "execution" not in modern["result"]["tools"][0]


def test_handle_infers_the_era_without_a_context(mserver: McpServer, alice: Caller) -> None:
    """handle() without a ctx decides the era from the message: a _meta request is modern."""
    reply = mserver.handle(message("ping", params()), caller=alice)
    assert reply["error"]["code"] == -32601
    assert mserver.handle(message("ping"), caller=alice)["result"] == {}


def test_handle_modern_notification(mserver: McpServer, alice: Caller) -> None:
    """A modern notification returns no reply."""
    note = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": params({"requestId": 1}),
    }
    assert mserver.handle(note, modern_ctx(alice)) is None


def test_handle_missing_capability(mserver: McpServer, alice: Caller) -> None:
    """A tool whose required capability the request lacks is -32021 with the missing part."""
    reply = handle(
        mserver, alice, "tools/call", params({"name": "needs_sampling", "arguments": {}}, {})
    )
    assert reply["error"]["code"] == -32021
    assert reply["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


def test_handle_input_round_trip(mserver: McpServer, alice: Caller, bob: Caller) -> None:
    """An eliciting tool asks, and its retry by the same caller completes; another caller's
    retry is -32602."""
    first = handle(mserver, alice, "tools/call", params({"name": "ask_name", "arguments": {}}))
    asked = first["result"]
    assert asked["resultType"] == "input_required"
    (key,) = asked["inputRequests"]
    retry = params(
        {
            "name": "ask_name",
            "arguments": {},
            "inputResponses": {key: {"action": "accept", "content": {"name": "Ann"}}},
            "requestState": asked["requestState"],
        }
    )
    done = handle(mserver, alice, "tools/call", retry, id=2)
    assert done["result"]["content"] == [{"type": "text", "text": "Hello, Ann!"}]
    refused = handle(mserver, bob, "tools/call", retry, id=3)
    assert refused["error"]["code"] == -32602


def test_capabilities_of_one_request_do_not_leak(mserver: McpServer, alice: Caller) -> None:
    """The context admit returns is per request: the caller's next request starts without
    capabilities."""
    service = modern_service(mserver)
    base = modern_ctx(alice)
    admitted = service.admit("tools/list", params(None, {"sampling": {}}), base)
    assert admitted.client_capabilities == {"sampling": {}}
    assert base.client_capabilities is None
    again = service.admit("tools/list", params(None, {}), base)
    assert again.client_capabilities == {}


# -- RequestStateCodec -----------------------------------------------------------------------------


CALL = RequestStateCodec.call_digest("tools/call", "ask_name", {"greeting": "Hi"})
ALICE = RequestStateCodec.caller_digest("alice")


def test_codec_round_trip() -> None:
    """seal then open gives back the answers and the pending keys."""
    codec = RequestStateCodec(b"k" * 32)
    answers = {"elicitation-1": {"action": "accept", "content": {"name": "A"}}}
    token = codec.seal(CALL, ALICE, answers, ["elicitation-2"])
    assert isinstance(token, str) and token.count(".") == 1
    state = codec.open(token, CALL, ALICE)
    assert state.answers == answers
    assert list(state.pending) == ["elicitation-2"]
    assert (state.call, state.caller) == (CALL, ALICE)


def test_codec_str_and_bytes_keys_agree() -> None:
    """A text key signs like its UTF-8 bytes."""
    token = RequestStateCodec("sécret").seal(CALL, ALICE, {}, ["k"])
    assert RequestStateCodec("sécret".encode()).open(token, CALL, ALICE).pending == {"k": ""}


def test_codec_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a key, codecs use $TASKSTORE_REQUEST_STATE_KEY, so two processes agree."""
    monkeypatch.setenv(KEY_ENV, "from-env")
    token = RequestStateCodec().seal(CALL, ALICE, {}, ["k"])
    assert RequestStateCodec().open(token, CALL, ALICE).pending == {"k": ""}
    assert RequestStateCodec("from-env").open(token, CALL, ALICE).pending == {"k": ""}


def test_codec_random_keys_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any key, each codec signs with its own random key."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    token = RequestStateCodec().seal(CALL, ALICE, {}, [])
    with pytest.raises(ProtocolError) as raised:
        RequestStateCodec().open(token, CALL, ALICE)
    assert raised.value.code == -32602


@pytest.mark.parametrize("max_age_s", [0, -1, -3600])
def test_codec_expired_state_is_invalid_params(max_age_s: float) -> None:
    """A state past its age (max_age_s 0 or negative) is -32602 saying it expired."""
    import time

    codec = RequestStateCodec(b"k", max_age_s=max_age_s)
    token = codec.seal(CALL, ALICE, {}, ["k"])
    time.sleep(0.002)
    with pytest.raises(ProtocolError) as raised:
        codec.open(token, CALL, ALICE)
    assert raised.value.code == -32602
    assert "expired" in raised.value.message


def test_codec_wrong_key_is_invalid_params() -> None:
    """A state signed with another key is -32602."""
    token = RequestStateCodec(b"one").seal(CALL, ALICE, {}, ["k"])
    with pytest.raises(ProtocolError) as raised:
        RequestStateCodec(b"two").open(token, CALL, ALICE)
    assert raised.value.code == -32602


def test_codec_binds_call_and_caller() -> None:
    """A state opened for another call or another caller is -32602."""
    codec = RequestStateCodec(b"k")
    token = codec.seal(CALL, ALICE, {}, ["k"])
    other_call = RequestStateCodec.call_digest("tools/call", "ask_name", {"greeting": "Yo"})
    other_tool = RequestStateCodec.call_digest("tools/call", "other", {"greeting": "Hi"})
    bob = RequestStateCodec.caller_digest("bob")
    for call, caller in ((other_call, ALICE), (other_tool, ALICE), (CALL, bob)):
        with pytest.raises(ProtocolError) as raised:
            codec.open(token, call, caller)
        assert raised.value.code == -32602


def test_call_digest_is_canonical() -> None:
    """The call digest ignores argument key order and tells values, tools and methods apart."""
    digest = RequestStateCodec.call_digest
    assert digest("tools/call", "t", {"a": 1, "b": [1, 2]}) == digest(
        "tools/call", "t", {"b": [1, 2], "a": 1}
    )
    assert digest("tools/call", "t", {"a": 1}) != digest("tools/call", "t", {"a": "1"})
    assert digest("tools/call", "t", {}) != digest("prompts/get", "t", {})
    assert RequestStateCodec.caller_digest("a") != RequestStateCodec.caller_digest("b")


def _forge(codec_key: bytes, body: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return b64(body) + "." + b64(hmac.new(codec_key, body, hashlib.sha256).digest())


@pytest.mark.parametrize(
    "token",
    [
        None,
        42,
        "",
        "nodot",
        "a.b.c",
        "!!!.???",
        ".",
        "é.é",
        "x" * 2_000_000 + ".y",
        _forge(b"k", b"not json"),
        _forge(b"k", b'{"call": 1}'),
        _forge(b"k", b"[]"),
    ],
)
def test_codec_refuses_malformed_tokens(token: Any) -> None:
    """Anything but a well-formed, correctly signed state is -32602, never another error."""
    with pytest.raises(ProtocolError) as raised:
        RequestStateCodec(b"k").open(token, CALL, ALICE)
    assert raised.value.code == -32602


def test_codec_tampered_body_is_refused() -> None:
    """Re-encoding a state with changed answers, keeping the old signature, is -32602."""
    import base64
    import json

    codec = RequestStateCodec(b"k")
    token = codec.seal(CALL, ALICE, {"elicitation-1": {"action": "decline"}}, ["elicitation-2"])
    body_text, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(body_text + "=" * (-len(body_text) % 4)))
    body["answers"] = {"elicitation-1": {"action": "accept", "content": {"name": "M"}}}
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    with pytest.raises(ProtocolError) as raised:
        codec.open(forged + "." + signature, CALL, ALICE)
    assert raised.value.code == -32602


# -- missing_capabilities --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "declared", "missing"),
    [
        (None, None, {}),
        ({}, {"sampling": {}}, {}),
        ({"sampling": {}}, None, {"sampling": {}}),
        ({"sampling": {}}, {}, {"sampling": {}}),
        ({"sampling": {}}, {"sampling": {}}, {}),
        ({"sampling": {}}, {"sampling": {"tools": {}}}, {}),
        ({"sampling": {}}, {"sampling": True}, {"sampling": {}}),
        ({"sampling": {}}, {"sampling": None}, {"sampling": {}}),
        ({"sampling": {}, "elicitation": {}}, {"elicitation": {}}, {"sampling": {}}),
        ({"extensions": {TASKS_EXTENSION: {}}}, {}, {"extensions": {TASKS_EXTENSION: {}}}),
        (
            {"extensions": {TASKS_EXTENSION: {}}},
            {"extensions": {}},
            {"extensions": {TASKS_EXTENSION: {}}},
        ),
        (
            {"extensions": {TASKS_EXTENSION: {}}},
            {"extensions": {"other/ext": {}}},
            {"extensions": {TASKS_EXTENSION: {}}},
        ),
        (
            {"extensions": {TASKS_EXTENSION: {}}},
            {"extensions": {TASKS_EXTENSION: True}},
            {"extensions": {TASKS_EXTENSION: {}}},
        ),
        ({"extensions": {TASKS_EXTENSION: {}}}, {"extensions": {TASKS_EXTENSION: {}}}, {}),
        (
            {"extensions": {TASKS_EXTENSION: {}, "b/ext": {}}},
            {"extensions": {"b/ext": {}}},
            {"extensions": {TASKS_EXTENSION: {}}},
        ),
        (
            {"sampling": {}, "extensions": {TASKS_EXTENSION: {}}},
            {"extensions": {TASKS_EXTENSION: {}}},
            {"sampling": {}},
        ),
        ({"elicitation": {"form": {}}}, {"elicitation": {}}, {"elicitation": {"form": {}}}),
        ({"elicitation": {"form": {}}}, {"elicitation": {"form": {}, "url": {}}}, {}),
    ],
)
def test_missing_capabilities(required: Any, declared: Any, missing: dict[str, Any]) -> None:
    """missing_capabilities returns the part of the requirement the declaration lacks, key by
    key into nested objects (extensions)."""
    assert missing_capabilities(required, declared) == missing


def test_missing_capabilities_boolean_leaf_declared() -> None:
    """A nested boolean requirement (roots.listChanged: true) is met by the same declaration."""
    required = {"roots": {"listChanged": True}}
    assert missing_capabilities(required, {"roots": {"listChanged": True}}) == {}
    assert missing_capabilities(required, {"roots": {}}) == required


# -- ToolContext.elicit in a stateless round -------------------------------------------------------


def test_stateless_elicit_asks_with_numbered_keys() -> None:
    """Each elicitation of a run gets the next key; an unanswered one raises InputRequired with
    an elicitation/create request in form mode."""
    round_ = InputRound(
        answers={"elicitation-1": {"action": "accept", "content": {"name": "A"}}},
        capabilities={"elicitation": {}},
    )
    ctx = ToolContext("t", input_round=round_)
    assert ctx.elicit("First?", NAME_SCHEMA) == {"action": "accept", "content": {"name": "A"}}
    with pytest.raises(InputRequired) as raised:
        ctx.elicit("Second?", NAME_SCHEMA)
    assert raised.value.requests == {
        "elicitation-2": {
            "method": "elicitation/create",
            "params": {"mode": "form", "message": "Second?", "requestedSchema": NAME_SCHEMA},
        }
    }


def test_stateless_elicit_needs_the_capability() -> None:
    """Without the elicitation capability, an unanswered elicitation raises -32021 naming it."""
    ctx = ToolContext("t", input_round=InputRound(capabilities={"sampling": {}}))
    with pytest.raises(MissingCapabilityError) as raised:
        ctx.elicit("Name?", NAME_SCHEMA)
    assert raised.value.code == -32021
    assert raised.value.data == {"requiredCapabilities": {"elicitation": {}}}


def test_answered_elicit_needs_no_capability() -> None:
    """An elicitation already answered (from requestState) is returned without the capability
    check."""
    round_ = InputRound(answers={"elicitation-1": {"action": "decline"}})
    assert ToolContext("t", input_round=round_).elicit("Name?", NAME_SCHEMA) == {
        "action": "decline"
    }
