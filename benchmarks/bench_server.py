"""Throughput and latency of the WSGI MCP endpoint over loopback HTTP, both protocol eras.

Starts ``python -m taskstore serve`` (threaded wsgiref, in-memory store by default) in a
subprocess, with the interpreter running this script and the ``taskstore`` it imports, and next
to it ``benchmarks/_big_result_server.py`` (same store URL; a ``big`` tool returning ``size``
characters, an ``ask`` tool that elicits), then measures, with N concurrent client threads:

- MCP 2025-11-25 (one session per client, opened with ``initialize``):

  - ``ping``: the protocol floor (HTTP + JSON-RPC + session lookup, no store access);
  - ``tasks/get`` of an existing (completed) task;
  - a task-augmented ``tools/call`` (``word_count`` with ``task: {}``): creates a task, answers
    ``CreateTaskResult`` at once, runs the tool on the pool;
  - an inline ``tools/call`` (``word_count {text: "a b c"}``, no ``task`` param);
  - ``tasks/get`` of a working task (``long_job {steps: 1000, interval: 1}``, created once
    through the first client's session, which every client then uses: a legacy task belongs
    to the session that created it);

- MCP 2026-07-28 (stateless: ``params._meta`` with the protocol version and client
  capabilities, ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers):

  - the same inline ``tools/call`` (no tasks extension declared, so ``word_count`` answers
    inline);
  - ``tasks/get`` of a working ``long_job`` task created once with the tasks extension declared
    (anonymous requests share one owner, so every client reads that task);
  - on the big-result server, ``tasks/get`` of a completed task holding a 300 000-character
    result next to one holding a 16-character result (the result comes inline).

Each request uses a fresh connection (wsgiref speaks HTTP/1.0, no keep-alive), in both eras.
The scenarios run in interleaved rounds (``_harness.run_rounds``: one warm-up round, then
``--rounds`` rounds; in each round every scenario runs for ``--duration / --rounds`` seconds,
the order reversed every other round), so a burst of load from elsewhere on the machine lands
on all of them. Prints a Markdown table: requests/s (median of the rounds, with the slowest and
fastest round), p50 and p99 latency over all timed requests, and each scenario's requests/s
over ping's as the median of the per-round ratios.

Also in every round: an input answer relayed across processes on Redis. The script starts its
own ``redis-server`` (no persistence, free port) and two big-result servers A and B on it (one
key prefix, ``max_tasks_per_owner=none``: the relays outnumber the default quota of 100); it
calls ``ask`` on A with the tasks extension declared, polls ``tasks/get`` on B until the task is
``input_required``, answers with ``tasks/update`` on B, and reads from the completed task
(polled on A) the wall time at which the tool got the answer: latency = resumed − the wall time
just before ``tasks/update`` was sent (``--resume-samples`` per round).

Targets, PASS or MISS computed from this run: ``tasks/get`` ≥ 0.8× ``ping`` (issue 5); modern
inline ``tools/call`` ≥ 0.9× legacy inline ``tools/call`` req/s (issue 12); modern ``tasks/get``
of a working task ≥ 0.9× legacy's (issue 13); answer → tool resumed across processes on Redis,
p50 < 50 ms (issue 13; ``not measured`` without ``redis-server``). The 300 KB / 16 B
``tasks/get`` ratio is printed without a target. It always exits 0: a benchmark reports, it does
not gate.

    .tox/all/bin/python benchmarks/bench_server.py            # 8 clients, 5 × 9 × 1 s, ~60 s
    .tox/all/bin/python benchmarks/bench_server.py --quick    # 3 rounds of 0.5 s, ~20 s
    .tox/all/bin/python benchmarks/bench_server.py [--clients 8] [--duration 5] [--rounds 5]
        [--store URL] [--resume-samples 20] [--redis-server PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _harness import (
    LocalRedis,
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
from _mcp_http import (
    TASKS_CAPABILITY,
    LegacySession,
    ModernClient,
    RunningServer,
    start_server,
)

import taskstore

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
BIG_SIZE = 300_000
TINY_SIZE = 16
LONG_JOB = {"name": "long_job", "arguments": {"steps": 1000, "interval": 1}}
WORD_COUNT = {"name": "word_count", "arguments": {"text": "a b c"}}
BIG_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_big_result_server.py")
RESUME_TARGET_MS = 50.0
TERMINAL = ("completed", "failed", "cancelled")


def run_clients(
    calls: Sequence[Callable[[], object]], duration: float
) -> tuple[float, list[float]]:
    """Every client calls its ``calls[i]()`` (one request) in a loop for ``duration`` seconds,
    all released together; requests per second over all clients, and every request's latency
    (s)."""
    latencies: list[list[float]] = [[] for _ in calls]
    start = threading.Barrier(len(calls) + 1)
    stop_at = [0.0]
    errors: list[BaseException] = []

    def client(index: int) -> None:
        call = calls[index]
        start.wait()
        out = latencies[index]
        try:
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                call()
                out.append(time.perf_counter() - t0)
        except BaseException as exc:  # re-raised on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(calls))]
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


@dataclass
class Scenario:
    """One throughput measurement: each client thread's one-request callable."""

    name: str
    era: str
    calls: list[Callable[[], object]]


def poll(
    client: ModernClient, task_id: str, until: Sequence[str], *, every_s: float, timeout_s: float
) -> dict[str, Any]:
    """``tasks/get`` every ``every_s`` until the task's status is in ``until``; the task."""
    deadline = time.monotonic() + timeout_s
    while True:
        task: dict[str, Any] = client.call("tasks/get", {"taskId": task_id})["result"]
        if task["status"] in until:
            return task
        if task["status"] in TERMINAL:
            raise RuntimeError(f"task {task_id} ended {task['status']}, waiting for {until}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {task['status']} after {timeout_s} s")
        time.sleep(every_s)


def modern_task(client: ModernClient, params: dict[str, Any]) -> str:
    """``tools/call`` that must answer ``CreateTaskResult``; its task id."""
    created = client.call("tools/call", params)["result"]
    if created.get("resultType") != "task":
        raise RuntimeError(f"{params['name']}: expected a task, got {str(created)[:300]}")
    task_id: str = created["taskId"]
    return task_id


# -- Redis: an answer relayed across processes -------------------------------------------------


@dataclass
class ResumeSample:
    """One relayed answer, wall-clock seconds (``time.time()`` of this machine)."""

    sent_to_resumed: float  # tasks/update about to be sent to B → the tool resumed on A
    acked_to_resumed: float  # B's ack received → resumed (negative: resumed before the ack)
    update_round_trip: float  # tasks/update sent → acked


def relay_answer(a: ModernClient, b: ModernClient) -> ResumeSample:
    """Create an ``ask`` task on A, answer it through B, read when the tool resumed on A."""
    task_id = modern_task(a, {"name": "ask", "arguments": {}})
    waiting = poll(b, task_id, ("input_required",), every_s=0.005, timeout_s=10)
    key = next(iter(waiting["inputRequests"]))
    answer = {key: {"action": "accept", "content": {"ok": True}}}
    sent = time.time()
    b.call("tasks/update", {"taskId": task_id, "inputResponses": answer})
    acked = time.time()
    done = poll(a, task_id, ("completed",), every_s=0.02, timeout_s=10)
    resumed = float(done["result"]["structuredContent"]["resumedAt"])
    return ResumeSample(resumed - sent, resumed - acked, acked - sent)


# -- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument(
        "--duration", type=float, help="timed seconds per scenario, over all rounds (5; quick 1.5)"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds (5; quick 3)")
    parser.add_argument("--store", default="memory://?max_tasks_per_owner=none")
    parser.add_argument(
        "--resume-samples", type=int, help="relayed answers on Redis per round (20; quick 4)"
    )
    parser.add_argument(
        "--redis-server", default=shutil.which("redis-server"),
        help="redis-server binary (default: the one on PATH; without one, the Redis target is "
        "not measured)",
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.5 s")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds or (3 if args.quick else 5))
    duration = args.duration or (1.5 if args.quick else 5.0)
    per_round = duration / rounds
    resume_per_round = max(1, args.resume_samples or (4 if args.quick else 20))
    began = start_stamp()
    started = time.perf_counter()
    log = progress(started)

    # The servers run the taskstore this script imports (the environment's, not the checkout's).
    where = os.path.dirname(os.path.dirname(os.path.abspath(taskstore.__file__)))
    env = {**os.environ, "PYTHONPATH": where}
    servers: list[RunningServer] = []
    redis: LocalRedis | None = None
    resume_note = ""
    resume_samples: list[ResumeSample] = []
    try:
        main_server = start_server(
            [sys.executable, "-m", "taskstore", "serve", "--port", "0", "--store", args.store],
            env,
        )
        servers.append(main_server)
        big_server = start_server(
            [sys.executable, BIG_SERVER, "--port", "0", "--store", args.store], env
        )
        servers.append(big_server)
        log(f"servers at {main_server.url} (serve) and {big_server.url} (big results); "
            f"{args.clients} clients")

        # MCP 2025-11-25: one session per client.
        sessions = [LegacySession(main_server.endpoint) for _ in range(args.clients)]
        done_ids = {}
        for session in sessions:
            created = session.call(
                "tools/call", {"name": "word_count", "arguments": {"text": "a b"}, "task": {}}
            )
            done_ids[id(session)] = created["result"]["task"]["taskId"]
        inline = sessions[0].call("tools/call", WORD_COUNT)["result"]
        if "task" in inline or inline.get("structuredContent", {}).get("words") != 3:
            raise RuntimeError(f"legacy word_count did not answer inline: {inline}")
        legacy_working = sessions[0].call("tools/call", {**LONG_JOB, "task": {}})["result"]
        legacy_working_id = legacy_working["task"]["taskId"]
        # The task belongs to the first session: every client asks for it in that session.
        shared = [
            LegacySession(main_server.endpoint, session_id=sessions[0].session_id)
            for _ in range(args.clients)
        ]

        # MCP 2026-07-28: stateless clients, without and with the tasks extension.
        plain = [ModernClient(main_server.endpoint) for _ in range(args.clients)]
        with_tasks = [ModernClient(main_server.endpoint, TASKS_CAPABILITY)
                      for _ in range(args.clients)]
        inline = plain[0].call("tools/call", WORD_COUNT)["result"]
        if inline.get("resultType") != "complete" or inline["structuredContent"]["words"] != 3:
            raise RuntimeError(f"modern word_count did not answer inline: {inline}")
        modern_working_id = modern_task(with_tasks[0], LONG_JOB)
        for task_id, status in (
            (legacy_working_id, sessions[0].call("tasks/get", {"taskId": legacy_working_id})
             ["result"]["status"]),
            (modern_working_id, with_tasks[0].call("tasks/get", {"taskId": modern_working_id})
             ["result"]["status"]),
        ):
            if status != "working":
                raise RuntimeError(f"long_job task {task_id} is {status}, not working")

        big_clients = [ModernClient(big_server.endpoint, TASKS_CAPABILITY)
                       for _ in range(args.clients)]
        sized_ids = {}
        for size in (TINY_SIZE, BIG_SIZE):
            task_id = modern_task(big_clients[0], {"name": "big", "arguments": {"size": size}})
            task = poll(big_clients[0], task_id, ("completed",), every_s=0.02, timeout_s=10)
            if len(task["result"]["content"][0]["text"]) != size:
                raise RuntimeError(f"big {size}: wrong result size")
            sized_ids[size] = task_id

        def get(client: Any, task_id: str) -> Callable[[], object]:
            return lambda: client.call("tasks/get", {"taskId": task_id})

        def call(client: Any, method: str, params: dict[str, Any] | None) -> Callable[[], object]:
            return lambda: client.call(method, params)

        task_call = {"name": "word_count", "arguments": {"text": "a b c"},
                     "task": {"ttl": 60000}}
        # Pairs a target compares are adjacent, so they run back to back in every round.
        scenario_list = [
            Scenario("ping", LEGACY, [call(s, "ping", None) for s in sessions]),
            Scenario("tasks/get", LEGACY, [get(s, done_ids[id(s)]) for s in sessions]),
            Scenario("tools/call (task)", LEGACY,
                     [call(s, "tools/call", task_call) for s in sessions]),
            Scenario("tools/call inline", LEGACY,
                     [call(s, "tools/call", WORD_COUNT) for s in sessions]),
            Scenario("tools/call inline", MODERN,
                     [call(c, "tools/call", WORD_COUNT) for c in plain]),
            Scenario("tasks/get, working task", LEGACY,
                     [get(s, legacy_working_id) for s in shared]),
            Scenario("tasks/get, working task", MODERN,
                     [get(c, modern_working_id) for c in with_tasks]),
            Scenario(f"tasks/get, completed, {TINY_SIZE} B result", MODERN,
                     [get(c, sized_ids[TINY_SIZE]) for c in big_clients]),
            Scenario(f"tasks/get, completed, {BIG_SIZE // 1000} KB result", MODERN,
                     [get(c, sized_ids[BIG_SIZE]) for c in big_clients]),
        ]
        scenarios = {f"{s.name} ({s.era})": s for s in scenario_list}
        latencies: dict[str, list[float]] = {key: [] for key in scenarios}
        calls: dict[str, int] = dict.fromkeys(scenarios, 0)

        def scenario(key: str) -> Callable[[], float]:
            def one_round() -> float:
                rps, times = run_clients(scenarios[key].calls, per_round)
                latencies[key].extend(times)  # warm-up round included: cleared below
                calls[key] += len(times)
                return rps

            return one_round

        measurements: dict[str, Callable[[], float]] = {key: scenario(key) for key in scenarios}

        # Redis: two processes of the big-result server on one redis-server.
        relay: tuple[ModernClient, ModernClient] | None = None
        if args.redis_server is None:
            resume_note = "redis-server not found (--redis-server)"
        else:
            try:
                redis = LocalRedis(args.redis_server)
                # No live-task quota: the relays (anonymous, one owner) outnumber its 100.
                url = (f"redis://127.0.0.1:{redis.port}/0?prefix=bench{uuid.uuid4().hex}"
                       "&max_tasks_per_owner=none")
                pair = []
                for _ in range(2):
                    server = start_server(
                        [sys.executable, BIG_SERVER, "--port", "0", "--store", url], env
                    )
                    servers.append(server)
                    pair.append(ModernClient(server.endpoint,
                                             {"elicitation": {}, **TASKS_CAPABILITY}))
                relay = (pair[0], pair[1])
                relay_answer(*relay)  # the first relay opens connections and subscriptions
                log(f"redis-server on port {redis.port}; servers A and B at "
                    f"{servers[-2].url}, {servers[-1].url}")
            except (OSError, RuntimeError) as exc:
                resume_note = f"Redis set-up failed: {exc}"
                relay = None
        if relay is not None:
            a, b = relay

            def resume_round() -> float:
                taken = [relay_answer(a, b) for _ in range(resume_per_round)]
                resume_samples.extend(taken)
                return statistics.median(s.sent_to_resumed for s in taken)

            measurements["resume"] = resume_round

        def clear_after_warmup(message: str) -> None:
            if message.startswith("warm-up"):
                for key in scenarios:
                    latencies[key].clear()
                    calls[key] = 0
                resume_samples.clear()
            log(message)

        log(f"1 + {rounds} interleaved rounds of {per_round:.2f} s per scenario"
            + (f", {resume_per_round} relayed answers on Redis" if relay is not None else ""))
        rates = run_rounds(measurements, rounds, log=clear_after_warmup)
    finally:
        for running in servers:
            running.stop()
        if redis is not None:
            redis.stop()

    print("# MCP endpoint over HTTP benchmark" + (" (--quick)" if args.quick else "") + "\n")
    for line in environment(
        f"servers: python -m taskstore serve --store {args.store}, and "
        f"benchmarks/_big_result_server.py --store {args.store} (wsgiref, a thread per "
        f"request, HTTP/1.0); {args.clients} client threads, a new connection per request; "
        f"{LEGACY}: one MCP session per client; {MODERN}: stateless requests",
        "Redis relay: " + (
            f"redis-server {args.redis_server} (--save '' --appendonly no), two "
            "benchmarks/_big_result_server.py processes on it (--store "
            "redis://127.0.0.1:PORT/0?prefix=bench<uuid>&max_tasks_per_owner=none)"
            if not resume_note else f"not measured ({resume_note})"
        ),
        started=began,
    ):
        print(f"- {line}")
    print(f"\n{rounds} interleaved rounds after a warm-up round, {per_round:.2f} s per scenario "
          "per round.\n")
    floor = rates["ping (2025-11-25)"]
    rows = []
    for key, scenario_ in scenarios.items():
        values = rates[key]
        times = latencies[key]
        relative = ratio(values, floor)
        rows.append([
            scenario_.name,
            scenario_.era,
            str(calls[key]),
            f"{statistics.median(values):,.0f}",
            f"{min(values):,.0f}–{max(values):,.0f}",
            f"{percentile(times, 50) * 1000:.2f}",
            f"{percentile(times, 99) * 1000:.2f}",
            str(relative),
            relative.range,
        ])
    print(table(
        ["request", "era", "requests", "req/s (median)", "req/s per round", "p50 ms", "p99 ms",
         "vs ping", "per-round range"],
        rows,
        left=(0, 1, 8),
    ))

    print("\n## Input answer relayed across processes (Redis)\n")
    resume_p50: float | None = None
    if resume_samples:
        print(f"`ask` created on A with the tasks extension declared; `tasks/get` on B every 5 ms "
              f"until `input_required`; `tasks/update` on B; the tool's resume time read from "
              f"the completed task on A. {len(resume_samples)} relays ({resume_per_round} per "
              "round, warm-up round excluded); wall clocks of one machine.\n")
        resume_rows = []
        for label, values in (
            ("tasks/update sent to B → tool resumed on A",
             [s.sent_to_resumed for s in resume_samples]),
            ("tasks/update acked by B → tool resumed on A",
             [s.acked_to_resumed for s in resume_samples]),
            ("tasks/update round trip on B", [s.update_round_trip for s in resume_samples]),
        ):
            resume_rows.append([
                label,
                str(len(values)),
                *(f"{percentile(values, q) * 1000:.1f}" for q in (50, 90, 99, 100)),
            ])
        print(table(["interval", "samples", "p50 ms", "p90 ms", "p99 ms", "p100 ms"],
                    resume_rows))
        resume_p50 = percentile([s.sent_to_resumed for s in resume_samples], 50) * 1000
    else:
        print(f"not measured: {resume_note}")

    modern_inline = rates[f"tools/call inline ({MODERN})"]
    legacy_inline = rates[f"tools/call inline ({LEGACY})"]
    modern_working = rates[f"tasks/get, working task ({MODERN})"]
    legacy_working_rates = rates[f"tasks/get, working task ({LEGACY})"]
    targets = [
        Target("tasks/get req/s / ping req/s", ratio(rates["tasks/get (2025-11-25)"], floor),
               ">=", 0.8),
        Target(f"inline tools/call req/s, {MODERN} / {LEGACY} (issue 12)",
               ratio(modern_inline, legacy_inline), ">=", 0.9),
        Target(f"tasks/get of a working task req/s, {MODERN} / {LEGACY} (issue 13)",
               ratio(modern_working, legacy_working_rates), ">=", 0.9),
        Target("Redis, 2 processes: tasks/update sent to B → tool resumed on A, p50 (issue 13)",
               resume_p50, "<", RESUME_TARGET_MS, unit="ms",
               note=f"{len(resume_samples)} relays" if resume_samples else resume_note),
    ]
    print("\n## Targets\n")
    print("PASS: the target was met in this run; MISS: it was not. The ratio is the median of "
          "the per-round ratios, with their range.\n")
    print(targets_table(targets))
    big_vs_tiny = ratio(rates[f"tasks/get, completed, {BIG_SIZE // 1000} KB result ({MODERN})"],
                        rates[f"tasks/get, completed, {TINY_SIZE} B result ({MODERN})"])
    print(f"\nInformational, no target: {MODERN} tasks/get req/s of a completed task holding a "
          f"{BIG_SIZE // 1000} KB result / one holding a {TINY_SIZE} B result: {big_vs_tiny} "
          f"(per-round {big_vs_tiny.range}).")
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: "
          f"{load_average()})\n")
    print(summary_line(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
