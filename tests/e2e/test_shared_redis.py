"""Two server processes sharing one Redis store: a task created through one is listed,
awaited (blocking tasks/result) and cancelled through the other."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import unavailable

pytestmark = pytest.mark.redis

SERVER = Path(__file__).with_name("shared_store_server.py")
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "t", "version": "1"},
}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of this test's own on a free loopback port."""
    if importlib.util.find_spec("redis") is None:
        unavailable("redis-py is not installed")
    try:
        importlib.import_module("taskstore.backends.redis")
    except ImportError:
        unavailable("taskstore.backends.redis is not available yet")
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install -y redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="taskstore-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None:
                unavailable("redis-server did not start")
            threading.Event().wait(0.025)
    client.close()
    yield f"redis://127.0.0.1:{port}/0?prefix=shared{port}"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def endpoints(redis_url: str) -> Iterator[list[str]]:
    """Two server processes over the same Redis store."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(SERVER), redis_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    urls = []
    for proc in procs:
        assert proc.stdout is not None
        urls.append(proc.stdout.readline().strip())
    yield urls
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=15)
        assert proc.returncode == 0


class Client:
    """A minimal MCP HTTP client for one session."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        }
        reply = urllib.request.urlopen(self._request("initialize", INIT), timeout=10)
        self.headers["Mcp-Session-Id"] = reply.headers["Mcp-Session-Id"]
        reply.close()

    def _request(self, method: str, params: Any) -> urllib.request.Request:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        return urllib.request.Request(self.url, json.dumps(body).encode(), dict(self.headers))

    def call(self, method: str, params: Any = None, timeout: float = 10) -> Any:
        with urllib.request.urlopen(self._request(method, params or {}), timeout=timeout) as reply:
            return json.loads(reply.read())


def test_two_processes_share_tasks_through_redis(endpoints: list[str]) -> None:
    """Created on A; listed, awaited and cancelled on B; A's running tool sees the cancel."""
    a, b = Client(endpoints[0], "tok-a"), Client(endpoints[1], "tok-a")
    quick = a.call(
        "tools/call", {"name": "long_job", "arguments": {"steps": 3, "interval": 0.1}, "task": {}}
    )
    quick_id = quick["result"]["task"]["taskId"]
    listed = b.call("tasks/list")["result"]["tasks"]
    assert quick_id in [t["taskId"] for t in listed]
    awaited = b.call("tasks/result", {"taskId": quick_id}, timeout=30)
    assert awaited["result"]["structuredContent"] == {"completedSteps": 3, "cancelled": False}
    assert awaited["result"]["_meta"]["io.modelcontextprotocol/related-task"] == {
        "taskId": quick_id
    }

    slow = a.call(
        "tools/call",
        {"name": "long_job", "arguments": {"steps": 1000, "interval": 0.1}, "task": {}},
    )
    slow_id = slow["result"]["task"]["taskId"]
    blocked: list[Any] = []
    waiter = threading.Thread(
        target=lambda: blocked.append(b.call("tasks/result", {"taskId": slow_id}, timeout=30))
    )
    waiter.start()
    cancelled = b.call("tasks/cancel", {"taskId": slow_id})
    assert cancelled["result"]["status"] == "cancelled"
    waiter.join(30)
    assert blocked[0]["error"]["code"] == -32602
    assert blocked[0]["error"]["data"] == {"taskId": slow_id, "status": "cancelled"}
    assert a.call("tasks/get", {"taskId": slow_id})["result"]["status"] == "cancelled"
    # Another owner on either process sees nothing.
    bob = Client(endpoints[1], "tok-b")
    assert bob.call("tasks/get", {"taskId": slow_id})["error"]["code"] == -32602
