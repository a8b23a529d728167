"""taskstore.wsgi: the Streamable HTTP rules official clients rely on (DESIGN §9)."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import taskstore
from support.mcp import INIT_PARAMS, build_server, call_app, open_session, serving
from taskstore import TaskStore
from taskstore.http.accept import Accept
from taskstore.http.app import _post_accept
from taskstore.http.auth import OriginPolicy
from taskstore.http.responses import JSON, SSE
from taskstore.mcp import AuthContext, McpServer
from taskstore.wsgi import McpWsgiApp, bearer_authenticator, is_loopback_host


@pytest.fixture
def store() -> Iterator[TaskStore]:
    """An in-memory store polling fast."""
    made = taskstore.open("memory://", poll_interval_ms=20)
    yield made
    made.close()


@pytest.fixture
def server(store: TaskStore) -> Iterator[McpServer]:
    """A server with the test tools."""
    made = build_server(store)
    yield made
    made.release.set()  # type: ignore[attr-defined]
    made.close()


@pytest.fixture
def app(server: McpServer) -> Iterator[McpWsgiApp]:
    """A loopback-protected app with short keep-alives."""
    made = McpWsgiApp(server, loopback_only=True, keepalive_s=0.2)
    yield made
    made.close()


def rpc(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:  # noqa: A002
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def test_initialize_returns_a_session_id(app: McpWsgiApp) -> None:
    """initialize answers 200 JSON with an Mcp-Session-Id of visible ASCII."""
    reply = call_app(app, body=rpc("initialize", INIT_PARAMS, id=0))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    session_id = reply.headers["mcp-session-id"]
    assert len(session_id) >= 32 and all(0x21 <= ord(c) <= 0x7E for c in session_id)
    body = reply.json()
    assert body["id"] == 0
    assert body["result"]["capabilities"]["tasks"]["list"] == {}


def test_post_without_session_is_400(app: McpWsgiApp) -> None:
    """A non-initialize POST without Mcp-Session-Id is 400 with a JSON-RPC error body."""
    reply = call_app(app, body=rpc("ping"))
    assert reply.status == 400
    assert reply.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Bad Request: Mcp-Session-Id header required"},
    }


def test_unknown_session_is_404(app: McpWsgiApp) -> None:
    """An unknown session id is 404."""
    reply = call_app(app, body=rpc("ping"), headers={"Mcp-Session-Id": "nope"})
    assert reply.status == 404
    assert reply.json()["error"]["message"] == "Session not found"


def test_notifications_get_202_and_no_body(app: McpWsgiApp) -> None:
    """A notification is answered 202 with an empty body."""
    session = open_session(app)
    reply = call_app(
        app,
        body={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={"Mcp-Session-Id": session},
    )
    assert (reply.status, reply.body) == (202, b"")


def test_jsonrpc_errors_travel_with_200(app: McpWsgiApp) -> None:
    """An unknown method is a JSON-RPC -32601 with HTTP 200 (not a transport failure)."""
    session = open_session(app)
    reply = call_app(app, body=rpc("nope/nope", id="s"), headers={"Mcp-Session-Id": session})
    assert reply.status == 200
    assert reply.json() == {
        "jsonrpc": "2.0",
        "id": "s",
        "error": {"code": -32601, "message": "Method not found: nope/nope"},
    }


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{not json", -32700, "Parse error"),
        (b"", -32700, "Parse error"),
        (b"[]", -32600, "Batch requests are not supported"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, "Batch requests are not supported"),
        (b"42", -32600, "Invalid Request"),
        (b'"\xff"', -32700, "Parse error"),
    ],
)
def test_malformed_bodies_get_jsonrpc_errors(
    app: McpWsgiApp, body: bytes, code: int, message: str
) -> None:
    """Malformed JSON, batches and non-objects answer a JSON-RPC error with id null."""
    session = open_session(app)
    reply = call_app(app, body=body, headers={"Mcp-Session-Id": session})
    assert reply.status == 200
    assert reply.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": code, "message": message},
    }


def test_oversized_body_is_413(server: McpServer) -> None:
    """A body over max_body_bytes is refused with 413 before it is read."""
    app = McpWsgiApp(server, max_body_bytes=100)
    reply = call_app(app, body=b"x" * 101)
    assert reply.status == 413
    assert reply.json()["error"] == {
        "code": -32600,
        "message": "Request body too large (limit 100 bytes)",
    }


def test_wrong_content_type_is_415(app: McpWsgiApp) -> None:
    """A POST that is not application/json is 415."""
    reply = call_app(app, body=rpc("ping"), headers={"Content-Type": "text/plain"})
    assert reply.status == 415


def test_delete_ends_the_session(app: McpWsgiApp) -> None:
    """DELETE answers 200; the session id then gets 404."""
    session = open_session(app)
    assert call_app(app, "DELETE", headers={"Mcp-Session-Id": session}).status == 200
    assert call_app(app, body=rpc("ping"), headers={"Mcp-Session-Id": session}).status == 404
    assert call_app(app, "DELETE", headers={"Mcp-Session-Id": session}).status == 404


def test_get_rules(app: McpWsgiApp) -> None:
    """GET: 405 without a session (no stream to offer, as a stateless 2026-07-28 server answers),
    406 without SSE accept, SSE stream, 409 for a second stream."""
    assert call_app(app, "GET").status == 405
    session = open_session(app)
    assert (
        call_app(
            app, "GET", headers={"Mcp-Session-Id": session, "Accept": "application/json"}
        ).status
        == 406
    )
    stream = call_app(app, "GET", headers={"Mcp-Session-Id": session})
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert next(stream.chunks) == b": stream open\n\n"
    assert call_app(app, "GET", headers={"Mcp-Session-Id": session}).status == 409
    stream.chunks.close()  # type: ignore[attr-defined]
    again = call_app(app, "GET", headers={"Mcp-Session-Id": session})
    assert again.status == 200
    again.chunks.close()  # type: ignore[attr-defined]


def test_get_without_sessions_offered_is_405_for_other_verbs(app: McpWsgiApp) -> None:
    """Verbs other than GET, POST and DELETE are 405 with an Allow header."""
    reply = call_app(app, "PUT")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, POST, DELETE"


def test_other_paths_are_404(app: McpWsgiApp) -> None:
    """Only the endpoint path answers."""
    assert call_app(app, body=rpc("initialize", INIT_PARAMS), path="/other").status == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:8000"}, 403),
        ({"Host": "localhost:1234"}, 200),
        ({"Host": "[::1]:9"}, 200),
        ({"Host": "127.0.0.2"}, 200),
        ({"Origin": "http://localhost:3000"}, 200),
        ({"Origin": "http://127.0.0.1"}, 200),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
    ],
)
def test_loopback_server_checks_host_and_origin(
    app: McpWsgiApp, headers: dict[str, str], status: int
) -> None:
    """A loopback server accepts only loopback Host and Origin headers (any port), else 403."""
    reply = call_app(app, body=rpc("initialize", INIT_PARAMS), headers=headers)
    assert reply.status == status


def test_public_server_accepts_same_origin_and_allowed_origins(server: McpServer) -> None:
    """Without loopback_only: same-origin and allowed origins pass, others get 403."""
    app = McpWsgiApp(server, allowed_origins=["https://app.example"])
    body = rpc("initialize", INIT_PARAMS)
    assert (
        call_app(
            app, body=body, headers={"Host": "mcp.example", "Origin": "https://mcp.example"}
        ).status
        == 200
    )
    assert (
        call_app(
            app, body=body, headers={"Host": "mcp.example", "Origin": "https://app.example"}
        ).status
        == 200
    )
    assert (
        call_app(
            app, body=body, headers={"Host": "mcp.example", "Origin": "https://evil.example"}
        ).status
        == 403
    )
    assert call_app(app, body=body, headers={"Host": "mcp.example"}).status == 200


ORIGIN_CASES = [
    ("127.0.0.1:8000", None),
    ("localhost", "http://localhost:3000"),
    ("evil.example", None),
    ("127.0.0.1", "http://evil.example"),
    ("127.0.0.1", "null"),
    ("mcp.example", "https://mcp.example"),
    ("mcp.example", "https://app.example/"),
    ("[::1]:9", "https://[::1]"),
]


@pytest.mark.parametrize("loopback_only", [True, False])
def test_origin_verdicts_are_remembered_without_changing_them(loopback_only: bool) -> None:
    """OriginPolicy remembers each (Host, Origin) verdict: asked again, or after a flood of
    made-up hosts has filled and reset its bounded memory, it answers as a fresh policy does;
    pairs longer than a real client's are judged each time, not kept; the settings a
    verdict depends on cannot be changed afterwards."""
    allowed = ["https://app.example"]

    def fresh() -> OriginPolicy:
        return OriginPolicy(loopback_only=loopback_only, allowed_origins=allowed)

    policy = fresh()
    expected = [fresh().refusal(host, origin) for host, origin in ORIGIN_CASES]
    for _ in range(2):
        assert [policy.refusal(host, origin) for host, origin in ORIGIN_CASES] == expected
    for n in range(1_000):
        assert (policy.refusal(f"h{n}.example", None) is None) is not loopback_only
    assert len(policy._verdicts) <= 256
    assert [policy.refusal(host, origin) for host, origin in ORIGIN_CASES] == expected
    long_host = "a" * 600 + ".example"
    assert policy.refusal(long_host, None) == fresh().refusal(long_host, None)
    assert (long_host, None) not in policy._verdicts
    with pytest.raises(AttributeError):
        policy.loopback_only = not loopback_only  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy.allowed_origins = frozenset()  # type: ignore[misc]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "application/json, text/event-stream",
        "application/json",
        "text/event-stream;q=0.5",
        "text/*",
        "*/*;q=0",
        "text/html",
        "application/json;q=0, text/event-stream;q=0",
        "TEXT/EVENT-STREAM",
        "application/*, text/event-stream;q=0",
        "x/y, " * 100 + "text/event-stream",  # longer than a remembered one
    ],
)
def test_remembered_accept_verdicts_match_the_parser(header: str | None) -> None:
    """What the endpoint remembers of a POST's Accept header is what Accept itself says, the
    first time and every later one."""
    accept = Accept(header)
    expected = (accept.admits(JSON) or accept.admits(SSE), accept.names(SSE))
    assert _post_accept(header) == expected
    assert _post_accept(header) == expected


def test_protocol_version_header(app: McpWsgiApp) -> None:
    """Supported MCP-Protocol-Version headers pass; an unsupported one is 400."""
    session = open_session(app)
    for version in ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"):
        ok = call_app(
            app,
            body=rpc("ping"),
            headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": version},
        )
        assert ok.status == 200
    bad = call_app(
        app,
        body=rpc("ping"),
        headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2099-01-01"},
    )
    assert bad.status == 400


def test_bearer_tokens_are_required_and_checked(server: McpServer) -> None:
    """A required bearer authenticator answers 401 without or with a wrong token."""
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"t-a": "alice"}))
    body = rpc("initialize", INIT_PARAMS)
    missing = call_app(app, body=body)
    assert missing.status == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert call_app(app, body=body, headers={"Authorization": "Bearer wrong"}).status == 401
    assert call_app(app, body=body, headers={"Authorization": "Basic t-a"}).status == 401
    assert call_app(app, body=body, headers={"Authorization": "Bearer t-a"}).status == 200


def test_owners_from_two_tokens_are_isolated(server: McpServer) -> None:
    """Alice's task is invisible to Bob (get/result/cancel -32602, empty list), and Bob cannot
    use Alice's session id."""
    app = McpWsgiApp(
        server,
        authenticate=bearer_authenticator({"t-a": "alice", "t-b": AuthContext(subject="bob")}),
    )
    alice = {"Authorization": "Bearer t-a"}
    bob = {"Authorization": "Bearer t-b"}
    a_session = open_session(app, alice)
    b_session = open_session(app, bob)
    created = call_app(
        app,
        body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}, "task": {}}),
        headers={**alice, "Mcp-Session-Id": a_session},
    ).json()["result"]
    task_id = created["task"]["taskId"]
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        reply = call_app(
            app, body=rpc(method, {"taskId": task_id}), headers={**bob, "Mcp-Session-Id": b_session}
        )
        assert reply.json()["error"] == {
            "code": -32602,
            "message": f"Task not found: {task_id}",
            "data": {"taskId": task_id},
        }
    listed = call_app(
        app, body=rpc("tasks/list"), headers={**bob, "Mcp-Session-Id": b_session}
    ).json()
    assert listed["result"] == {"tasks": []}
    assert (
        call_app(app, body=rpc("ping"), headers={**bob, "Mcp-Session-Id": a_session}).status == 404
    )
    mine = call_app(
        app, body=rpc("tasks/list"), headers={**alice, "Mcp-Session-Id": a_session}
    ).json()
    assert [t["taskId"] for t in mine["result"]["tasks"]] == [task_id]


def test_anonymous_sessions_own_their_tasks(app: McpWsgiApp) -> None:
    """Without authentication each session owns its tasks: another session cannot see them."""
    first, second = open_session(app), open_session(app)
    created = call_app(
        app,
        body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}, "task": {}}),
        headers={"Mcp-Session-Id": first},
    ).json()["result"]
    task_id = created["task"]["taskId"]
    assert (
        call_app(
            app, body=rpc("tasks/get", {"taskId": task_id}), headers={"Mcp-Session-Id": second}
        ).json()["error"]["code"]
        == -32602
    )
    got = call_app(
        app, body=rpc("tasks/get", {"taskId": task_id}), headers={"Mcp-Session-Id": first}
    ).json()
    assert got["result"]["taskId"] == task_id


def test_audit_lines_for_creation_completion_result_and_cancel(
    app: McpWsgiApp, server: McpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Task creation, completion, result retrieval and cancellation are audited with the owner
    (a session owner only as a fingerprint, never the session id itself)."""
    session = open_session(app)
    headers = {"Mcp-Session-Id": session}
    with caplog.at_level(logging.INFO, logger="taskstore.audit"):
        created = call_app(
            app,
            body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}, "task": {}}),
            headers=headers,
        ).json()
        task_id = created["result"]["task"]["taskId"]
        call_app(
            app,
            body=rpc("tasks/result", {"taskId": task_id}),
            headers={**headers, "Accept": "application/json"},
        )
        other = call_app(
            app, body=rpc("tools/call", {"name": "gated", "task": {}}), headers=headers
        ).json()
        call_app(
            app,
            body=rpc("tasks/cancel", {"taskId": other["result"]["task"]["taskId"]}),
            headers=headers,
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "taskstore.audit"]
    events = [line.split()[0] for line in lines]
    assert events == [
        "task.created",
        "task.completed",
        "task.result",
        "task.created",
        "task.cancelled",
    ]
    assert all("owner='session:" in line for line in lines)
    assert not any(session in line for line in lines)


def test_result_of_finished_task_is_plain_json(app: McpWsgiApp, store: TaskStore) -> None:
    """tasks/result of a terminal task answers application/json even when SSE is accepted."""
    session = open_session(app)
    created = call_app(
        app,
        body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}, "task": {}}),
        headers={"Mcp-Session-Id": session},
    ).json()
    task_id = created["result"]["task"]["taskId"]
    store.wait(task_id, session, timeout=5)
    reply = call_app(
        app,
        body=rpc("tasks/result", {"taskId": task_id}, id=5),
        headers={"Mcp-Session-Id": session},
    )
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["result"]["content"] == [{"type": "text", "text": "x"}]


def test_result_streams_input_requests_over_sse(app: McpWsgiApp, store: TaskStore) -> None:
    """tasks/result of a task needing input streams the elicitation request, then the answer."""
    session = open_session(app)
    headers = {"Mcp-Session-Id": session}
    created = call_app(
        app,
        body=rpc(
            "tools/call", {"name": "confirm_action", "arguments": {"action": "go"}, "task": {}}
        ),
        headers=headers,
    ).json()
    task_id = created["result"]["task"]["taskId"]
    reply = call_app(app, body=rpc("tasks/result", {"taskId": task_id}, id=7), headers=headers)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    first = next(reply.chunks)
    assert first.startswith(b"event: message\ndata: ")
    request = json.loads(first.split(b"data: ", 1)[1])
    assert request["method"] == "elicitation/create"
    answer = {
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"action": "accept", "content": {"confirm": True}},
    }
    assert call_app(app, body=answer, headers=headers).status == 202
    events = [
        json.loads(chunk.split(b"data: ", 1)[1])
        for chunk in reply.chunks
        if chunk.startswith(b"event:")
    ]
    assert events[-1]["id"] == 7
    assert events[-1]["result"]["content"] == [{"type": "text", "text": "Done: go"}]


def test_internal_errors_never_become_500(app: McpWsgiApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug below the app answers HTTP 200 with a -32603 JSON-RPC error, not a 500."""
    session = open_session(app)

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(app.server, "handle", bug)
    reply = call_app(app, body=rpc("ping"), headers={"Mcp-Session-Id": session})
    assert reply.status == 200
    assert reply.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32603, "message": "Internal error"},
    }


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("app.localhost", True),
        ("0.0.0.0", False),
        ("example.com", False),
        ("10.0.0.1", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    """Loopback names and addresses are recognised; others are not."""
    assert is_loopback_host(host) is expected


# -- over real HTTP --------------------------------------------------------------------------


def http_call(
    url: str,
    method: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = None if body is None else json.dumps(body).encode()
    conn.request(
        method,
        parts.path,
        body=data,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        },
    )
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def test_blocking_result_does_not_stall_other_requests(
    app: McpWsgiApp, server: McpServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one client blocks in tasks/result, another request is served at once."""
    entered = threading.Event()
    original_wait = store.wait

    def wait(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        return original_wait(*args, **kwargs)

    monkeypatch.setattr(store, "wait", wait)
    with serving(app) as url:
        status, headers, _ = http_call(url, "POST", rpc("initialize", INIT_PARAMS))
        session = {"Mcp-Session-Id": headers["mcp-session-id"], "Accept": "application/json"}
        _, _, body = http_call(
            url, "POST", rpc("tools/call", {"name": "gated", "task": {}}), session
        )
        task_id = json.loads(body)["result"]["task"]["taskId"]
        answers: list[Any] = []
        answered_at: list[float] = []

        def fetch() -> None:
            answers.append(
                http_call(url, "POST", rpc("tasks/result", {"taskId": task_id}), session)
            )
            answered_at.append(time.monotonic())

        blocked = threading.Thread(target=fetch)
        blocked.start()
        assert entered.wait(5)  # the blocked call is inside tasks/result now
        status, _, body = http_call(url, "POST", rpc("ping", id=2), session, timeout=5)
        assert (status, json.loads(body)["result"]) == (200, {})
        assert blocked.is_alive()
        released_at = time.monotonic()
        server.release.set()  # type: ignore[attr-defined]
        blocked.join(10)
        assert json.loads(answers[0][2])["result"]["content"] == [
            {"type": "text", "text": "released"}
        ]
        assert answered_at[0] >= released_at  # the answer waited for the tool to finish


def test_get_stream_delivers_status_notifications(app: McpWsgiApp) -> None:
    """The session's GET stream carries notifications/tasks/status of its tasks."""
    with serving(app) as url:
        _, headers, _ = http_call(url, "POST", rpc("initialize", INIT_PARAMS))
        session = {"Mcp-Session-Id": headers["mcp-session-id"]}
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", parts.path, headers={**session, "Accept": "text/event-stream"})
        stream = conn.getresponse()
        assert stream.status == 200
        assert stream.readline() == b": stream open\n"
        _, _, body = http_call(
            url, "POST", rpc("tools/call", {"name": "wait_for_cancel", "task": {}}), session
        )
        task_id = json.loads(body)["result"]["task"]["taskId"]
        http_call(url, "POST", rpc("tasks/cancel", {"taskId": task_id}), session)
        data = None
        while data is None:
            line = stream.readline()
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
        assert data["method"] == "notifications/tasks/status"
        assert (data["params"]["taskId"], data["params"]["status"]) == (task_id, "cancelled")
        status, _, _ = http_call(url, "DELETE", None, session)
        assert status == 200
        rest = stream.read()  # the stream ends with the session
        assert b"data:" not in rest  # keep-alives at most: the one status change was sent
        conn.close()
