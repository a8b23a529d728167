"""Several workers, one deployment (issue: SQL backends, item 6): two server processes on one
durable store behind one client. A 2025-11-25 session started on one process is accepted by
the other; a task created through one is polled, answered (its input request) and completed
through the other.

Anonymous: two ``python -m taskstore serve --store URL`` processes (the session id owns the
tasks). Authenticated: two ``tests/e2e/shared_store_server.py URL`` processes (bearer tokens,
the subject owns them). Stores: SQLite (a temp file), PostgreSQL and a real redis-server.
Neither process is given a key: sessions are signed with the key every process derives from
the storage URL (``TaskStore.deployment_key``).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from support.servers import fresh_name, need_modules

SERVER = Path(__file__).with_name("shared_store_server.py")
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"elicitation": {}},
    "clientInfo": {"name": "workers-test", "version": "1"},
}
DEADLINE_S = 20.0


class Endpoint:
    """One server process; its URL is the first line it prints."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            _, err = self.proc.communicate(timeout=15)
            raise AssertionError(f"the server did not start: {err}")
        self.url = line
        parts = urlsplit(line)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path

    def stop(self) -> None:
        """SIGTERM, and a clean exit."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0, err


class Session:
    """One client session used through several endpoints (raw HTTP, as a client would)."""

    def __init__(self, token: str | None) -> None:
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        # The server keeps connections alive: the client closes them.
        self.connections: list[http.client.HTTPConnection] = []
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def post(
        self, endpoint: Endpoint, body: dict[str, Any], *, sse: bool = False
    ) -> http.client.HTTPResponse:
        """POST ``body`` to ``endpoint``; the open response."""
        headers = dict(self.headers)
        if sse:
            headers["Accept"] = "application/json, text/event-stream"
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=DEADLINE_S)
        self.connections.append(conn)
        conn.request("POST", endpoint.path, json.dumps(body).encode(), headers)
        return conn.getresponse()

    def close(self) -> None:
        """Close every connection this client opened."""
        for conn in self.connections:
            conn.close()

    def initialize(self, endpoint: Endpoint) -> None:
        """Start the session on ``endpoint``."""
        reply = self.post(endpoint, _rpc("initialize", INIT))
        assert reply.status == 200, reply.read()
        self.headers["Mcp-Session-Id"] = reply.headers["Mcp-Session-Id"]
        self.headers["MCP-Protocol-Version"] = "2025-11-25"
        reply.read()
        assert (
            self.post(endpoint, {"jsonrpc": "2.0", "method": "notifications/initialized"}).status
            == 202
        )

    def call(self, endpoint: Endpoint, method: str, params: dict[str, Any]) -> Any:
        """A request's JSON reply."""
        reply = self.post(endpoint, _rpc(method, params))
        assert reply.status == 200, (reply.status, reply.read())
        return json.loads(reply.read())


def _rpc(method: str, params: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _events(reply: http.client.HTTPResponse) -> Iterator[Any]:
    """The JSON messages of an SSE response, as they arrive."""
    data: list[str] = []
    while True:
        line = reply.readline()
        if not line:
            return
        text = line.decode("utf-8").rstrip("\r\n")
        if text.startswith("data: "):
            data.append(text[6:])
        elif not text and data:
            yield json.loads("\n".join(data))
            data = []


def _until(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.redis_server]),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A durable store URL both processes open (a fresh namespace per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    if request.param == "postgres":
        need_modules("psycopg", "psycopg_pool")
        return str(request.getfixturevalue("postgres_url")())
    need_modules("redis")
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix={fresh_name()}"


@pytest.fixture(params=["anonymous", "bearer"])
def pair(
    request: pytest.FixtureRequest, store_url: str
) -> Iterator[tuple[str | None, list[Endpoint]]]:
    """Two server processes over ``store_url``, and the token a client uses (``None``:
    anonymous ``serve`` processes)."""
    if request.param == "anonymous":
        argv = ["-m", "taskstore", "serve", "--store", store_url, "--port", "0"]
        token = None
    else:
        argv = [str(SERVER), store_url]
        token = "tok-a"
    endpoints: list[Endpoint] = []
    try:
        for _ in range(2):
            endpoints.append(Endpoint(argv))
        yield token, endpoints
    finally:
        for endpoint in endpoints:
            endpoint.stop()


def test_a_session_and_its_task_are_served_by_either_process(
    pair: tuple[str | None, list[Endpoint]], request: pytest.FixtureRequest
) -> None:
    """Started on A; the task created through A is polled on B, its input request is streamed
    and answered through B, and the result is fetched through B and seen completed on A."""
    token, (a, b) = pair
    client = Session(token)
    request.addfinalizer(client.close)
    client.initialize(a)
    created = client.call(
        a, "tools/call", {"name": "confirm_action", "arguments": {"action": "go"}, "task": {}}
    )
    task_id = created["result"]["task"]["taskId"]

    def status_on(endpoint: Endpoint) -> str:
        return str(client.call(endpoint, "tasks/get", {"taskId": task_id})["result"]["status"])

    assert _until(lambda: status_on(b) == "input_required")
    listed = client.call(b, "tasks/list", {})["result"]["tasks"]
    assert [task["taskId"] for task in listed] == [task_id]

    stream = client.post(b, _rpc("tasks/result", {"taskId": task_id}, request_id=7), sse=True)
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    events = _events(stream)
    asked = next(events)
    assert asked["method"] == "elicitation/create"
    answer = {
        "jsonrpc": "2.0",
        "id": asked["id"],
        "result": {"action": "accept", "content": {"confirm": True}},
    }
    assert client.post(b, answer).status == 202
    final = [event for event in events if event.get("id") == 7]
    assert final[0]["result"]["content"] == [{"type": "text", "text": "Done: go"}]
    assert status_on(a) == "completed"
    assert status_on(b) == "completed"

    if token is not None:
        # Another subject presenting the session id is refused on either process.
        client.headers["Authorization"] = "Bearer tok-b"
        for endpoint in (a, b):
            assert client.post(endpoint, _rpc("ping", {})).status == 404
