"""The bundled server's persistent HTTP/1.1 connections: several requests on one connection
(reused by ``http.client``, pipelined on a raw socket), after an SSE stream and after error
answers; ``Connection: close`` and HTTP/1.0 clients; the idle timeout; a client that leaves
mid-answer; request bodies the app did not read; the read timeout, head limits and the
connection cap on kept-alive connections; and fuzzed bodies through one connection."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from test_wsgi_fuzz import (
    _forget_new_session,
    bodies,
    check,
    expect,
    fuzz_app,  # noqa: F401 - a fixture, used by name
)

import taskstore
from support.examples import EXAMPLES
from support.mcp import INIT_PARAMS, WsgiResponse, build_server, open_session, served, wait_until
from support.servers import free_port, need_modules
from taskstore import TaskStore
from taskstore.http.serve import ThreadingWSGIServer
from taskstore.mcp import McpServer
from taskstore.wsgi import McpWsgiApp, make_wsgi_server

INVALID_REQUEST = -32600
PARSE_ERROR = -32700
JSON_AND_SSE = "application/json, text/event-stream"


@pytest.fixture
def store() -> Iterator[TaskStore]:
    """An in-memory store polling fast."""
    made = taskstore.open("memory://", poll_interval_ms=20)
    yield made
    made.close()


@pytest.fixture
def server(store: TaskStore) -> Iterator[McpServer]:
    """A server with the test tools (``gated`` runs until released or the test ends)."""
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


class Answer:
    """One response read off a raw connection."""

    def __init__(self, version: str, status: int, headers: dict[str, str], body: bytes):
        self.version = version
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        """Whether the answer says the connection ends after it."""
        return self.headers.get("connection", "").lower() == "close"


class Raw:
    """A raw client connection that reads responses one at a time, framed as HTTP/1.1 says
    (``Content-Length``, chunked, or until the close)."""

    def __init__(self, server: ThreadingWSGIServer | int, timeout: float = 10.0) -> None:
        self.port = server if isinstance(server, int) else server.server_port
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        """Close the client's end."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def request(
        self,
        method: str = "POST",
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/mcp",
        version: str = "HTTP/1.1",
    ) -> bytes:
        """The bytes of one request (``Host``, ``Content-Type`` and ``Accept`` filled in)."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        fields = {
            "Host": f"127.0.0.1:{self.port}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            **(headers or {}),
        }
        if raw or method == "POST":
            fields.setdefault("Content-Length", str(len(raw)))
        head = f"{method} {path} {version}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in fields.items()
        )
        return head.encode("latin-1") + b"\r\n" + raw

    def call(self, *args: Any, **kwargs: Any) -> Answer:
        """Send one request and read its answer."""
        self.send(self.request(*args, **kwargs))
        return self.answer()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError("closed mid-line")
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def head(self) -> Answer:
        """The next response's status line and headers (the body is left to read)."""
        version, status, *_ = self._line().decode("latin-1").split(" ", 2)
        headers = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return Answer(version, int(status), headers, b"")

    def chunk(self) -> bytes:
        """The next chunk of a chunked body (``b""``: the last chunk)."""
        size = int(self._line().split(b";")[0], 16)
        if size == 0:
            assert self._line() == b""  # no trailers
            return b""
        data = self._exactly(size)
        assert self._line() == b""
        return data

    def answer(self) -> Answer:
        """The next whole response."""
        answer = self.head()
        if answer.headers.get("transfer-encoding") == "chunked":
            answer.body = b"".join(iter(self.chunk, b""))
        elif "content-length" in answer.headers:
            answer.body = self._exactly(int(answer.headers["content-length"]))
        else:
            while self._fill():
                pass
            answer.body, self._buffer = self._buffer, b""
        return answer

    def rest(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data

    def at_eof(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection (within ``timeout``) without sending
        anything more."""
        self.sock.settimeout(timeout)
        try:
            data = self._buffer or self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return data == b""


def session_headers(session: str, accept: str = "application/json") -> dict[str, str]:
    """The headers of a session's request."""
    return {"Mcp-Session-Id": session, "Accept": accept}


def test_an_http_client_connection_carries_many_requests(server: McpServer) -> None:
    """http.client keeps one socket for an initialize and fifty pings: HTTP/1.1 answers with
    Content-Length and no Connection: close; the server holds one connection."""
    with served(McpWsgiApp(server)) as httpd:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=10)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        conn.request("POST", "/mcp", json.dumps(rpc("initialize", INIT_PARAMS)), headers)
        first = conn.getresponse()
        session = first.getheader("Mcp-Session-Id", "")
        first.read()
        sock = conn.sock
        assert sock is not None and first.version == 11
        for i in range(50):
            conn.request(
                "POST",
                "/mcp",
                json.dumps(rpc("ping", id=i)),
                {**headers, "Mcp-Session-Id": session},
            )
            reply = conn.getresponse()
            assert reply.version == 11 and reply.getheader("Connection") is None
            assert reply.getheader("Content-Length") is not None
            assert json.loads(reply.read()) == {"jsonrpc": "2.0", "id": i, "result": {}}
        assert conn.sock is sock  # never reconnected
        assert wait_until(lambda: httpd.idle_connections == 1)
        assert httpd.open_connections == 1
        conn.close()
        assert wait_until(lambda: httpd.open_connections == 0)


def test_pipelined_requests_are_answered_in_order(server: McpServer) -> None:
    """Requests sent back to back in one write (pings, a 404 path with a body the app does
    not read, a health check, a malformed body) get their answers in order."""
    app = McpWsgiApp(server)
    session = open_session(app)
    with served(app) as httpd:
        raw = Raw(httpd)
        headers = session_headers(session)
        raw.send(
            raw.request(body=rpc("ping", id=1), headers=headers)
            + raw.request(body=b"x" * 5000, headers=headers, path="/elsewhere")
            + raw.request(body=rpc("ping", id=2), headers=headers)
            + raw.request("GET", path="/healthz")
            + raw.request(body=b"{not json", headers=headers)
            + raw.request(body=rpc("ping", id=3), headers=headers)
        )
        answers = [raw.answer() for _ in range(6)]
        raw.close()
    assert [(a.status, a.closes) for a in answers] == [(200, False), (404, False)] + [
        (200, False)
    ] * 4
    assert [answers[i].json()["id"] for i in (0, 2, 5)] == [1, 2, 3]
    assert answers[3].json() == {"status": "ok"}
    assert answers[4].json()["error"]["code"] == PARSE_ERROR
    assert {a.version for a in answers} == {"HTTP/1.1"}


def test_the_connection_carries_on_after_error_answers(server: McpServer) -> None:
    """400 (no session), 404 (unknown session), 405, 406, 413 (a small body over the limit,
    skipped by the server) and -32700 answers each leave the connection usable."""
    app = McpWsgiApp(server, max_body_bytes=1000)
    session = open_session(app)
    with served(app) as httpd:
        raw = Raw(httpd)
        ping = rpc("ping")
        answers = [
            raw.call(body=ping),
            raw.call(body=ping, headers={"Mcp-Session-Id": "unknown"}),
            raw.call("PUT", body=ping),
            raw.call(body=ping, headers={**session_headers(session), "Accept": "text/html"}),
            raw.call(body=b"[" * 5000, headers=session_headers(session)),
            raw.call(body=b"{", headers=session_headers(session)),
            raw.call(body=rpc("ping", id=9), headers=session_headers(session)),
        ]
        assert httpd.open_connections == 1
        raw.close()
    assert [(a.status, a.closes) for a in answers] == [
        (400, False),
        (404, False),
        (405, False),
        (406, False),
        (413, False),
        (200, False),
        (200, False),
    ]
    assert [a.json()["error"]["code"] for a in answers[:6]] == [INVALID_REQUEST] * 5 + [PARSE_ERROR]
    assert answers[-1].json() == {"jsonrpc": "2.0", "id": 9, "result": {}}


def test_a_large_unread_body_closes_the_connection_after_its_answer(server: McpServer) -> None:
    """A body over the limit that is larger than the server skips (64 KiB) gets its 413 with
    Connection: close, and the connection ends."""
    app = McpWsgiApp(server, max_body_bytes=100)
    with served(app) as httpd:
        raw = Raw(httpd)
        body = b"x" * 200_000
        raw.send(raw.request(body=body)[: -len(body)])  # the head: the server answers at once
        answer = raw.answer()
        assert (answer.status, answer.closes) == (413, True)
        assert raw.at_eof()
        raw.close()


def test_the_connection_carries_on_after_a_tasks_result_stream(server: McpServer) -> None:
    """tasks/result of a task needing input streams (chunked) the elicitation request; once
    answered, the stream ends with the result, and the same connection serves the next
    request."""
    app = McpWsgiApp(server, keepalive_s=0.2)
    session = open_session(app)
    sse = session_headers(session, JSON_AND_SSE)
    with served(app) as httpd:
        raw = Raw(httpd)
        created = raw.call(
            body=rpc(
                "tools/call",
                {"name": "confirm_action", "arguments": {"action": "go"}, "task": {}},
            ),
            headers=sse,
        ).json()
        task_id = created["result"]["task"]["taskId"]
        raw.send(raw.request(body=rpc("tasks/result", {"taskId": task_id}, id=7), headers=sse))
        head = raw.head()
        assert (head.status, head.headers["content-type"]) == (200, "text/event-stream")
        assert head.headers["transfer-encoding"] == "chunked" and not head.closes
        chunk = raw.chunk()
        while not chunk.startswith(b"event: message"):
            chunk = raw.chunk()  # keep-alive comments
        request = json.loads(chunk.split(b"data: ", 1)[1])
        assert request["method"] == "elicitation/create"
        other = Raw(httpd)
        answered = other.call(
            body={
                "jsonrpc": "2.0",
                "id": request["id"],
                "result": {"action": "accept", "content": {"confirm": True}},
            },
            headers=sse,
        )
        assert answered.status == 202
        rest = b"".join(iter(raw.chunk, b""))
        events = [json.loads(line[6:]) for line in rest.split(b"\n") if line.startswith(b"data: ")]
        assert events[-1]["id"] == 7
        assert events[-1]["result"]["content"] == [{"type": "text", "text": "Done: go"}]
        after = raw.call(body=rpc("ping", id=8), headers=sse)
        assert (after.status, after.json()["id"]) == (200, 8)
        other.close()
        raw.close()


def test_the_connection_carries_on_after_a_get_stream_ended_by_delete(server: McpServer) -> None:
    """A session's GET stream (chunked) ends when the session is deleted; the same connection
    then answers the next request (404: the session is gone)."""
    app = McpWsgiApp(server, keepalive_s=0.2)
    session = open_session(app)
    with served(app) as httpd:
        raw = Raw(httpd)
        raw.send(raw.request("GET", headers=session_headers(session, "text/event-stream")))
        head = raw.head()
        assert (head.status, head.headers["transfer-encoding"]) == (200, "chunked")
        assert raw.chunk() == b": stream open\n\n"
        other = Raw(httpd)
        assert other.call("DELETE", headers=session_headers(session)).status == 200
        rest = b"".join(iter(raw.chunk, b""))
        assert set(rest.split(b"\n\n")) <= {b": keepalive", b""}
        gone = raw.call(body=rpc("ping"), headers=session_headers(session))
        assert (gone.status, gone.closes) == (404, False)
        other.close()
        raw.close()


def test_connection_close_from_the_client_is_honoured(server: McpServer) -> None:
    """An HTTP/1.1 request with Connection: close gets Connection: close, then the server
    closes the connection."""
    with served(McpWsgiApp(server)) as httpd:
        raw = Raw(httpd)
        answer = raw.call("GET", path="/healthz", headers={"Connection": "close"})
        assert (answer.status, answer.closes) == (200, True)
        assert raw.at_eof()
        raw.close()
        assert wait_until(lambda: httpd.open_connections == 0)


def test_http_1_0_clients_close_unless_they_ask_for_keep_alive(server: McpServer) -> None:
    """An HTTP/1.0 request is answered and the connection closed; with Connection:
    keep-alive it stays open (and the answer says so)."""
    with served(McpWsgiApp(server)) as httpd:
        plain = Raw(httpd)
        answer = plain.call("GET", path="/healthz", version="HTTP/1.0")
        assert (answer.status, answer.closes) == (200, True)
        assert plain.at_eof()
        plain.close()
        kept = Raw(httpd)
        keep = {"Connection": "keep-alive"}
        first = kept.call("GET", path="/healthz", version="HTTP/1.0", headers=keep)
        assert (first.status, first.headers["connection"]) == (200, "keep-alive")
        second = kept.call("GET", path="/healthz", version="HTTP/1.0", headers=keep)
        assert second.status == 200
        kept.close()


def test_an_http_1_0_stream_ends_with_the_connection(server: McpServer) -> None:
    """An SSE answer to an HTTP/1.0 client (no chunked encoding there) is delimited by the
    connection's close, even when the client asked for keep-alive."""
    app = McpWsgiApp(server, keepalive_s=0.2)
    session = open_session(app)
    with served(app) as httpd:
        raw = Raw(httpd)
        headers = {**session_headers(session, "text/event-stream"), "Connection": "keep-alive"}
        raw.send(raw.request("GET", headers=headers, version="HTTP/1.0"))
        head = raw.head()
        assert head.status == 200 and head.closes and "transfer-encoding" not in head.headers
        app.sessions.remove(session)  # ends the stream, then the connection
        events = raw.rest().split(b"\n\n")
        assert events[0] == b": stream open" and set(events[1:]) <= {b": keepalive", b""}
        raw.close()
        assert wait_until(lambda: httpd.open_connections == 0)


def test_an_idle_connection_is_closed_quietly_after_the_keepalive_timeout(
    server: McpServer,
) -> None:
    """A connection idle for keepalive_timeout_s is closed without an answer; one that keeps
    sending requests within it stays open however long it lives."""
    with served(McpWsgiApp(server), keepalive_timeout_s=0.4, read_timeout_s=0.6) as httpd:
        busy = Raw(httpd)
        idle = Raw(httpd)
        assert idle.call("GET", path="/healthz").status == 200
        went_idle = time.monotonic()
        for _ in range(5):  # 1.25 s: past both timeouts, counted from the first connection
            assert busy.call("GET", path="/healthz").status == 200
            time.sleep(0.25)
        assert idle.at_eof(timeout=0.1)  # closed meanwhile, nothing sent
        assert time.monotonic() - went_idle > 0.4
        assert wait_until(lambda: httpd.open_connections == 1)
        busy.close()
        idle.close()


def test_a_later_request_that_stalls_gets_408(server: McpServer) -> None:
    """The read timeout restarts with each request: a second request that stops mid-headers
    gets 408 (JSON-RPC) about read_timeout_s after its first byte, and the connection ends."""
    with served(McpWsgiApp(server), read_timeout_s=0.5, keepalive_timeout_s=5) as httpd:
        raw = Raw(httpd)
        assert raw.call("GET", path="/healthz").status == 200
        time.sleep(0.7)  # idle longer than the read timeout: not an error
        raw.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = time.monotonic()
        answer = raw.answer()
        waited = time.monotonic() - sent
        assert (answer.status, answer.closes) == (408, True)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["code"] == INVALID_REQUEST
        assert 0.4 < waited < 2.0, waited
        assert raw.at_eof()
        raw.close()


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /mcp HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /mcp HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", 431),
        (b"POST /mcp HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GARBAGE\r\n\r\n", 400),
    ],
    ids=[
        "request-line",
        "header-line",
        "header-count",
        "two-lengths",
        "signed-length",
        "length-and-chunked",
        "unknown-coding",
        "garbled",
    ],
)
def test_refused_heads_on_a_kept_alive_connection_get_json_rpc_errors_and_close_it(
    server: McpServer, request_head: bytes, status: int
) -> None:
    """After a served request, an oversized head (414, 431) or one whose body framing cannot
    be trusted (400, 501) gets a JSON-RPC error with Connection: close, and the connection
    ends."""
    with served(McpWsgiApp(server)) as httpd:
        raw = Raw(httpd)
        assert raw.call("GET", path="/healthz").status == 200
        raw.send(request_head)
        answer = raw.answer()
        assert (answer.status, answer.closes) == (status, True)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["code"] == INVALID_REQUEST
        assert raw.at_eof()
        raw.close()


def test_a_chunked_request_body_is_read_and_the_connection_carries_on(
    server: McpServer,
) -> None:
    """A Transfer-Encoding: chunked body (with an extension and a trailer) reaches the app
    de-chunked; the next request on the connection is served."""
    app = McpWsgiApp(server)
    session = open_session(app)
    with served(app) as httpd:
        raw = Raw(httpd)
        body = json.dumps(rpc("ping", id=4)).encode()
        head = raw.request(headers={**session_headers(session), "Transfer-Encoding": "chunked"})
        head = head.replace(b"Content-Length: 0\r\n", b"")
        raw.send(
            head
            + b"%x;ext=1\r\n%s\r\n" % (10, body[:10])
            + b"%X\r\n%s\r\n" % (len(body) - 10, body[10:])
            + b"0\r\nX-Trailer: 1\r\n\r\n"
        )
        answer = raw.answer()
        assert (answer.status, answer.json()["id"], answer.closes) == (200, 4, False)
        assert raw.call(body=rpc("ping", id=5), headers=session_headers(session)).status == 200
        raw.close()


def test_a_malformed_chunked_body_gets_400_and_closes_the_connection(server: McpServer) -> None:
    """A chunk size that is not hexadecimal: the app's "body could not be read" 400, and the
    connection ends."""
    with served(McpWsgiApp(server)) as httpd:
        raw = Raw(httpd)
        head = raw.request(headers={"Transfer-Encoding": "chunked"})
        raw.send(head.replace(b"Content-Length: 0\r\n", b"") + b"zz\r\n{}\r\n0\r\n\r\n")
        answer = raw.answer()
        assert (answer.status, answer.closes) == (400, True)
        assert answer.json()["error"]["code"] == INVALID_REQUEST
        assert raw.at_eof()
        raw.close()


def test_a_client_that_leaves_mid_answer_is_forgotten_quietly(
    server: McpServer, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Clients closing mid-stream (a GET stream, a tasks/result stream) or before reading a
    large answer: the server frees their connections and streams, keeps serving others, and
    writes nothing on stderr and no warning or error."""
    caplog.set_level(logging.DEBUG, logger="taskstore.wsgi")
    app = McpWsgiApp(server, keepalive_s=0.05)
    session = open_session(app)
    sse = session_headers(session, JSON_AND_SSE)
    with served(app) as httpd:
        stream = Raw(httpd)
        stream.send(stream.request("GET", headers=session_headers(session, "text/event-stream")))
        assert stream.head().status == 200
        waiting = Raw(httpd)
        created = waiting.call(body=rpc("tools/call", {"name": "gated", "task": {}}), headers=sse)
        task_id = created.json()["result"]["task"]["taskId"]
        waiting.send(waiting.request(body=rpc("tasks/result", {"taskId": task_id}), headers=sse))
        assert waiting.head().headers["content-type"] == "text/event-stream"
        big = Raw(httpd)
        big.send(
            big.request(
                body=rpc("tools/call", {"name": "echo", "arguments": {"text": "x" * 3_000_000}}),
                headers=sse,
            )
        )
        for client in (stream, waiting, big):
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset: the server's next write fails
        assert wait_until(lambda: httpd.open_connections == 0)
        again = Raw(httpd)  # the session's stream was released: it opens again (not 409)
        again.send(again.request("GET", headers=session_headers(session, "text/event-stream")))
        assert again.head().status == 200
        again.close()
        fresh = Raw(httpd)
        assert fresh.call(body=rpc("ping", id=3), headers=sse).json()["id"] == 3
        fresh.close()
    server.release.set()  # type: ignore[attr-defined]
    assert capfd.readouterr().err == ""
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_at_the_cap_answers_end_their_connection(server: McpServer) -> None:
    """With a cap of 2, an answer keeps its connection while a slot is free, and says
    Connection: close while both are taken (no connection idles on a full server)."""
    with served(McpWsgiApp(server), max_connections=2) as httpd:
        first = Raw(httpd)
        assert not first.call("GET", path="/healthz").closes
        second = Raw(httpd)
        assert wait_until(lambda: httpd.open_connections == 2)
        answer = second.call("GET", path="/healthz")
        assert (answer.status, answer.closes) == (200, True)
        assert second.at_eof()
        assert wait_until(lambda: httpd.open_connections == 1)
        assert not first.call("GET", path="/healthz").closes  # a slot is free again
        first.close()
        second.close()


def test_at_the_cap_a_connection_idle_long_enough_makes_room(server: McpServer) -> None:
    """At the cap, a new connection gets 503 while the idle connection has been idle for less
    than replace_idle_after_s; past it, the new connection takes its place (the idle one is
    closed quietly) and is served."""
    with served(McpWsgiApp(server), max_connections=2, read_timeout_s=10) as httpd:
        idle = Raw(httpd)
        assert idle.call("GET", path="/healthz").status == 200
        assert wait_until(lambda: httpd.idle_connections == 1)
        busy = Raw(httpd)
        busy.send(b"POST /mcp HTTP/1.1\r\n")  # mid-request: never replaced
        assert wait_until(lambda: httpd.open_connections == 2)
        httpd.replace_idle_after_s = 60.0
        early = Raw(httpd)
        refused = early.answer()
        assert (refused.status, refused.headers["retry-after"], refused.closes) == (503, "1", True)
        assert refused.json()["error"]["code"] == -32000
        httpd.replace_idle_after_s = 0.0
        later = Raw(httpd)
        answer = later.call("GET", path="/healthz")
        assert (answer.status, answer.closes) == (200, True)  # the server is still full
        assert idle.at_eof()
        assert wait_until(lambda: httpd.open_connections == 1)  # the busy one
        for client in (idle, busy, early, later):
            client.close()


def test_shutting_down_closes_idle_connections(server: McpServer) -> None:
    """Stopping the server closes its idle kept-alive connections."""
    app = McpWsgiApp(server)
    with served(app) as httpd:
        raw = Raw(httpd)
        assert raw.call("GET", path="/healthz").status == 200
        assert wait_until(lambda: httpd.idle_connections == 1)
    assert raw.at_eof()
    raw.close()


# -- any WSGI application -----------------------------------------------------------------------


def plain_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """``/stream``: three chunks, no length; ``/fail``: raises before answering; ``/short``:
    fewer bytes than its Content-Length; else echoes the body it reads (with a length)."""
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("boom")
    if path == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        yield b"12345"
        return
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from (b"one ", b"", b"two ", b"three")
        return
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    yield body


def test_any_wsgi_app_gets_exact_framing_on_a_kept_alive_connection(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A generator without a length is sent chunked (empty chunks skipped) to HTTP/1.1 and
    ended by the close for HTTP/1.0; an app failing before its answer gets a JSON-RPC 500 and
    the connection ends; so does an answer shorter than its Content-Length. The failures are
    logged on taskstore.wsgi, never printed."""
    with served(plain_app) as httpd:
        raw = Raw(httpd)
        streamed = raw.call("GET", path="/stream")
        assert (streamed.headers["transfer-encoding"], streamed.body) == (
            "chunked",
            b"one two three",
        )
        echoed = raw.call(body=b"hello")
        assert (echoed.status, echoed.body, echoed.closes) == (200, b"hello", False)
        failed = raw.call("GET", path="/fail")
        assert (failed.status, failed.closes) == (500, True)
        assert failed.json()["error"]["code"] == -32603
        assert raw.at_eof()
        raw.close()
        old = Raw(httpd)
        ended = old.call(
            "GET", path="/stream", version="HTTP/1.0", headers={"Connection": "keep-alive"}
        )
        assert (ended.body, ended.closes) == (b"one two three", True)
        old.close()
        short = Raw(httpd)
        short.send(short.request("GET", path="/short"))
        assert short.head().headers["content-length"] == "10"
        assert short.rest() == b"12345"  # cut short: the connection ends
        short.close()
    assert capfd.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "error answering a request",
        "the application sent 5 body bytes for a Content-Length of 10",
    ]


# -- gunicorn's threaded worker, which the README recommends ------------------------------------


@contextmanager
def gunicorn_serving_the_example() -> Iterator[int]:
    """examples/wsgi_app.py on a memory store under gunicorn (one worker, threads, keep-alive
    5 s); its port."""
    need_modules("gunicorn")
    import gunicorn  # type: ignore[import-untyped,unused-ignore]

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "--threads",
        "4",
        "--keep-alive",
        "5",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(EXAMPLES),
        *(["--no-control-socket"] if gunicorn.version_info >= (25,) else []),
        "wsgi_app:app",
    ]
    env = {**os.environ, "TASKSTORE_URL": "memory://", "MCP_KEEPALIVE_S": "0.2"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:

        def healthy() -> bool:
            try:
                probe = Raw(port, timeout=2)
            except OSError:
                return False
            try:
                return probe.call("GET", path="/healthz").status == 200
            except OSError:
                return False
            finally:
                probe.close()

        assert wait_until(healthy, timeout=30), "gunicorn did not start"
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.e2e
def test_gunicorn_threads_keep_a_connection_across_a_stream_and_errors() -> None:
    """Under gunicorn's threaded worker the app's answers keep one connection alive too: an
    initialize, a tasks/result stream (chunked) answered through another connection, an
    unknown session's 404 and pings, in turn on the same connection."""
    with gunicorn_serving_the_example() as port:
        raw = Raw(port)
        init = raw.call(body=rpc("initialize", INIT_PARAMS, id=0))
        assert init.status == 200 and not init.closes
        sse = session_headers(init.headers["mcp-session-id"], JSON_AND_SSE)
        created = raw.call(
            body=rpc(
                "tools/call",
                {"name": "confirm_action", "arguments": {"action": "go"}, "task": {}},
            ),
            headers=sse,
        )
        task_id = created.json()["result"]["task"]["taskId"]
        raw.send(raw.request(body=rpc("tasks/result", {"taskId": task_id}, id=7), headers=sse))
        head = raw.head()
        assert head.headers["transfer-encoding"] == "chunked" and not head.closes
        chunk = raw.chunk()
        while not chunk.startswith(b"event: message"):
            chunk = raw.chunk()
        asked = json.loads(chunk.split(b"data: ", 1)[1])
        other = Raw(port)
        accept = {"action": "accept", "content": {"confirm": True}}
        answer = {"jsonrpc": "2.0", "id": asked["id"], "result": accept}
        assert other.call(body=answer, headers=sse).status == 202
        other.close()
        assert b'"id":7' in b"".join(iter(raw.chunk, b""))
        after_stream = raw.call(body=rpc("ping", id=8), headers=sse)
        unknown = raw.call(body=rpc("ping", id=9), headers={"Mcp-Session-Id": "nope"})
        after_error = raw.call(body=rpc("ping", id=10), headers=sse)
        assert [(a.status, a.closes) for a in (after_stream, unknown, after_error)] == [
            (200, False),
            (404, False),
            (200, False),
        ]
        raw.close()


# -- the fuzzed bodies of test_wsgi_fuzz, over one kept-alive connection ------------------------


@pytest.fixture(scope="module")
def fuzz_connection(
    fuzz_app: tuple[McpWsgiApp, str],  # noqa: F811 - the imported fixture
) -> Iterator[tuple[http.client.HTTPConnection, McpWsgiApp, str]]:
    """The fuzzing app on the bundled server, one client connection to it, and its session."""
    app, session = fuzz_app
    httpd = make_wsgi_server(app, "127.0.0.1", 0)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=30)
    try:
        yield conn, app, session
    finally:
        conn.close()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> WsgiResponse:
    conn.request(
        "POST",
        "/mcp",
        body,
        {"Content-Type": "application/json", "Accept": JSON_AND_SSE, **headers},
    )
    reply = conn.getresponse()
    chunks = iter([reply.read()])
    return WsgiResponse(f"{reply.status} {reply.reason}", reply.getheaders(), chunks)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_fuzzed_bodies_through_one_kept_alive_connection(
    fuzz_connection: tuple[http.client.HTTPConnection, McpWsgiApp, str], body: bytes
) -> None:
    """test_wsgi_fuzz's bodies, posted over HTTP on one connection, get the answer of their
    class; the connection is never replaced, so no answer left it out of step."""
    conn, app, session = fuzz_connection
    sock = conn.sock
    headers = {"Mcp-Session-Id": session}
    reply = _post(conn, body, headers)
    check(reply, expect(body, headers, session))
    _forget_new_session(app, reply)
    ping = msgspec.json.encode(rpc("ping", id="still-alive"))
    assert _post(conn, ping, headers).json() == {
        "jsonrpc": "2.0",
        "id": "still-alive",
        "result": {},
    }
    assert sock is None or conn.sock is sock
