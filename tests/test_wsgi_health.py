"""``GET /healthz``: 200 while the store answers, 503 within the timeout when it does not,
never a word about the configuration; no session, no Origin rule."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import taskstore
from support.mcp import call_app
from support.servers import need_modules
from taskstore import TaskStore
from taskstore.backends.memory import InMemoryBackend
from taskstore.errors import BackendError
from taskstore.mcp import McpServer
from taskstore.wsgi import McpWsgiApp


class _Stalling(InMemoryBackend):
    """A backend whose reads fail or hang on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False
        self.release = threading.Event()
        self.stall = False

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail:
            raise BackendError("connection refused by redis://:hunter2@db.internal:6379")
        if self.stall:
            self.release.wait(30)
        return super().get(*args, **kwargs)


@pytest.fixture
def backend() -> Iterator[_Stalling]:
    made = _Stalling()
    yield made
    made.release.set()


@pytest.fixture
def app(backend: _Stalling) -> Iterator[McpWsgiApp]:
    store = TaskStore(backend)
    server = McpServer(store)
    app = McpWsgiApp(server, loopback_only=True, health_timeout_s=0.5)
    yield app
    app.close()
    server.close()
    store.close()


def test_healthy_store_answers_200_without_session_or_origin_rule(app: McpWsgiApp) -> None:
    """200 {"status": "ok"} with any Host and Origin (the probe is not a browser request)."""
    reply = call_app(
        app,
        "GET",
        path="/healthz",
        headers={"Host": "lb.internal:8080", "Origin": "https://elsewhere.example"},
    )
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
    assert reply.headers["cache-control"] == "no-store"


def test_a_failing_store_answers_503_and_reveals_nothing(
    app: McpWsgiApp, backend: _Stalling, caplog: pytest.LogCaptureFixture
) -> None:
    """A BackendError is 503 {"status": "unavailable"}: no URL, password or error text in
    the answer (the log has it)."""
    backend.fail = True
    reply = call_app(app, "GET", path="/healthz")
    assert reply.status == 503
    assert reply.json() == {"status": "unavailable"}
    assert b"hunter2" not in reply.body and b"redis" not in reply.body
    assert reply.headers["retry-after"] == "1"
    assert "the store failed" in caplog.text


def test_a_stalled_store_answers_503_within_the_timeout(
    app: McpWsgiApp, backend: _Stalling
) -> None:
    """A probe stuck in the driver does not hold the answer: 503 after the 0.5 s timeout; a
    second check meanwhile shares the stuck probe instead of starting another; once the store
    answers again, 200."""
    backend.stall = True
    started = time.monotonic()
    assert call_app(app, "GET", path="/healthz").status == 503
    assert call_app(app, "GET", path="/healthz").status == 503
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5.0, elapsed
    backend.stall = False
    backend.release.set()
    assert call_app(app, "GET", path="/healthz").status == 200


def test_the_path_is_configurable_and_other_methods_are_405(backend: _Stalling) -> None:
    """health_path moves the check; None turns it off (the path is then the endpoint's 404);
    POST to it is 405."""
    store = TaskStore(backend)
    server = McpServer(store)
    moved = McpWsgiApp(server, health_path="/-/health")
    off = McpWsgiApp(server, health_path=None)
    try:
        assert call_app(moved, "GET", path="/-/health").status == 200
        assert call_app(moved, "POST", path="/-/health", body={}).status == 405
        assert call_app(moved, "GET", path="/healthz").status == 404
        assert call_app(off, "GET", path="/healthz").status == 404
    finally:
        moved.close()
        off.close()
        server.close()
        store.close()


@pytest.mark.redis
@pytest.mark.redis_server
def test_healthz_follows_a_real_redis_server(request: pytest.FixtureRequest) -> None:
    """200 with redis-server up; 503 within the timeout once it is stopped, with nothing of
    the URL in the answer; 200 again after it restarts."""
    need_modules("redis")
    server = request.getfixturevalue("dedicated_redis_server")
    store = taskstore.open(server.url, retry_deadline_ms=1000)
    mcp = McpServer(store)
    app = McpWsgiApp(mcp, health_timeout_s=1.0)
    try:
        assert call_app(app, "GET", path="/healthz").status == 200
        server.stop()
        started = time.monotonic()
        reply = call_app(app, "GET", path="/healthz")
        elapsed = time.monotonic() - started
        assert reply.status == 503, reply.body
        assert elapsed < 3.0, elapsed
        assert str(server.port).encode() not in reply.body
        assert b"127.0.0.1" not in reply.body
        server.start()
        deadline = time.monotonic() + 10
        while call_app(app, "GET", path="/healthz").status != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        app.close()
        mcp.close()
        store.close()
