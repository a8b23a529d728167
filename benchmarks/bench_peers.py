"""taskstore's MCP server next to the python-sdk's and FastMCP's, over Streamable HTTP.

Four servers with the same quick tool, ``word_count {text}`` (task support optional):
``python -m taskstore serve`` on ``memory://``, and on Redis (a ``redis-server`` started here,
fresh every round); ``_peer_sdk_server.py``, the ``mcp`` SDK 1.30 low-level server with
``server.experimental.enable_tasks()`` (``InMemoryTaskStore``); ``_peer_fastmcp_server.py``,
FastMCP 3.4 with ``@mcp.tool(task=True)`` (docket at its default ``memory://``). The peers run
in venvs of their own under ``~/.cache/taskstore/peers``, made on first use or by ``--setup``
(``mcp==1.30.0``; ``fastmcp[tasks]==3.4.11`` with ``mcp<2``), and answer ``application/json``
(their ``json_response`` option; an SSE-framed reply would be read too).

Clients: ``--clients`` threads (8), each with one persistent HTTP connection (``http.client``
reopens it when the server closes it) and one MCP 2025-11-25 session (``initialize``,
``notifications/initialized``, then ``Mcp-Session-Id`` and ``MCP-Protocol-Version``). Workloads,
``--duration`` s each (10): ``ping``, req/s; ``tasks/get`` of a completed task (one per
session), req/s, and the server's CPU time meanwhile (utime + stime from ``/proc/PID/stat``; for
Redis, plus ``redis-server``'s) per 1,000 requests; the lifecycle, tasks/s: ``tools/call`` with
``task: {ttl: 60000}``, ``tasks/get`` until ``completed`` (no pause: the servers'
``pollInterval`` hints are 0.5–5 s), ``tasks/result``.

Every round starts each server afresh (then one lifecycle per session and 0.25 s of each read
workload, untimed, to warm it), runs the three workloads and stops it; the order of the servers
rotates by one each round. Ratios: medians of the per-round ratios (``_harness.ratio``). Targets
(PASS or MISS on this run) are in :data:`TARGETS`. A server that cannot be set up or fails
leaves its targets ``not measured``. Exits 0. taskstore runs with its default per-owner quota
unless that refuses a lifecycle client (a legacy session is its own owner): then that
measurement and every later taskstore server run with ``max_tasks_per_owner=none``, and the
output says so.

    .tox/all/bin/python benchmarks/bench_peers.py            # 5 rounds × 4 servers × 3 × 10 s
    .tox/all/bin/python benchmarks/bench_peers.py --quick    # 2 rounds of 1 s
    .tox/all/bin/python benchmarks/bench_peers.py --setup    # create the peer venvs, exit
        [--clients 8] [--duration 10] [--rounds 5] [--only memory,redis,sdk,fastmcp]
        [--peers-dir DIR] [--redis-server PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from _harness import (
    LocalRedis,
    Target,
    environment,
    load_average,
    progress,
    ratio,
    start_stamp,
    summary_line,
    table,
    targets_table,
)
from _mcp_http import RunningServer, start_server

import taskstore

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "2025-11-25"
SERVERS = ("memory", "redis", "sdk", "fastmcp")
LABELS = {"memory": "taskstore memory", "redis": "taskstore Redis",
          "sdk": "python-sdk 1.30", "fastmcp": "FastMCP 3.4"}
WORKLOADS = ("ping", "tasks/get", "lifecycle")
TOOL = {"name": "word_count", "arguments": {"text": "a b c"}}
TASK_CALL = {**TOOL, "task": {"ttl": 60000}}
Log = Callable[[str], None]
UNITS = {"ping": "ping req/s", "tasks/get": "tasks/get req/s", "lifecycle": "lifecycle tasks/s",
         "cpu": "CPU per 1,000 tasks/get"}
#: (workload, server, peer, comparison, limit): the issue's targets, all ratios of one run.
TARGETS = [
    ("ping", "memory", "sdk", ">=", 1.0),
    ("tasks/get", "memory", "sdk", ">=", 2.0),
    ("tasks/get", "memory", "fastmcp", ">=", 1.5),
    ("tasks/get", "redis", "sdk", ">=", 1.2),
    ("lifecycle", "memory", "sdk", ">=", 2.5),
    ("lifecycle", "redis", "sdk", ">=", 1.5),
    ("cpu", "memory", "sdk", "<=", 0.5),
]


class McpError(RuntimeError):
    """A reply with a non-2xx status or a JSON-RPC error, or a task that went wrong."""


# -- peers' venvs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    venv: str  # directory under --peers-dir
    pins: tuple[str, ...]  # pip requirements
    script: str  # benchmarks/_peer_*.py
    wanted: dict[str, str]  # distribution -> required version prefix
    imports: str  # modules that must import


PEERS = {
    "sdk": Peer("mcp-1.30.0", ("mcp==1.30.0",), "_peer_sdk_server.py",
                {"mcp": "1.30.0"}, "mcp.server.experimental.task_context"),
    "fastmcp": Peer("fastmcp-3.4", ("fastmcp[tasks]==3.4.11", "mcp<2"),
                    "_peer_fastmcp_server.py", {"fastmcp": "3.4.", "mcp": "1.", "pydocket": ""},
                    "fastmcp, docket"),
}
REPORTED = ("mcp", "fastmcp", "pydocket", "pydantic", "starlette", "uvicorn")


def peer_versions(python: str, peer: Peer) -> dict[str, str]:
    """The peer venv's versions of :data:`REPORTED`; raises if a pin or an import fails."""
    code = (f"import importlib.metadata as m, json, {peer.imports}\n"
            f"v = {{}}\nfor d in {REPORTED!r}:\n"
            "    try: v[d] = m.version(d)\n    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(v))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    versions: dict[str, str] = json.loads(done.stdout)
    for dist, prefix in peer.wanted.items():
        if not versions.get(dist, "\0").startswith(prefix):
            raise RuntimeError(f"{dist} {versions.get(dist, 'missing')}, want {prefix or 'any'}")
    return versions


def ensure_peer(root: str, peer: Peer, log: Log) -> tuple[str, dict[str, str]]:
    """The peer venv's python and versions; creates the venv (pip install of the pins) when it
    is missing or does not hold them."""
    venv = os.path.join(root, peer.venv)
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(python):
        try:
            return python, peer_versions(python, peer)
        except (RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            log(f"{venv}: {exc}; reinstalling")
    else:
        log(f"creating {venv} ({' '.join(peer.pins)})")
        made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True,
                              text=True)
        if made.returncode != 0:
            raise RuntimeError(f"python -m venv {venv} failed: {made.stderr.strip()[-300:]}")
    done = subprocess.run([python, "-m", "pip", "install", "-q", *peer.pins],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(peer.pins)} failed: {done.stderr[-500:]}")
    return python, peer_versions(python, peer)


# -- MCP over persistent HTTP connections ----------------------------------------------------


class Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection (``TCP_NODELAY``, as ``http.client`` sets it) that counts how
    often it (re)connects: ``http.client`` reconnects when the server closed it."""

    opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


class Session:
    """One MCP 2025-11-25 session over one persistent connection (one client thread)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path or "/"
        self.conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        self.requests = 0
        self.next_id = 0
        self.session_id: str | None = None
        self.last_task = ""  # the task of the last lifecycle, completed
        self.headers = {"Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream"}
        init = {"protocolVersion": VERSION, "capabilities": {},
                "clientInfo": {"name": "bench-peers", "version": "1"}}
        self.call("initialize", init)
        if not self.session_id:
            raise McpError("initialize: no Mcp-Session-Id header")
        self.headers.update({"Mcp-Session-Id": self.session_id, "MCP-Protocol-Version": VERSION})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> tuple[str, bytes]:
        """POST one message; the reply's content type and body (raises on a non-2xx)."""
        body = json.dumps(message).encode()
        for attempt in (1, 2):  # a keep-alive connection the server closed while idle: retry
            try:
                self.conn.request("POST", self.path, body, self.headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
                continue
            self.requests += 1
            if self.requests == 1:
                self.session_id = response.getheader("mcp-session-id")
            if not 200 <= response.status < 300:
                raise McpError(f"{message.get('method')}: HTTP {response.status} {data[:300]!r}")
            return response.getheader("content-type") or "", data
        raise AssertionError("unreachable")

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request; its ``result`` (raises on a JSON-RPC error)."""
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        content_type, data = self.send(message)
        if content_type.startswith("text/event-stream"):  # the reply in an SSE data: line
            events = [json.loads(line[5:]) for line in data.decode().splitlines()
                      if line.startswith("data:") and line[5:].strip()]
            replies = [e for e in events if e.get("id") == self.next_id]
            if not replies:
                raise McpError(f"{method}: no reply in the event stream {data[:300]!r}")
            reply = replies[-1]
        else:
            reply = json.loads(data)
        if "error" in reply:
            raise McpError(f"{method}: {str(reply['error'])[:300]}")
        result: dict[str, Any] = reply["result"]
        return result

    def lifecycle(self) -> int:
        """``tools/call`` as a task → ``tasks/get`` until completed → ``tasks/result``; the
        number of requests it took."""
        task = self.call("tools/call", TASK_CALL)["task"]
        polls = 0
        deadline = time.monotonic() + 30
        while task["status"] != "completed":
            if task["status"] in ("failed", "cancelled", "input_required"):
                raise McpError(f"task {task['taskId']} is {task['status']}")
            if time.monotonic() > deadline:
                raise McpError(f"task {task['taskId']} still {task['status']} after 30 s")
            task = self.call("tasks/get", {"taskId": task["taskId"]})
            polls += 1
        result = self.call("tasks/result", {"taskId": task["taskId"]})
        if result.get("structuredContent", {}).get("words") != 3:
            raise McpError(f"tasks/result: unexpected {str(result)[:300]}")
        self.last_task = task["taskId"]
        return polls + 2

    def close(self) -> None:
        self.conn.close()


def run_clients(ops: Sequence[Callable[[], int]], duration: float) -> tuple[float, int, int]:
    """Every client calls its ``ops[i]()`` in a loop for ``duration`` s, all released together;
    ``(operations per second, operations, requests)`` over all clients."""
    done = [0] * len(ops)
    sent = [0] * len(ops)
    start = threading.Barrier(len(ops) + 1)
    stop_at = [0.0]
    errors: list[BaseException] = []

    def client(index: int) -> None:
        op = ops[index]
        start.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                sent[index] += op()
                done[index] += 1
        except BaseException as exc:  # re-raised on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(ops))]
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
    return sum(done) / elapsed, sum(done), sum(sent)


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes (all their threads), from ``/proc/PID/stat``."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / os.sysconf("SC_CLK_TCK")


# -- servers -------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every round needs: commands, state shared across rounds, the results."""

    clients: int
    duration: float
    redis_binary: str | None
    pythons: dict[str, str]
    no_quota: bool = False
    quota_note: str = ""
    # figures[server][workload, "cpu", "polls" or "per_conn"] = one value per round
    figures: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def store_query(self) -> str:
        return "max_tasks_per_owner=none" if self.no_quota else ""

    def start(self, key: str) -> tuple[RunningServer, list[int], LocalRedis | None]:
        redis: LocalRedis | None = None
        taskstore_env = {**os.environ, "PYTHONPATH": os.path.dirname(
            os.path.dirname(os.path.abspath(taskstore.__file__)))}
        peer_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        peer_env.update(FASTMCP_CHECK_FOR_UPDATES="off", PYTHONWARNINGS="ignore")
        query = self.store_query()
        if key == "memory":
            url = "memory://" + (f"?{query}" if query else "")
        elif key == "redis":
            assert self.redis_binary is not None
            redis = LocalRedis(self.redis_binary)
            url = (f"redis://127.0.0.1:{redis.port}/0?prefix=benchpeers{uuid.uuid4().hex[:8]}"
                   + (f"&{query}" if query else ""))
        if key in ("memory", "redis"):
            command = [sys.executable, "-m", "taskstore", "serve", "--port", "0", "--store", url]
            env = taskstore_env
        else:
            command = [self.pythons[key], os.path.join(HERE, PEERS[key].script), "--port", "0"]
            env = peer_env
        try:
            server = start_server(command, env)
        except BaseException:
            if redis is not None:
                redis.stop()
            raise
        pids = [server.process.pid] + ([redis.process.pid] if redis is not None else [])
        return server, pids, redis

    def measure(self, key: str, duration: float) -> dict[str, float]:
        """One round of one server: start it, warm it, the three workloads, stop it."""
        server, pids, redis = self.start(key)
        sessions: list[Session] = []
        try:
            sessions = [Session(server.url) for _ in range(self.clients)]
            for session in sessions:
                session.lifecycle()  # leaves a completed task for tasks/get

            def ping(s: Session) -> Callable[[], int]:
                return lambda: (s.call("ping"), 1)[1]

            def get(s: Session, task_id: str) -> Callable[[], int]:
                return lambda: (s.call("tasks/get", {"taskId": task_id}), 1)[1]

            pings = [ping(s) for s in sessions]
            gets = [get(s, s.last_task) for s in sessions]
            run_clients(pings, 0.25)  # warm-up, untimed
            run_clients(gets, 0.25)
            out: dict[str, float] = {}
            out["ping"] = run_clients(pings, duration)[0]
            cpu_before = cpu_seconds(pids)
            out["tasks/get"], _, requests = run_clients(gets, duration)
            out["cpu"] = (cpu_seconds(pids) - cpu_before) / requests * 1e6  # ms per 1,000
            out["lifecycle"], tasks, requests = run_clients(
                [s.lifecycle for s in sessions], duration)
            out["polls"] = (requests - 2 * tasks) / tasks if tasks else 0.0
            out["per_conn"] = (sum(s.requests for s in sessions)
                               / max(1, sum(s.conn.opened for s in sessions)))
            return out
        finally:
            for session in sessions:
                session.close()
            server.stop()
            if redis is not None:
                redis.stop()

    def round(self, number: int, order: Sequence[str], log: Log) -> None:
        for key in order:
            if key in self.failed:
                continue
            try:
                try:
                    out = self.measure(key, self.duration)
                except McpError as exc:
                    if key not in ("memory", "redis") or self.no_quota or \
                            "quota exceeded" not in str(exc).lower():
                        raise
                    self.no_quota = True
                    self.quota_note = (
                        f"the default per-owner quota refused a lifecycle client ({exc}); "
                        "that measurement was rerun, and every taskstore server from then on "
                        "ran with max_tasks_per_owner=none")
                    log(f"{LABELS[key]}: quota refused a lifecycle client; rerunning with "
                        "max_tasks_per_owner=none")
                    out = self.measure(key, self.duration)
            except (OSError, http.client.HTTPException, RuntimeError, KeyError, ValueError,
                    TypeError) as exc:
                self.failed[key] = f"round {number}: {one_line(exc)}"
                log(f"{LABELS[key]} failed: {self.failed[key]}")
                continue
            series = self.figures.setdefault(key, {})
            for name, value in out.items():
                series.setdefault(name, []).append(value)
            log(f"  {LABELS[key]}: ping {out['ping']:,.0f}/s, tasks/get {out['tasks/get']:,.0f}/s "
                f"({out['cpu']:.0f} ms CPU per 1,000), lifecycle {out['lifecycle']:,.0f} tasks/s")


def one_line(exc: BaseException) -> str:
    """``Type: first line … last line`` of the message (of a traceback: the error)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    text = lines[0][:200] + (f" … {lines[-1][:200]}" if len(lines) > 1 else "")
    return f"{type(exc).__name__}: {text}"


# -- report --------------------------------------------------------------------------------


def source_state() -> str:
    """The commit of the taskstore checkout measured, and whether its ``taskstore/`` has
    uncommitted changes (``""`` outside a git checkout)."""
    where = os.path.dirname(os.path.dirname(os.path.abspath(taskstore.__file__)))
    try:
        head, dirty = (subprocess.run(["git", "-C", where, *command], capture_output=True,
                                      text=True, timeout=10).stdout.strip()
                       for command in (["rev-parse", "--short", "HEAD"],
                                       ["status", "--porcelain", "taskstore"]))
    except (OSError, subprocess.SubprocessError):
        return ""
    changes = " + uncommitted changes in taskstore/" if dirty else ""
    return f"taskstore source: commit {head}{changes}" if head else ""


def cell(values: list[float] | None, digits: int = 0) -> str:
    if not values:
        return "n/a"
    return (f"{statistics.median(values):,.{digits}f} "
            f"({min(values):,.{digits}f}–{max(values):,.{digits}f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8, help="client threads (8)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (10; quick 1)")
    parser.add_argument("--rounds", type=int, help="rounds (5; quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s")
    parser.add_argument("--only", default=",".join(SERVERS),
                        help=f"servers to run, comma-separated ({','.join(SERVERS)})")
    parser.add_argument("--setup", action="store_true", help="create the peer venvs and exit")
    parser.add_argument("--peers-dir", default=os.path.expanduser("~/.cache/taskstore/peers"))
    parser.add_argument("--redis-server", default=shutil.which("redis-server"))
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds or (2 if args.quick else 5))
    duration = args.duration or (1.0 if args.quick else 10.0)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SERVERS))
    if unknown:
        parser.error(f"--only: unknown servers {unknown}; choose from {SERVERS}")
    selected = [key for key in SERVERS if key in only]
    began, source = start_stamp(), source_state()
    started = time.perf_counter()
    log = progress(started)

    unavailable: dict[str, str] = {key: "not selected (--only)"
                                   for key in SERVERS if key not in selected}
    pythons: dict[str, str] = {}
    versions: dict[str, dict[str, str]] = {}
    for key, peer in PEERS.items():
        if key not in selected and not args.setup:
            continue
        try:
            pythons[key], versions[key] = ensure_peer(args.peers_dir, peer, log)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            unavailable[key] = f"venv {peer.venv} could not be set up: {one_line(exc)}"
    if args.setup:
        for key, peer in PEERS.items():
            where = os.path.join(args.peers_dir, peer.venv)
            print(f"{LABELS[key]}: {where}: " + (unavailable.get(key) or ", ".join(
                f"{d} {v}" for d, v in versions[key].items())))
        return 0
    if "redis" in selected and args.redis_server is None:
        unavailable["redis"] = "redis-server not found (--redis-server)"
    runnable = [key for key in selected if key not in unavailable]

    bench = Bench(args.clients, duration, args.redis_server, pythons)
    log(f"{rounds} rounds × {len(runnable)} servers × 3 workloads × {duration:g} s, "
        f"{args.clients} clients")
    for index in range(rounds):
        shift = index % max(1, len(runnable))
        order = runnable[shift:] + runnable[:shift]
        log(f"round {index + 1}/{rounds}: {', '.join(LABELS[k] for k in order)}")
        bench.round(index + 1, order, log)
    unavailable.update(bench.failed)
    figures = {key: series for key, series in bench.figures.items() if key not in bench.failed}

    print("# taskstore next to the python-sdk and FastMCP over MCP Streamable HTTP"
          + (" (--quick)" if args.quick else "") + "\n")
    quota = bench.store_query() or "the default per-owner quota"
    described = {
        "memory": f"`python -m taskstore serve --store memory://` ({quota})",
        "redis": f"`python -m taskstore serve --store redis://127.0.0.1:PORT/0?prefix=…` "
                 f"({quota}) on {args.redis_server} (`--save '' --appendonly no`), "
                 "a fresh redis-server every round",
    }
    for key, peer in PEERS.items():
        if key in versions:
            described[key] = (f"benchmarks/{peer.script} with "
                              f"{os.path.join(args.peers_dir, peer.venv)}/bin/python: "
                              + ", ".join(f"{d} {v}" for d, v in versions[key].items()))
    if source != source_state():  # a checkout that changed during the run
        source = f"{source} at the start; {source_state()} at the end"
    lines = [source] if source else []
    lines += [f"{LABELS[key]}: " + (f"not measured: {unavailable[key]}" if key in unavailable
                                   else described[key]) for key in SERVERS]
    lines.append(f"{rounds} rounds; every round starts each server afresh, the order rotated by "
                 f"one per round; {args.clients} client threads, each with one persistent HTTP "
                 f"connection and one MCP {VERSION} session; {duration:g} s per workload; tool "
                 "word_count {text: \"a b c\"}")
    if bench.quota_note:
        lines.append(f"quota: {bench.quota_note}")
    for line in environment(*lines, started=began):
        print(f"- {line}")

    print("\n## Per server: median of the rounds (slowest–fastest round)\n")
    columns = [key for key in SERVERS if key in figures]
    names = {**UNITS, "cpu": "server CPU per 1,000 tasks/get, ms",
             "lifecycle": "lifecycle (tools/call → tasks/get until completed → tasks/result), "
             "tasks/s", "polls": "tasks/get polls per task in the lifecycle",
             "per_conn": "requests per connection"}
    rows = [[text, *(cell(figures[k][name], 1 if name in ("polls", "per_conn") else 0)
                     for k in columns)] for name, text in names.items()]
    print(table(["workload", *(LABELS[k] for k in columns)], rows))
    if "redis" in columns:
        print("\nThe Redis column's CPU is the taskstore server's plus redis-server's.")

    def rate(key: str, other: str, workload: str) -> Any:
        if key in figures and other in figures:
            return ratio(figures[key][workload], figures[other][workload])
        return None

    print("\n## Ratios: median of the per-round ratios (slowest–fastest round)\n")
    pairs = [(a, b) for a, b in (("memory", "sdk"), ("redis", "sdk"), ("memory", "fastmcp"),
                                 ("redis", "fastmcp")) if a in figures and b in figures]
    print(table(["workload", *(f"{LABELS[a]} ÷ {LABELS[b]}" for a, b in pairs)], [
        [UNITS[workload], *(f"{value} ({value.range.split(' ')[0]})"
                            for value in (rate(a, b, workload) for a, b in pairs))]
        for workload in UNITS]) if pairs else "n/a: no pair of servers measured")

    def target(workload: str, a: str, b: str, op: str, limit: float) -> Target:
        missing = [f"{LABELS[k]}: {unavailable[k]}" for k in (a, b) if k in unavailable]
        return Target(f"{UNITS[workload]}, {LABELS[a]} ÷ {LABELS[b]}", rate(a, b, workload),
                      op, limit, note="; ".join(missing))

    targets = [target(*spec) for spec in TARGETS]
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
