"""Hypothesis fuzzing of request bodies (and transport headers) through the WSGI app.

Each answer is checked against what the input class calls for (``expect``): the HTTP status,
the JSON-RPC error code or a result, the echoed request id, a session header only for a
successful ``initialize``; never a 500 or a traceback; and the server still answers a valid
request afterwards. Bodies include documents nested up to 100,000 levels deep (the endpoint's
limit is 512) and ``Accept`` headers of every kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import taskstore
from support.mcp import WsgiResponse, call_app, open_session
from taskstore.mcp import McpServer, ToolError
from taskstore.mcp.capabilities import SUPPORTED_PROTOCOL_VERSIONS
from taskstore.wsgi import McpWsgiApp

# Large enough for a document nested 100,000 levels deep (6 bytes a level at most).
MAX_BODY_BYTES = 1024 * 1024
# The endpoint's documented nesting limit (arrays and objects count one level each).
MAX_DEPTH = 512
# The JSON-RPC 2.0 codes, spelled out here rather than imported from the code under test.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
UNSUPPORTED_VERSION = -32022
MODERN = "2026-07-28"
MODERN_META_KEYS = (
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
)
# HTTP statuses of MCP 2026-07-28 errors (others: 200).
MODERN_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CAPABILITY: 400,
    UNSUPPORTED_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

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
    "server/discover",
    "tasks/update",
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
#: Envelopes that are right, so the methods' own answers get fuzzed too.
requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(-5, 2**40) | st.text(max_size=8),
        "method": st.sampled_from(METHODS),
    },
    optional={"params": task_params | json_values},
)


def _nested(depth: int, kind: str) -> bytes:
    """A JSON value nested ``depth`` levels deep: arrays, objects, or both alternating."""
    if kind == "array":
        return b"[" * depth + b'"x"' + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    pairs, odd = divmod(depth, 2)
    opened = b'[{"a":' * pairs + b"[" * odd
    return opened + b"null" + b"]" * odd + b"}]" * pairs


def _deep_body(depth: int, kind: str, shape: str, method: str, task: bool) -> bytes:
    """A body whose nesting is ``depth`` levels (plus the envelope, for ``request``)."""
    value = _nested(depth, kind)
    if shape == "bare":
        return value
    if shape == "unclosed":
        return value[: len(value) // 2]
    params = b'{"name":"echo","arguments":{"text":' + value + b"}"
    params += b',"task":{"ttl":60000}}' if task else b"}"
    return b'{"jsonrpc":"2.0","id":7,"method":"' + method.encode() + b'","params":' + params + b"}"


#: Deeply nested documents: bare, unclosed, or inside a request's arguments; depths anywhere up
#: to 100,000 levels, with many around the limit.
deep_bodies = st.builds(
    _deep_body,
    depth=st.integers(0, 100_000) | st.integers(MAX_DEPTH - 6, MAX_DEPTH + 3) | st.integers(0, 40),
    kind=st.sampled_from(["array", "object", "mixed"]),
    shape=st.sampled_from(["bare", "unclosed", "request", "request"]),
    method=st.sampled_from(["tools/call", "tools/call", "tasks/get", "ping", "initialize"]),
    task=st.booleans(),
)
bodies = (
    st.binary(max_size=200)
    | messages.map(msgspec.json.encode)
    | requests.map(msgspec.json.encode)
    | st.lists(messages, max_size=3).map(msgspec.json.encode)
    | json_values.map(msgspec.json.encode)
    | deep_bodies
)
#: Accept headers a client may send, acceptable or not.
ACCEPTS = [
    "",
    " ",
    "*/*",
    "application/*",
    "application/json",
    "text/event-stream",
    "text/*",
    "text/html",
    "application/xml, text/plain",
    "application/json;q=0",
    "application/json;q=0, */*;q=0.1",
    "*/*;q=0",
    "text/event-stream;q=0.5, application/json;q=0",
    "Application/JSON;Q=0.001",
    "application/json;q=2",
    "application/json;q=0.0001, text/*;q=0",
    "application/json, text/event-stream;q=0",
    "*/json",
]
header_values = (
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
    | st.sampled_from(ACCEPTS)
    | st.integers(-1, 2 * MAX_BODY_BYTES).map(str)
)


modern_meta = st.fixed_dictionaries(
    {},
    optional={
        "io.modelcontextprotocol/protocolVersion": st.sampled_from([MODERN, "2025-11-25", "v9"])
        | json_values,
        "io.modelcontextprotocol/clientCapabilities": st.fixed_dictionaries(
            {}, optional={"sampling": st.just({}), "elicitation": st.just({})}
        )
        | json_values,
        "io.modelcontextprotocol/clientInfo": json_values,
        "progressToken": json_values,
    },
)
modern_params = st.fixed_dictionaries(
    {},
    optional={
        "_meta": modern_meta | json_values,
        "name": st.sampled_from(TOOLS) | json_values,
        "arguments": st.fixed_dictionaries({}, optional={"text": json_values}) | json_values,
        "taskId": st.text(max_size=20) | json_values,
        "requestState": st.text(max_size=20) | json_values,
        "inputResponses": json_values,
        "task": json_values,
    },
)
#: 2026-07-28 requests, mostly well-formed, with routing headers right, wrong or missing.
modern_requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]),
        "id": st.integers(-5, 2**40) | st.text(max_size=8),
        "method": st.sampled_from(METHODS),
        "params": modern_params,
    }
)
routing = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["same", "same", "same", MODERN, "2025-11-25", " v9 "]),
        "method": st.sampled_from(["same", "same", "same", "tools/list", "TOOLS/LIST"]),
        "name": st.sampled_from(["same", "same", " same ", "echo", "other"]),
    },
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

        app = McpWsgiApp(server, max_body_bytes=MAX_BODY_BYTES)
        yield app, open_session(app)
        app.close()
        server.close()


@dataclass(frozen=True)
class Expected:
    """What the endpoint must answer: HTTP status, and for a JSON-RPC reply its id, the error
    codes allowed, whether a result is allowed, and whether a new session comes with it."""

    status: int
    reply_id: Any = None
    codes: frozenset[int] = frozenset()
    result: bool = False
    new_session: bool = False


def _error(code: int, reply_id: Any = None, status: int = 200) -> Expected:
    return Expected(status, reply_id, frozenset({code}))


def _valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _expect_request(method: str, reply_id: Any, params: dict[str, Any] | None) -> Expected:
    """A well-formed request (jsonrpc 2.0, a valid id, object or absent params); no fuzzed
    task id or cursor can name a real task, and no prompt is registered."""
    if method == "initialize":
        if not isinstance((params or {}).get("protocolVersion"), str):
            return _error(INVALID_PARAMS, reply_id)
        return Expected(200, reply_id, result=True, new_session=True)
    if method in ("ping", "tools/list", "prompts/list"):
        return Expected(200, reply_id, result=True)
    if method in ("tasks/get", "tasks/result", "tasks/cancel", "prompts/get"):
        return _error(INVALID_PARAMS, reply_id)
    if method == "tasks/list":  # a page, or -32602 for a bad cursor or _meta
        return Expected(200, reply_id, frozenset({INVALID_PARAMS}), result=True)
    if method == "tools/call":  # created/answered, or bad params, wrong taskSupport, a crash
        codes = frozenset({INVALID_PARAMS, METHOD_NOT_FOUND, INTERNAL_ERROR})
        return Expected(200, reply_id, codes, result=True)
    return _error(METHOD_NOT_FOUND, reply_id)


def _expect_message(message: dict[str, Any], reply_id: Any) -> Expected:
    """A JSON object posted on a live session (JSON-RPC envelope rules, then the method)."""
    if message.get("jsonrpc") != "2.0":
        return _error(INVALID_REQUEST, reply_id)
    method = message.get("method")
    if method is None and reply_id is not None and ("result" in message or "error" in message):
        return Expected(202)  # a client's response to a server request
    if not isinstance(method, str):
        return _error(INVALID_REQUEST, reply_id)
    if "id" not in message:
        return Expected(202)  # a notification
    if reply_id is None:
        return _error(INVALID_REQUEST)
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return _error(INVALID_PARAMS, reply_id)
    return _expect_request(method, reply_id, params)


def _modern_error(code: int, reply_id: Any = None) -> Expected:
    return Expected(MODERN_STATUS.get(code, 200), reply_id, frozenset({code}))


def _is_modern(message: object, version_header: str | None) -> bool:
    """The era rule of DESIGN §9c as the conformance suite pins it down."""
    if isinstance(message, dict):
        if message.get("method") == "server/discover":
            return True
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and any(key in meta for key in MODERN_META_KEYS):
            return True
    version = (version_header or "").strip()
    return bool(version) and version not in SUPPORTED_PROTOCOL_VERSIONS


def _expect_modern(message: dict[str, Any], headers: Mapping[str, str]) -> Expected:
    """A 2026-07-28 request: the JSON-RPC envelope, then ``_meta``, the version header, the
    version, the routing headers, and only then the method."""
    reply_id = message["id"] if _valid_id(message.get("id")) else None
    if message.get("jsonrpc") != "2.0":
        return _modern_error(INVALID_REQUEST, reply_id)
    method = message.get("method")
    if method is None and reply_id is not None and ("result" in message or "error" in message):
        return Expected(202)
    if not isinstance(method, str):
        return _modern_error(INVALID_REQUEST, reply_id)
    if "id" not in message:
        return Expected(202)
    if reply_id is None:
        return _modern_error(INVALID_REQUEST)
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return _modern_error(INVALID_PARAMS, reply_id)
    meta = (params or {}).get("_meta")
    if not isinstance(meta, dict):
        return _modern_error(INVALID_PARAMS, reply_id)
    version = meta.get("io.modelcontextprotocol/protocolVersion")
    capabilities = meta.get("io.modelcontextprotocol/clientCapabilities")
    if not isinstance(version, str) or not isinstance(capabilities, dict):
        return _modern_error(INVALID_PARAMS, reply_id)
    header_version = headers.get("MCP-Protocol-Version")
    if header_version is None or header_version.strip() != version:
        return _modern_error(HEADER_MISMATCH, reply_id)
    if version != MODERN:
        return _modern_error(UNSUPPORTED_VERSION, reply_id)
    header_method = headers.get("Mcp-Method")
    if header_method is None or header_method.strip() != method:
        return _modern_error(HEADER_MISMATCH, reply_id)
    if method in ("tools/call", "prompts/get"):
        name = headers.get("Mcp-Name")
        if name is None or name.strip() != params.get("name"):
            return _modern_error(HEADER_MISMATCH, reply_id)
    if method in ("tasks/get", "tasks/update", "tasks/cancel"):
        # Optional here, but when sent it must name the task (still a routing check, before
        # the extension's gate).
        name = headers.get("Mcp-Name")
        if name is not None and name.strip() != params.get("taskId"):
            return _modern_error(HEADER_MISMATCH, reply_id)
    if method in ("server/discover", "tools/list", "prompts/list"):
        return Expected(200, reply_id, result=True)
    if method == "prompts/get":  # no prompt is registered
        return _modern_error(INVALID_PARAMS, reply_id)
    if method == "tools/call":  # answered, bad params or requestState, a crash
        return Expected(
            200, reply_id, frozenset({INVALID_PARAMS, INTERNAL_ERROR}), result=True
        )
    if method in ("tasks/get", "tasks/update", "tasks/cancel"):
        # The tasks extension's methods: gated by its declaration before anything else
        # (-32021), then the fuzzed task ids name no task (-32602).
        extensions = capabilities.get("extensions")
        if not isinstance(extensions, dict) or not isinstance(
            extensions.get(TASKS_EXTENSION), dict
        ):
            return _modern_error(MISSING_CAPABILITY, reply_id)
        return _modern_error(INVALID_PARAMS, reply_id)
    return _modern_error(METHOD_NOT_FOUND, reply_id)


_MEDIA_RANGE = re.compile(r"[^\s/]+/[^\s/]+")
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def accept_weights(accept: str) -> dict[str, float]:
    """Media range -> its highest weight, for the well-formed ranges of an Accept header
    (``type/subtype``, ``type/*`` or ``*/*``; a malformed ``q`` drops the range)."""
    weights: dict[str, float] = {}
    for element in accept.split(","):
        media, *parameters = (part.strip() for part in element.split(";"))
        media = media.lower()
        if not _MEDIA_RANGE.fullmatch(media) or (media.startswith("*/") and media != "*/*"):
            continue
        weight: float | None = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                weight = float(value.strip()) if _QVALUE.fullmatch(value.strip()) else None
                if weight is None:
                    break
        if weight is not None:
            weights[media] = max(weight, weights.get(media, 0.0))
    return weights


def accept_admits(accept: str, media: str) -> bool:
    """RFC 9110: the most specific ranges matching ``media`` decide; a weight of 0 refuses."""
    weights = accept_weights(accept)
    for candidate in (media, media.split("/")[0] + "/*", "*/*"):
        if candidate in weights:
            return weights[candidate] > 0
    return False


def json_depth(value: object) -> int:
    """How deep ``value`` nests arrays and objects (``[]`` is 1, a scalar 0)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def expect(body: bytes, headers: Mapping[str, str], live_session: str | None) -> Expected:
    """What a POST of ``body`` with ``headers`` must get, ``live_session`` being the only
    session id the app knows of."""
    accept = headers.get("Accept", "application/json, text/event-stream")
    if accept.strip() and not (
        accept_admits(accept, "application/json") or accept_admits(accept, "text/event-stream")
    ):
        return _error(INVALID_REQUEST, status=406)
    raw_length = headers.get("Content-Length", str(len(body)))
    if raw_length.strip():
        try:
            length = int(raw_length)
        except ValueError:
            return _error(INVALID_REQUEST, status=400)
        if length < 0:
            return _error(INVALID_REQUEST, status=400)
        if length > MAX_BODY_BYTES:
            return _error(INVALID_REQUEST, status=413)
        body = body[:length]
    else:
        body = b""  # no Content-Length: nothing is read
    version_header = headers.get("MCP-Protocol-Version")
    try:
        message = msgspec.json.decode(body)
        unparsed = json_depth(message) > MAX_DEPTH
    except (msgspec.DecodeError, RecursionError):  # RecursionError: far deeper than the limit
        unparsed = True
    if unparsed:  # not JSON, or nested deeper than the limit
        if _is_modern(None, version_header):
            return _modern_error(PARSE_ERROR)
        return _error(PARSE_ERROR)
    modern = _is_modern(message, version_header)
    if not isinstance(message, dict):  # batches included: not supported since 2025-06-18
        return _modern_error(INVALID_REQUEST) if modern else _error(INVALID_REQUEST)
    if modern:
        return _expect_modern(message, headers)
    reply_id = message["id"] if _valid_id(message.get("id")) else None
    if message.get("method") == "initialize" and "id" in message:  # needs no session
        return _expect_message(message, reply_id)
    session = headers.get("Mcp-Session-Id")
    if not session:
        return _error(INVALID_REQUEST, status=400)
    if session != live_session:
        return _error(INVALID_REQUEST, status=404)
    version = headers.get("MCP-Protocol-Version")
    if version is not None and version not in SUPPORTED_PROTOCOL_VERSIONS:
        return _error(INVALID_REQUEST, status=400)
    params = message.get("params")
    if (
        message.get("method") == "tasks/result"
        and reply_id is not None
        and accept_weights(accept).get("text/event-stream", 0) > 0  # named, not a wildcard
        and (params is None or isinstance(params, dict))
    ):
        # The streaming tasks/result path answers -32602 for these unknown tasks even when
        # the envelope is not JSON-RPC 2.0, where every other path says -32600.
        return Expected(200, reply_id, frozenset({INVALID_PARAMS, INVALID_REQUEST}))
    return _expect_message(message, reply_id)


def check(reply: WsgiResponse, expected: Expected) -> None:
    """``reply`` is what ``expected`` describes, with no internals on the wire."""
    body = reply.body
    assert b"Traceback" not in body and b'File "' not in body, body
    assert reply.status == expected.status, (reply.status, body, expected)
    if expected.status == 202:
        assert body == b""
        return
    assert reply.headers["content-type"] == "application/json"
    message = msgspec.json.decode(body)
    assert isinstance(message, dict)
    assert message["jsonrpc"] == "2.0"
    assert message["id"] == expected.reply_id and type(message["id"]) is type(expected.reply_id)
    if "error" in message:
        assert set(message) == {"jsonrpc", "id", "error"}
        error = message["error"]
        assert error["code"] in expected.codes, (error, expected)
        assert {"code", "message"} <= set(error) <= {"code", "message", "data"}
        assert isinstance(error["message"], str) and error["message"]
    else:
        assert expected.result, (message, expected)
        assert set(message) == {"jsonrpc", "id", "result"}
        assert isinstance(message["result"], dict)
    assert ("mcp-session-id" in reply.headers) == (expected.new_session and "result" in message)


def still_answers(app: McpWsgiApp, session: str) -> None:
    """The session still gets a plain answer to a valid request."""
    ping = {"jsonrpc": "2.0", "id": "still-alive", "method": "ping"}
    reply = call_app(app, body=ping, headers={"Mcp-Session-Id": session})
    assert (reply.status, reply.json()) == (
        200,
        {"jsonrpc": "2.0", "id": "still-alive", "result": {}},
    )


def _forget_new_session(app: McpWsgiApp, reply: WsgiResponse) -> None:
    if "mcp-session-id" in reply.headers:
        app.sessions.remove(reply.headers["mcp-session-id"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_fuzzed_bodies_with_a_session_get_the_answer_of_their_class(
    fuzz_app: tuple[McpWsgiApp, str], body: bytes
) -> None:
    """Any body posted on a live session gets the status, error code or result and id its
    input class calls for (or an empty 202), never a 500; the session keeps working."""
    app, session = fuzz_app
    headers = {"Mcp-Session-Id": session}
    reply = call_app(app, body=body, headers=headers)
    check(reply, expect(body, headers, session))
    _forget_new_session(app, reply)
    still_answers(app, session)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(["Mcp-Session-Id", "MCP-Protocol-Version", "Accept", "Content-Length"]),
        header_values,
        max_size=3,
    ),
)
def test_fuzzed_bodies_and_headers_get_the_answer_of_their_class(
    fuzz_app: tuple[McpWsgiApp, str], body: bytes, headers: dict[str, str]
) -> None:
    """Fuzzed bodies with fuzzed transport headers get the status (400, 404, 406, 413, ...)
    and JSON-RPC error their input class calls for, never a 500; the app keeps working."""
    app, session = fuzz_app
    reply = call_app(app, body=body, headers=headers)
    check(reply, expect(body, headers, None))
    _forget_new_session(app, reply)
    still_answers(app, session)


def _modern_headers(message: dict[str, Any], routing: dict[str, str]) -> dict[str, str]:
    """Routing headers for ``message``: ``same`` copies the body's value."""
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    body = {
        "version": meta.get("io.modelcontextprotocol/protocolVersion"),
        "method": message.get("method"),
        "name": params.get("name"),
    }
    names = {"version": "MCP-Protocol-Version", "method": "Mcp-Method", "name": "Mcp-Name"}
    headers = {}
    for part, choice in routing.items():
        value = body[part] if choice.strip() == "same" else choice
        if isinstance(value, str):
            headers[names[part]] = choice.replace("same", value) if "same" in choice else value
    return headers


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(message=modern_requests, routing=routing)
@example(  # found by CI: an extension method without the extension declared is -32021
    message={
        "jsonrpc": "2.0",
        "id": 0,
        "method": "tasks/cancel",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    },
    routing={"version": "same", "name": "same", "method": "same"},
)
@example(  # found by CI: an Mcp-Name sent on tasks/* must name the task, a routing check (-32020)
    message={
        "jsonrpc": "2.0",
        "id": 0,
        "method": "tasks/cancel",
        "params": {
            "name": "echo",
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    },
    routing={"version": "same", "name": "same", "method": "same"},
)
@example(  # and with it declared, an unknown task is -32602
    message={
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tasks/get",
        "params": {
            "taskId": "nope",
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {
                    "extensions": {TASKS_EXTENSION: {}}
                },
            },
        },
    },
    routing={"version": "same", "name": "same", "method": "same"},
)
def test_fuzzed_modern_requests_get_the_answer_of_their_class(
    fuzz_app: tuple[McpWsgiApp, str], message: dict[str, Any], routing: dict[str, str]
) -> None:
    """2026-07-28 requests with fuzzed envelopes and routing headers get the status (400, 404)
    and error (-32602, -32020, -32022, -32601, ...) or result their input class calls for, in
    the order the spec's checks go; never a 5xx or a session; a legacy session keeps working."""
    app, session = fuzz_app
    headers = _modern_headers(message, routing)
    body = msgspec.json.encode(message)
    reply = call_app(app, body=body, headers=headers)
    check(reply, expect(body, headers, None))
    assert "mcp-session-id" not in reply.headers
    still_answers(app, session)
