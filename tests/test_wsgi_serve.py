"""``python -m taskstore serve``: the URL line, demo tools, concurrency and clean shutdown."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
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


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_serve_applies_its_read_timeout_and_connection_cap_options() -> None:
    """serve --read-timeout 1 --max-connections 1: while a stalled connection is open, another
    gets 503 (JSON-RPC); the stalled one gets 408 (JSON-RPC) within about a second; then
    requests are served again."""
    proc = start("--port", "0", "--read-timeout", "1", "--max-connections", "1")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            opened = time.monotonic()
            time.sleep(0.3)  # the server accepts it and starts reading
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                extra.sendall(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                refused = read_to_end(extra)
            timed_out = read_to_end(stalled)
            waited = time.monotonic() - opened
        assert refused.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in refused
        assert b"Connection: close\r\n" in refused
        assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"]["code"] == -32000
        assert timed_out.startswith(b"HTTP/1.1 408 ") and b"Connection: close\r\n" in timed_out
        assert json.loads(timed_out.partition(b"\r\n\r\n")[2])["error"]["code"] == -32600
        assert 0.9 < waited < 3.0, waited
        # Served again once the server has let go of the stalled connection: the app itself
        # answers (an unknown session is its 404).
        codes: list[int] = []
        while not codes or (codes[-1] == 503 and len(codes) < 40):
            with pytest.raises(urllib.error.HTTPError) as refused_or_unknown:
                post(url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, session="nope")
            codes.append(refused_or_unknown.value.code)
            refused_or_unknown.value.close()
            time.sleep(0.05)
        assert codes[-1] == 404, codes
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_serve_keeps_connections_alive_and_stops_with_them_open(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    """serve answers several requests on one connection (HTTP/1.1), and SIGTERM stops it at
    once and cleanly while a kept-alive connection is idle and a notification stream open."""
    proc, line = served
    url = line.strip()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stream_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        conn.request("POST", "/mcp", json.dumps(init), headers)
        reply = conn.getresponse()
        headers["Mcp-Session-Id"] = reply.getheader("Mcp-Session-Id", "")
        reply.read()
        sock = conn.sock
        for request_id in range(1, 4):
            ping = {"jsonrpc": "2.0", "id": request_id, "method": "ping"}
            conn.request("POST", "/mcp", json.dumps(ping), headers)
            reply = conn.getresponse()
            assert (reply.version, json.loads(reply.read())["id"]) == (11, request_id)
        assert conn.sock is sock  # one connection throughout
        stream_conn.request("GET", "/mcp", headers={**headers, "Accept": "text/event-stream"})
        stream = stream_conn.getresponse()
        assert stream.readline() == b": stream open\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert (proc.returncode, out) == (0, "")
        assert "Traceback" not in err
        assert time.monotonic() - started < 5
    finally:
        conn.close()
        stream_conn.close()


def test_serve_refuses_limits_that_are_not_positive() -> None:
    """serve exits 2 with a usage error for a read timeout or connection cap of 0."""
    for option in ("--read-timeout", "--max-connections"):
        proc = start("--port", "0", option, "0")
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (2, "")
        assert f"argument {option}: must be positive: 0" in err


def test_serve_help_states_the_server_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """serve --help gives the bundled server's actual default read timeout and cap."""
    from taskstore.cli import main
    from taskstore.http.serve import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_S

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"request (default {DEFAULT_READ_TIMEOUT_S:g})" in text
    assert f"get 503 (default {DEFAULT_MAX_CONNECTIONS})" in text


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
