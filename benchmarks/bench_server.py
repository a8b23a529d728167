"""Throughput and latency of the WSGI MCP endpoint over loopback HTTP.

Starts ``python -m taskstore serve`` (threaded wsgiref, in-memory store by default) in a
subprocess, with the interpreter running this script and the ``taskstore`` it imports, opens
one MCP session per client thread, and measures, with N concurrent clients:

- ``ping``: the protocol floor (HTTP + JSON-RPC + session lookup, no store access);
- ``tasks/get`` of an existing task;
- a task-augmented ``tools/call`` (``word_count`` with ``task: {}``): creates a task, answers
  ``CreateTaskResult`` at once, runs the tool on the pool.

Each request uses a fresh connection (wsgiref speaks HTTP/1.0), as the protocol floor does too.
The scenarios run in interleaved rounds (``_harness.run_rounds``: one warm-up round, then
``--rounds`` rounds; in each round every scenario runs for ``--duration / --rounds`` seconds,
the order reversed every other round), so a burst of load from elsewhere on the machine lands
on all of them. Prints a Markdown table: requests/s (median of the rounds, with the slowest and
fastest round), p50 and p99 latency over all timed requests, and each scenario's requests/s
over ping's as the median of the per-round ratios.

Target (issue 5): ``tasks/get`` ≥ 0.8× ``ping``, PASS or MISS computed from this run. It always
exits 0: a benchmark reports, it does not gate.

    .tox/all/bin/python benchmarks/bench_server.py            # 8 clients, 5 × 3 × 1 s, ~25 s
    .tox/all/bin/python benchmarks/bench_server.py --quick    # 3 rounds of 0.5 s, ~10 s
    .tox/all/bin/python benchmarks/bench_server.py [--clients 8] [--duration 5] [--rounds 5]
        [--store URL]
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
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from _harness import (
    Target,
    environment,
    load_average,
    percentile,
    progress,
    ratio,
    run_rounds,
    start_stamp,
    summary_line,
    table,
    targets_table,
)

import taskstore

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
        if status != 200:
            raise RuntimeError(f"initialize failed: HTTP {status}")
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


def run_clients(
    sessions: list[Session],
    method: str,
    params_for: Callable[[Session], dict[str, Any] | None],
    duration: float,
) -> tuple[float, list[float]]:
    """Every session calls ``method`` in a loop for ``duration`` seconds, all released
    together; requests per second over all clients, and every request's latency (s)."""
    latencies: list[list[float]] = [[] for _ in sessions]
    start = threading.Barrier(len(sessions) + 1)
    stop_at = [0.0]
    errors: list[BaseException] = []

    def client(index: int) -> None:
        session = sessions[index]
        params = params_for(session)
        start.wait()
        out = latencies[index]
        try:
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                session.call(method, params)
                out.append(time.perf_counter() - t0)
        except BaseException as exc:  # re-raised on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + duration
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    merged = [x for chunk in latencies for x in chunk]
    return len(merged) / elapsed, merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument(
        "--duration", type=float, help="timed seconds per scenario, over all rounds (5; quick 1.5)"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds (5; quick 3)")
    parser.add_argument("--store", default="memory://?max_tasks_per_owner=none")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.5 s")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds or (3 if args.quick else 5))
    duration = args.duration or (1.5 if args.quick else 5.0)
    per_round = duration / rounds
    began = start_stamp()
    started = time.perf_counter()
    log = progress(started)

    # The server runs the taskstore this script imports (the environment's, not the checkout's).
    where = os.path.dirname(os.path.dirname(os.path.abspath(taskstore.__file__)))
    env = {**os.environ, "PYTHONPATH": where}
    server = subprocess.Popen(
        [sys.executable, "-m", "taskstore", "serve", "--port", "0", "--store", args.store],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        log(f"server at {url}; {args.clients} sessions")
        sessions = [Session(url) for _ in range(args.clients)]
        task_ids = {}
        for session in sessions:
            created = session.call(
                "tools/call", {"name": "word_count", "arguments": {"text": "a b"}, "task": {}}
            )
            task_ids[id(session)] = created["result"]["task"]["taskId"]
        scenarios: dict[str, tuple[str, Callable[[Session], dict[str, Any] | None]]] = {
            "ping": ("ping", lambda s: None),
            "tasks/get": ("tasks/get", lambda s: {"taskId": task_ids[id(s)]}),
            "tools/call (task)": (
                "tools/call",
                lambda s: {
                    "name": "word_count",
                    "arguments": {"text": "a b c"},
                    "task": {"ttl": 60000},
                },
            ),
        }
        latencies: dict[str, list[float]] = {name: [] for name in scenarios}
        calls: dict[str, int] = dict.fromkeys(scenarios, 0)

        def scenario(name: str) -> Callable[[], float]:
            method, params = scenarios[name]

            def one_round() -> float:
                rps, times = run_clients(sessions, method, params, per_round)
                latencies[name].extend(times)  # warm-up round included: cleared below
                calls[name] += len(times)
                return rps

            return one_round

        def clear_after_warmup(message: str) -> None:
            if message.startswith("warm-up"):
                for name in scenarios:
                    latencies[name].clear()
                    calls[name] = 0
            log(message)

        log(f"1 + {rounds} interleaved rounds of {per_round:.2f} s per scenario")
        rates = run_rounds({name: scenario(name) for name in scenarios}, rounds,
                           log=clear_after_warmup)
    finally:
        server.terminate()
        server.communicate(timeout=15)

    print("# MCP endpoint over HTTP benchmark" + (" (--quick)" if args.quick else "") + "\n")
    for line in environment(
        f"server: python -m taskstore serve --store {args.store} (wsgiref, a thread per "
        f"request); {args.clients} client threads, one MCP session each, a new connection "
        "per request",
        started=began,
    ):
        print(f"- {line}")
    print(f"\n{rounds} interleaved rounds after a warm-up round, {per_round:.2f} s per scenario "
          "per round.\n")
    floor = rates["ping"]
    rows = []
    for name, values in rates.items():
        times = latencies[name]
        relative = ratio(values, floor)
        rows.append([
            name,
            str(calls[name]),
            f"{statistics.median(values):,.0f}",
            f"{min(values):,.0f}–{max(values):,.0f}",
            f"{percentile(times, 50) * 1000:.2f}",
            f"{percentile(times, 99) * 1000:.2f}",
            str(relative),
            relative.range,
        ])
    print(table(
        ["request", "requests", "req/s (median)", "req/s per round", "p50 ms", "p99 ms",
         "vs ping", "per-round range"],
        rows,
        left=(0, 7),
    ))
    targets = [Target("tasks/get req/s / ping req/s", ratio(rates["tasks/get"], floor), ">=", 0.8)]
    print("\n## Targets\n")
    print("PASS: the target was met in this run; MISS: it was not. The ratio is the median of "
          "the per-round ratios, with their range.\n")
    print(targets_table(targets))
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: "
          f"{load_average()})\n")
    print(summary_line(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
