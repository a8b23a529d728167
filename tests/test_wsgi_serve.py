"""``python -m taskstore serve``: the URL line, demo tools, concurrency and clean shutdown."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest


def start(*args: str) -> subprocess.Popen[str]:
    """``python -m taskstore serve ARGS`` with this environment's interpreter and package."""
    return subprocess.Popen(
        [sys.executable, "-m", "taskstore", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A ``serve`` process on a free port and its URL line."""
    proc = start("--port", "0")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    yield proc, line
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)  # reaps the process and closes its pipes


def post(
    url: str, message: dict[str, Any], session: str | None = None
) -> tuple[dict[str, str], Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if session:
        headers["Mcp-Session-Id"] = session
    request = urllib.request.Request(url, json.dumps(message).encode(), headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        return dict(response.headers), (json.loads(body) if body else None)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_the_url_serves_and_stops_cleanly(
    served: tuple[subprocess.Popen[str], str], sig: int
) -> None:
    """serve prints exactly the endpoint URL, answers MCP with the demo tools, and exits 0 on
    SIGTERM or Ctrl-C."""
    proc, line = served
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/mcp\n", line), line
    url = line.strip()
    headers, init = post(
        url,
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
    )
    session = headers["Mcp-Session-Id"]
    assert init["result"]["capabilities"]["tasks"]["requests"] == {"tools": {"call": {}}}
    _, tools = post(url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, session)
    assert {t["name"]: t["execution"]["taskSupport"] for t in tools["result"]["tools"]} == {
        "long_job": "required",
        "word_count": "optional",
        "confirm_action": "required",
    }
    _, counted = post(
        url,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "word_count", "arguments": {"text": "a b c"}},
        },
        session,
    )
    assert counted["result"]["structuredContent"] == {"words": 3, "characters": 5}
    _, created = post(
        url,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "long_job",
                "arguments": {"steps": 1000, "interval": 1},
                "task": {"ttl": 60000},
            },
        },
        session,
    )
    task_id = created["result"]["task"]["taskId"]
    _, cancelled = post(
        url,
        {"jsonrpc": "2.0", "id": 4, "method": "tasks/cancel", "params": {"taskId": task_id}},
        session,
    )
    assert cancelled["result"]["status"] == "cancelled"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line was printed


def test_serve_reports_a_busy_port() -> None:
    """serve exits 1 with a message when the port is taken."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = start("--port", str(busy.getsockname()[1]))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out == ""
    assert "cannot listen on 127.0.0.1" in err


def test_serve_reports_a_bad_store_url() -> None:
    """serve exits 2 with the configuration error for an unknown store scheme."""
    proc = start("--store", "nosuch://x", "--port", "0")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == ""
    assert "nosuch" in err
