"""Hostile HTTP clients (issue 15): session floods, deep nesting, Accept, and against the
bundled server slowloris connections, connection floods and oversized request heads."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

import taskstore
from support.mcp import (
    INIT_PARAMS,
    WsgiResponse,
    build_server,
    call_app,
    open_session,
    served,
    wait_until,
)
from taskstore import TaskStore
from taskstore.errors import BackendError
from taskstore.http.limits import json_depth_exceeds
from taskstore.http.serve import ThreadingWSGIServer
from taskstore.mcp import McpServer
from taskstore.wsgi import McpWsgiApp, bearer_authenticator, make_wsgi_server

# Spelled out here rather than imported from the code under test.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
SERVER_BUSY = -32000
MAX_DEPTH = 512
BUSY_SESSIONS = {
    "code": SERVER_BUSY,
    "message": "Server busy: every session holds unfinished tasks; retry later",
}
TOO_DEEP = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": PARSE_ERROR, "message": "Parse error: nested deeper than 512 levels"},
}
NOT_ACCEPTABLE = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {
        "code": INVALID_REQUEST,
        "message": "Not Acceptable: Accept must admit application/json or text/event-stream",
    },
}


@pytest.fixture
def store() -> Iterator[TaskStore]:
    """An in-memory store polling fast."""
    made = taskstore.open("memory://", poll_interval_ms=20)
    yield made
    made.close()


@pytest.fixture
def server(store: TaskStore) -> Iterator[McpServer]:
    """A server with the test tools (``gated`` runs until the test ends)."""
    made = build_server(store)
    yield made
    made.release.set()  # type: ignore[attr-defined]
    made.close()


def rpc(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:  # noqa: A002
    """A JSON-RPC request."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialize(app: McpWsgiApp, headers: dict[str, str] | None = None) -> WsgiResponse:
    """An anonymous (or ``headers``-authenticated) initialize through ``app``."""
    return call_app(app, body=rpc("initialize", INIT_PARAMS, id=0), headers=headers)


def start_working_task(app: McpWsgiApp, session: str, headers: dict[str, str] | None = None) -> str:
    """A ``gated`` task of ``session``: ``working`` until the test's server is released."""
    reply = call_app(
        app,
        body=rpc("tools/call", {"name": "gated", "task": {}}),
        headers={"Mcp-Session-Id": session, **(headers or {})},
    ).json()
    assert reply["result"]["task"]["status"] == "working", reply
    task_id: str = reply["result"]["task"]["taskId"]
    return task_id


def task_status(app: McpWsgiApp, session: str, task_id: str, **headers: str) -> Any:
    """The task's status through ``session``, or the error answered."""
    reply = call_app(
        app,
        body=rpc("tasks/get", {"taskId": task_id}),
        headers={"Mcp-Session-Id": session, **headers},
    )
    if reply.status != 200:
        return reply.status
    body = reply.json()
    return body["result"]["status"] if "result" in body else body["error"]["code"]


def ping_status(app: McpWsgiApp, session: str) -> int:
    """The HTTP status of a ping on ``session`` (200 live, 404 gone)."""
    return call_app(app, body=rpc("ping"), headers={"Mcp-Session-Id": session}).status


# -- session admission -------------------------------------------------------------------------


def test_ten_thousand_anonymous_initializes_evict_idle_sessions_but_not_one_with_a_working_task(
    server: McpServer,
) -> None:
    """10,000 anonymous initialize calls fill the table and evict the idle task-less session,
    but the session with a working task stays, with its task reachable."""
    app = McpWsgiApp(server)  # max_sessions=10,000
    worker = open_session(app)
    task_id = start_working_task(app, worker)
    idle = open_session(app)
    started = time.perf_counter()
    flood = [initialize(app) for _ in range(10_000)]
    elapsed = time.perf_counter() - started
    assert {reply.status for reply in flood} == {200}
    assert len({reply.headers["mcp-session-id"] for reply in flood}) == 10_000
    assert len(app.sessions) == 10_000
    assert ping_status(app, idle) == 404
    assert ping_status(app, worker) == 200
    assert task_status(app, worker, task_id) == "working"
    listed = call_app(app, body=rpc("tasks/list"), headers={"Mcp-Session-Id": worker}).json()
    assert [task["taskId"] for task in listed["result"]["tasks"]] == [task_id]
    assert elapsed < 30, elapsed  # about 2 s on a loaded 2-core machine
    app.close()


def test_a_table_full_of_sessions_with_unfinished_tasks_refuses_initialize_with_503(
    server: McpServer,
) -> None:
    """When every session holds a working task, initialize gets HTTP 503 with Retry-After and
    a JSON-RPC error echoing its id; once a task ends, its session makes room."""
    app = McpWsgiApp(server, max_sessions=3)
    app.sessions.recheck_s = 0.0  # ask the store at every admission
    sessions = [open_session(app) for _ in range(3)]
    tasks = [start_working_task(app, session) for session in sessions]
    refused = initialize(app)
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/json"
    assert "mcp-session-id" not in refused.headers
    assert refused.json() == {"jsonrpc": "2.0", "id": 0, "error": BUSY_SESSIONS}
    assert [task_status(app, s, t) for s, t in zip(sessions, tasks, strict=True)] == ["working"] * 3
    cancelled = call_app(
        app,
        body=rpc("tasks/cancel", {"taskId": tasks[1]}),
        headers={"Mcp-Session-Id": sessions[1]},
    ).json()
    assert cancelled["result"]["status"] == "cancelled"
    admitted = initialize(app)
    assert admitted.status == 200 and "mcp-session-id" in admitted.headers
    assert [ping_status(app, s) for s in sessions] == [200, 404, 200]
    app.close()


def test_retry_after_follows_the_recheck_interval(server: McpServer) -> None:
    """Retry-After is the (rounded up) time before busy sessions are asked about again."""
    app = McpWsgiApp(server, max_sessions=1)
    app.sessions.recheck_s = 4.5
    start_working_task(app, open_session(app))
    refused = initialize(app)
    assert (refused.status, refused.headers["retry-after"]) == (503, "5")
    app.close()


def test_sessions_without_tasks_are_evicted_before_sessions_whose_tasks_finished(
    server: McpServer,
) -> None:
    """A full table evicts newer task-less sessions before an older session whose tasks all
    finished; that one goes once only sessions with tasks are left, the working one stays."""
    app = McpWsgiApp(server, max_sessions=2)
    app.sessions.recheck_s = 0.0
    finished = open_session(app)
    created = call_app(
        app,
        body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}, "task": {}}),
        headers={"Mcp-Session-Id": finished},
    ).json()
    task_id = created["result"]["task"]["taskId"]
    assert wait_until(lambda: task_status(app, finished, task_id) == "completed")
    plain = open_session(app)
    newer = open_session(app)
    assert (ping_status(app, finished), ping_status(app, plain)) == (200, 404)
    newest = open_session(app)
    assert (ping_status(app, finished), ping_status(app, newer)) == (200, 404)
    # Only holders left besides the newest: make the newest one a holder too.
    start_working_task(app, newest)
    assert initialize(app).status == 200
    assert (ping_status(app, finished), ping_status(app, newest)) == (404, 200)
    app.close()


def test_a_session_that_creates_a_task_while_being_checked_is_kept(
    server: McpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session whose request creates a task after the store check read its (empty) task list
    is not evicted on the strength of that stale answer."""
    app = McpWsgiApp(server, max_sessions=1)
    app.sessions.recheck_s = 0.0
    session = open_session(app)
    call_app(
        app,
        body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}),
        headers={"Mcp-Session-Id": session},
    )
    real_list = server.store.list
    created: list[str] = []

    def racing_list(owner: str, *args: Any, **kwargs: Any) -> Any:
        page = real_list(owner, *args, **kwargs)
        if not created:
            created.append(start_working_task(app, session))  # lands after the read
        return page

    monkeypatch.setattr(server.store, "list", racing_list)
    assert initialize(app).status == 503
    assert task_status(app, session, created[0]) == "working"
    app.close()


def test_a_request_of_a_session_ended_since_its_lookup_does_not_run(server: McpServer) -> None:
    """SessionManager.request reports a session removed since get() returned it as not live
    (so its request is not run) and does not bring it back."""
    app = McpWsgiApp(server)
    session_id = open_session(app)
    session = app.sessions.get(session_id)
    assert session is not None
    app.sessions.remove(session_id)
    with app.sessions.request(session, may_create_tasks=True) as live:
        assert live is False
    assert len(app.sessions) == 0
    app.close()


def test_authenticated_sessions_are_evicted_and_their_tasks_stay_reachable(
    server: McpServer,
) -> None:
    """An authenticated session's tasks belong to its subject: evicting the session loses
    nothing, a new session of the same subject reaches the working task."""
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"t": "alice"}), max_sessions=1)
    auth = {"Authorization": "Bearer t"}
    first = open_session(app, headers=auth)
    task_id = start_working_task(app, first, auth)
    second = open_session(app, headers=auth)
    assert call_app(app, body=rpc("ping"), headers={"Mcp-Session-Id": first, **auth}).status == 404
    assert task_status(app, second, task_id, **auth) == "working"
    app.close()


def test_a_flood_against_busy_sessions_costs_one_store_read_per_session_and_interval(
    server: McpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Initialize calls refused because every session is busy read the store once per busy
    session per recheck interval, not once per call."""
    app = McpWsgiApp(server, max_sessions=3)
    app.sessions.recheck_s = 0.0  # the sessions are due a check at once...
    sessions = [open_session(app) for _ in range(3)]
    for session in sessions:
        start_working_task(app, session)
    app.sessions.recheck_s = 60.0  # ...and once found busy, not again for a minute
    reads: list[str] = []
    real_list = server.store.list

    def counting_list(owner: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(owner)
        return real_list(owner, *args, **kwargs)

    monkeypatch.setattr(server.store, "list", counting_list)
    statuses = {initialize(app).status for _ in range(1_000)}
    assert statuses == {503}
    assert sorted(reads) == sorted(sessions)
    app.close()


def test_a_store_failure_while_checking_a_session_keeps_it(
    server: McpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Sessions whose tasks cannot be checked (store down) are kept: initialize gets 503 after
    one failed store read (not one per session), logged as a warning without a traceback."""
    app = McpWsgiApp(server, max_sessions=2)
    app.sessions.recheck_s = 0.0
    sessions = [open_session(app) for _ in range(2)]
    for session in sessions:
        call_app(
            app,
            body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}),
            headers={"Mcp-Session-Id": session},
        )
    reads: list[str] = []

    def failing_list(owner: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(owner)
        raise BackendError("store unreachable")

    monkeypatch.setattr(server.store, "list", failing_list)
    with caplog.at_level(logging.DEBUG, logger="taskstore"):
        assert initialize(app).status == 503
    assert len(reads) == 1
    assert [ping_status(app, session) for session in sessions] == [200, 200]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.exc_info) for r in warnings] == [("WARNING", None)]
    assert "could not check a session's tasks" in warnings[0].getMessage()
    app.close()


# -- nesting -------------------------------------------------------------------------------------


def nested(depth: int, kind: str) -> bytes:
    """A JSON document nested ``depth`` levels deep (arrays, or objects)."""
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_001, 100_000])
def test_documents_nested_past_the_limit_get_a_parse_error_fast_and_quietly(
    server: McpServer, caplog: pytest.LogCaptureFixture, depth: int, kind: str
) -> None:
    """A body nested deeper than 512 levels (up to 100,000) gets -32700 within a fraction of a
    second, with nothing logged at ERROR."""
    app = McpWsgiApp(server)
    session = open_session(app)
    body = nested(depth, kind)
    with caplog.at_level(logging.DEBUG):
        started = time.perf_counter()
        reply = call_app(app, body=body, headers={"Mcp-Session-Id": session})
        elapsed = time.perf_counter() - started
    assert (reply.status, reply.json()) == (200, TOO_DEEP)
    assert elapsed < 0.5, elapsed  # about 15 ms for 100,000 levels
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    app.close()


def test_a_too_deep_modern_request_gets_a_parse_error_with_http_400(server: McpServer) -> None:
    """A stateless (2026-07-28) caller's too-deep body gets -32700 with its era's HTTP 400."""
    app = McpWsgiApp(server)
    headers = {"MCP-Protocol-Version": "2026-07-28"}
    reply = call_app(app, body=nested(100_000, "array"), headers=headers)
    assert (reply.status, reply.json()) == (400, TOO_DEEP)


def test_a_document_nested_exactly_to_the_limit_is_served(server: McpServer) -> None:
    """512 levels (the message object, params, and a 510-level value) are answered normally;
    one more level is a parse error."""
    app = McpWsgiApp(server)
    session = open_session(app)
    headers = {"Mcp-Session-Id": session}

    def ping_with(value: bytes) -> WsgiResponse:
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"deep":' + value + b"}}"
        return call_app(app, body=body, headers=headers)

    assert ping_with(nested(MAX_DEPTH - 2, "array")).json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {},
    }
    assert ping_with(nested(MAX_DEPTH - 1, "array")).json() == TOO_DEEP
    app.close()


def test_brackets_inside_strings_do_not_count_as_nesting(server: McpServer) -> None:
    """Strings full of brackets (escaped quotes included) are not nesting: such a request is
    served normally."""
    app = McpWsgiApp(server)
    session = open_session(app)
    text = '\\"[{' * 2_000
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"' + text.encode() + b'"}}'
    reply = call_app(app, body=body, headers={"Mcp-Session-Id": session})
    assert reply.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    app.close()


@pytest.mark.parametrize(
    ("body", "limit", "expected"),
    [
        (b"", 0, False),
        (b"[[[[", 4, False),  # no longer than the limit: settled by its length alone
        (b"[[[[[", 4, True),
        (b"[[[]]]", 6, False),
        (b"[" * 7, 6, True),
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b'["[[[[[["]', 2, False),
    ],
)
def test_depth_check_edges(body: bytes, limit: int, expected: bool) -> None:
    """json_depth_exceeds around the limit, including bodies short enough to skip counting."""
    assert json_depth_exceeds(body, limit) is expected


# -- Accept --------------------------------------------------------------------------------------


class WithoutAccept:
    """The app behind a server that received no Accept header at all."""

    def __init__(self, app: McpWsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        del environ["HTTP_ACCEPT"]
        return self.app(environ, start_response)


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "application/xml, text/plain",
        "application/json;q=0",
        "*/*;q=0",
        "application/*;q=0, text/*;q=0",
        "application/json;q=0, text/event-stream;q=0, */*",
        "application/json;q=1.5",
        "*/json",
        "garbage",
    ],
)
def test_a_post_whose_accept_admits_neither_json_nor_sse_gets_406(
    server: McpServer, accept: str
) -> None:
    """A POST whose Accept admits neither application/json nor text/event-stream (wildcards
    and q-values weighed, malformed ranges ignored) gets 406 with a JSON-RPC error."""
    app = McpWsgiApp(server)
    session = open_session(app)
    reply = call_app(app, body=rpc("ping"), headers={"Mcp-Session-Id": session, "Accept": accept})
    assert (reply.status, reply.headers["content-type"], reply.json()) == (
        406,
        "application/json",
        NOT_ACCEPTABLE,
    )
    app.close()


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "application/*",
        "application/json",
        "Application/JSON",
        "text/event-stream",
        "text/*",
        "application/json;q=0.001",
        "text/html, */*;q=0.1",
        "application/json;q=0, text/event-stream",
    ],
)
def test_a_post_whose_accept_admits_json_or_sse_or_is_missing_is_served(
    server: McpServer, accept: str | None
) -> None:
    """A missing or blank Accept is tolerated, as is any that admits application/json or
    text/event-stream (directly, by wildcard, with any q above 0)."""
    app = McpWsgiApp(server)
    session = open_session(app)
    headers = {"Mcp-Session-Id": session}
    if accept is not None:
        headers["Accept"] = accept
    target: Any = WithoutAccept(app) if accept is None else app
    reply = call_app(target, body=rpc("ping"), headers=headers)
    assert (reply.status, reply.json()) == (200, {"jsonrpc": "2.0", "id": 1, "result": {}})
    app.close()


def test_tasks_result_streams_only_when_accept_names_the_event_stream(server: McpServer) -> None:
    """A blocking tasks/result streams (SSE) only for an Accept naming text/event-stream with
    q above 0; a wildcard gets the JSON answer."""
    app = McpWsgiApp(server, keepalive_s=0.05)
    session = open_session(app)
    headers = {"Mcp-Session-Id": session}
    content_types = {}
    for accept in ["*/*", "text/event-stream;q=0, application/json", "text/event-stream"]:
        created = call_app(
            app, body=rpc("tools/call", {"name": "wait_for_cancel", "task": {}}), headers=headers
        ).json()
        task_id = created["result"]["task"]["taskId"]
        cancel = threading.Timer(0.1, server.store.cancel, (task_id, session))
        cancel.start()
        reply = call_app(
            app,
            body=rpc("tasks/result", {"taskId": task_id}),
            headers={**headers, "Accept": accept},
        )
        content_types[accept] = reply.headers["content-type"]
        assert b"cancelled" in reply.body
        cancel.join()
    assert content_types == {
        "*/*": "application/json",
        "text/event-stream;q=0, application/json": "application/json",
        "text/event-stream": "text/event-stream",
    }
    app.close()


# -- the bundled server --------------------------------------------------------------------------


def connect(httpd: ThreadingWSGIServer, timeout: float = 10.0) -> socket.socket:
    """A raw client socket to ``httpd``."""
    return socket.create_connection(("127.0.0.1", httpd.server_port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the one response on ``sock``, read to
    the end of the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def jsonrpc_error(body: bytes) -> dict[str, Any]:
    """The error of a JSON-RPC error response without id (and nothing else in it)."""
    message = msgspec.json.decode(body)
    assert set(message) == {"jsonrpc", "id", "error"} and message["id"] is None, message
    error: dict[str, Any] = message["error"]
    return error


def http_initialize(httpd: ThreadingWSGIServer) -> int:
    """One initialize over HTTP; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=10)
    try:
        conn.request(
            "POST",
            "/mcp",
            msgspec.json.encode(rpc("initialize", INIT_PARAMS, id=0)),
            {"Content-Type": "application/json", "Accept": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_slowloris_connections_are_closed_after_the_read_timeout_while_others_are_served(
    server: McpServer,
) -> None:
    """Connections stalled mid-headers, stalled mid-body, or trickling a byte at a time get a
    JSON-RPC 408 and are closed within the read timeout (plus a margin); other clients are
    served meanwhile."""
    timeout = 1.0
    with served(McpWsgiApp(server), read_timeout_s=timeout) as httpd:
        started = time.monotonic()
        mid_headers = connect(httpd)
        mid_headers.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app")
        mid_body = connect(httpd)
        mid_body.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"jsonrpc": "2.0",'
        )
        trickle = connect(httpd)
        stop = threading.Event()

        def trickle_headers() -> None:
            trickle.sendall(b"POST /mcp HTTP/1.1\r\n")
            while not stop.wait(0.1):
                try:
                    trickle.sendall(b"X")
                except OSError:
                    return

        threading.Thread(target=trickle_headers, daemon=True).start()
        assert wait_until(lambda: httpd.open_connections == 3)
        statuses = [http_initialize(httpd) for _ in range(5)]
        served_in = time.monotonic() - started
        results = {}
        for name, sock in [("headers", mid_headers), ("body", mid_body), ("trickle", trickle)]:
            status, headers, body = read_response(sock)
            results[name] = (status, headers["content-type"], jsonrpc_error(body)["code"])
            assert timeout * 0.9 < time.monotonic() - started < timeout + 1.5, name
            sock.close()
        stop.set()
    assert statuses == [200] * 5 and served_in < timeout, served_in
    assert results == {
        "headers": (408, "application/json", INVALID_REQUEST),
        "body": (408, "application/json", INVALID_REQUEST),
        "trickle": (408, "application/json", INVALID_REQUEST),
    }


def test_connections_beyond_the_cap_get_503_in_json_rpc(server: McpServer) -> None:
    """With a cap of 2 connections, a third concurrent one gets 503 with Retry-After and a
    JSON-RPC error; once the others close, new connections are served again."""
    with served(McpWsgiApp(server), max_connections=2, read_timeout_s=10) as httpd:
        held = [connect(httpd) for _ in range(2)]
        for sock in held:
            sock.sendall(b"POST /mcp HTTP/1.1\r\n")
        assert wait_until(lambda: httpd.open_connections == 2)
        extra = connect(httpd)
        extra.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        status, headers, body = read_response(extra)
        assert (status, headers["content-type"], headers["retry-after"]) == (
            503,
            "application/json",
            "1",
        )
        assert jsonrpc_error(body) == {
            "code": SERVER_BUSY,
            "message": "Server busy: too many open connections; retry later",
        }
        extra.close()
        for sock in held:
            sock.close()
        assert wait_until(lambda: httpd.open_connections == 0)
        assert http_initialize(httpd) == 200


@pytest.mark.parametrize(
    ("request_head", "status", "message"),
    [
        (
            b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\n\r\n",
            414,
            "URI Too Long: the request line exceeds 8192 bytes",
        ),
        (
            b"GET /mcp HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            "Request Header Fields Too Large: got more than 65536 bytes when reading header line",
        ),
        (
            b"GET /mcp HTTP/1.1\r\n"
            + b"".join(b"X-%d: " % i + b"a" * 1_000 + b"\r\n" for i in range(80))
            + b"\r\n",
            431,
            "Request Header Fields Too Large: the header section exceeds 65536 bytes",
        ),
        (
            b"GET /mcp HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n",
            431,
            "Request Header Fields Too Large: got more than 100 headers",
        ),
        (b"GARBAGE\r\n\r\n", 400, "Bad Request: Bad request syntax ('GARBAGE')"),
    ],
    ids=["request-line", "header-line", "header-section", "header-count", "garbled"],
)
def test_oversized_or_garbled_request_heads_get_json_rpc_errors(
    server: McpServer, request_head: bytes, status: int, message: str
) -> None:
    """Request lines over 8 KiB (414), header lines or sections over 64 KiB or more than 100
    headers (431), and garbled request lines (400) get a JSON-RPC error body with
    Content-Type application/json, not an HTML page."""
    with served(McpWsgiApp(server)) as httpd:
        sock = connect(httpd)
        sock.sendall(request_head)
        answer = read_response(sock)
        sock.close()
    assert answer[0] == status
    assert answer[1]["content-type"] == "application/json"
    assert jsonrpc_error(answer[2]) == {"code": INVALID_REQUEST, "message": message}


def test_limits_of_the_bundled_server_must_be_positive(server: McpServer) -> None:
    """make_wsgi_server refuses a read timeout or connection cap that is not positive."""
    app = McpWsgiApp(server)
    with pytest.raises(ValueError, match="read_timeout_s"):
        make_wsgi_server(app, "127.0.0.1", 0, read_timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        make_wsgi_server(app, "127.0.0.1", 0, max_connections=0)
