"""Throughput and latency of the WSGI MCP endpoint over loopback HTTP.

Starts ``python -m taskstore serve`` (threaded wsgiref, in-memory store by default) in a
subprocess, opens one MCP session per client thread, and measures, with N concurrent clients:

- ``ping``: the protocol floor (HTTP + JSON-RPC + session lookup, no store access);
- ``tasks/get`` of an existing task;
- a task-augmented ``tools/call`` (``word_count`` with ``task: {}``): creates a task, answers
  ``CreateTaskResult`` at once, runs the tool on the pool.

Each request uses a fresh connection (wsgiref speaks HTTP/1.0), as the protocol floor does too.
Prints a Markdown table: requests/s, p50 and p99 latency. Target: ``tasks/get`` ≥ 0.8× ``ping``.

    python benchmarks/bench_server.py [--clients 8] [--duration 5] [--store URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"},
}


class Session:
    """One MCP session; every call opens a new connection (HTTP/1.0 server)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = (
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            parts.path,
        )
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        status, headers, _ = self.post(
            {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT}
        )
        assert status == 200
        self.headers["Mcp-Session-Id"] = headers["mcp-session-id"]

    def post(self, message: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("POST", self.path, json.dumps(message).encode(), self.headers)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            message["params"] = params
        status, _, body = self.post(message)
        reply: dict[str, Any] = json.loads(body)
        if status != 200 or "error" in reply:
            raise RuntimeError(f"{method} failed: {status} {reply}")
        return reply


def measure(
    sessions: list[Session], method: str, params_for: Any, duration: float
) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in sessions]
    start = threading.Barrier(len(sessions) + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        session = sessions[index]
        params = params_for(session)
        start.wait()
        out = latencies[index]
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            session.call(method, params)
            out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + duration
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = sorted(x for chunk in latencies for x in chunk)
    return {
        "requests": len(merged),
        "rps": len(merged) / elapsed,
        "p50_ms": statistics.median(merged) * 1000,
        "p99_ms": merged[min(len(merged) - 1, int(len(merged) * 0.99))] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--store", default="memory://?max_tasks_per_owner=none")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "taskstore", "serve", "--port", "0", "--store", args.store],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        sessions = [Session(url) for _ in range(args.clients)]
        task_ids = {}
        for session in sessions:
            created = session.call(
                "tools/call", {"name": "word_count", "arguments": {"text": "a b"}, "task": {}}
            )
            task_ids[id(session)] = created["result"]["task"]["taskId"]
        scenarios = [
            ("ping", "ping", lambda s: None),
            ("tasks/get", "tasks/get", lambda s: {"taskId": task_ids[id(s)]}),
            (
                "tools/call (task)",
                "tools/call",
                lambda s: {
                    "name": "word_count",
                    "arguments": {"text": "a b c"},
                    "task": {"ttl": 60000},
                },
            ),
        ]
        measure(sessions, "ping", lambda s: None, 1.0)  # warm-up
        results = {
            name: measure(sessions, method, params, args.duration)
            for name, method, params in scenarios
        }
    finally:
        server.terminate()
        server.communicate(timeout=15)

    version = sys.version.split()[0]
    print(f"clients={args.clients} duration={args.duration}s store={args.store} python={version}")
    print()
    print("| request | requests | req/s | p50 ms | p99 ms | vs ping |")
    print("|---|---:|---:|---:|---:|---:|")
    floor = results["ping"]["rps"]
    for name, r in results.items():
        cells = f"{r['requests']:.0f} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
        print(f"| {name} | {cells} | {r['rps'] / floor:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
