"""Throughput and round trips of ``TaskStore`` over ``RedisBackend``, side by side with a raw
redis-py floor, against a real local ``redis-server``.

One run measures, on one client (so one connection, single-threaded):

- ops/s of ``get``, ``create``, ``set_variables``, ``complete`` and ``list`` (a page of 50) of
  the store, and of the backend's own ``get`` (one ``HMGET``, no record decoding);
- the floor: a raw redis-py ``HGET`` loop and ``HSET`` loop of a record-sized value on the same
  client;
- per operation: round trips (counted by the client's connection: one packed send is one round
  trip) and the commands the server executed (``INFO commandstats`` deltas; commands that a Lua
  script runs count there too, listed separately);
- ``list`` of 50 tasks each holding a 300 KB result vs 50 tasks without results.

It then checks the issue's targets and prints PASS or MISS for each: 1 round trip per get, 1
script call per backend mutation, at most 2 round trips per list page; store ``get`` throughput
at least 0.5x the raw ``HGET`` loop; the 300 KB-result list within 1.5x of the small one. It
always exits 0: a benchmark reports, it does not gate.

Method: every measurement runs one warm-up batch and ``--repeats`` timed batches (default 5),
interleaved (batch r of every measurement before batch r + 1 of any) so background load spreads
over all figures; each figure is the best batch, ``±`` the spread (max - min) over batches.
Timing uses ``time.perf_counter``. ``create`` and ``complete`` use up tasks; their inputs are
prepared untimed before each batch.

Usage::

    python benchmarks/bench_redis.py                  # starts redis-server on a free port
    python benchmarks/bench_redis.py --url redis://127.0.0.1:6379/0   # an existing server
    python benchmarks/bench_redis.py --quick          # fewer operations, ~10 s
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis

import taskstore
from taskstore import SecurityConfig, StoreConfig, TaskStore
from taskstore.backends.redis import RedisBackend
from taskstore.record import encode_record

OWNER = "bench-owner"


class CountingConnection(redis.Connection):
    """A redis-py connection that counts packed sends: one send is one round trip."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Start ``redis-server`` on a free loopback port without persistence; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install -y redis-server, or pass --url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port)
            for _ in range(500):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        break
                time.sleep(0.01)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


class Bench:
    """The store, its client and the prepared tasks of one run."""

    def __init__(self, url: str, ops: int) -> None:
        pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
        self.client = redis.Redis(connection_pool=pool)
        self.backend = RedisBackend(self.client, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        self.store = TaskStore(
            self.backend,
            config=StoreConfig(default_ttl_ms=3_600_000),
            security=SecurityConfig(max_tasks_per_owner=None),
        )
        self.ops = ops
        self.random = random.Random(1234)
        self.pool = [self.store.create(OWNER) for _ in range(1_000)]
        for record in self.pool[:200]:
            self.store.set_variables(record.task_id, OWNER, {"step": 1, "note": "warm"})
        sample = self.store.get(self.pool[0].task_id, OWNER)
        self.raw_key = f"{self.backend.prefix}:raw"
        self.raw_value = encode_record(sample)
        self.client.hset(self.raw_key, "d", self.raw_value)
        self.pending: list[str] = []
        self.small_owner = "list-small"
        self.big_owner = "list-big"
        big = "x" * 300_000
        for _ in range(50):
            self.store.create(self.small_owner)
            record = self.store.create(self.big_owner)
            self.store.complete(record.task_id, self.big_owner, {"content": [big]})

    def pick(self) -> str:
        return self.pool[self.random.randrange(len(self.pool))].task_id

    # -- operations: each runs self.ops times ----------------------------------------------

    def raw_hget(self) -> None:
        hget, key = self.client.hget, self.raw_key
        for _ in range(self.ops):
            hget(key, "d")

    def raw_hset(self) -> None:
        hset, key, value = self.client.hset, self.raw_key, self.raw_value
        for _ in range(self.ops):
            hset(key, "d", value)

    def backend_get(self) -> None:
        get = self.backend.get
        keys = [(OWNER, self.pick()) for _ in range(self.ops)]
        for key in keys:
            get(key)

    def get(self) -> None:
        get = self.store.get
        ids = [self.pick() for _ in range(self.ops)]
        for task_id in ids:
            get(task_id, OWNER)

    def create(self) -> None:
        create = self.store.create
        for i in range(self.ops):
            create(f"owner-{i % 100}")

    def set_variables(self) -> None:
        set_variables = self.store.set_variables
        ids = [self.pick() for _ in range(self.ops)]
        for i, task_id in enumerate(ids):
            set_variables(task_id, OWNER, {"counter": i})

    def prepare_complete(self) -> None:
        self.pending = [self.store.create("completer").task_id for _ in range(self.ops)]

    def complete(self) -> None:
        complete = self.store.complete
        for task_id in self.pending:
            complete(task_id, "completer", {"content": [{"type": "text", "text": "done"}]})

    def list_pages(self, owner: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(max(self.ops // 20, 10)):
                self.store.list(owner, limit=50)

        return run


def per_operation_costs(bench: Bench) -> dict[str, tuple[float, dict[str, float]]]:
    """Round trips and server commands per operation, over 100 operations each."""
    client = bench.client
    count = 100
    cursor = bench.store.list(OWNER, limit=50).next_cursor
    actions: dict[str, Callable[[int], object]] = {
        "store.get": lambda i: bench.store.get(bench.pool[i].task_id, OWNER),
        "backend.get": lambda i: bench.backend.get((OWNER, bench.pool[i].task_id)),
        "store.create": lambda i: bench.store.create("costs"),
        "store.set_variables": lambda i: bench.store.set_variables(
            bench.pool[i].task_id, OWNER, {"cost": i}
        ),
        "store.complete": lambda i: bench.store.complete(
            bench.pending[i], "completer", {"ok": True}
        ),
        "store.list(50)": lambda i: bench.store.list(OWNER, limit=50),
        "store.list(50) after a cursor": lambda i: bench.store.list(
            OWNER, cursor=cursor, limit=50
        ),
    }
    results: dict[str, tuple[float, dict[str, float]]] = {}
    for name, action in actions.items():
        if name == "store.complete":
            bench.pending = [bench.store.create("completer").task_id for _ in range(count)]
        action(0)  # scripts loaded, connection warm
        before_stats = client.info("commandstats")
        CountingConnection.sends = 0
        for i in range(1, count + 1) if name != "store.complete" else range(1, count):
            action(i)
        done = count if name != "store.complete" else count - 1
        sends = CountingConnection.sends
        after_stats = client.info("commandstats")
        deltas: dict[str, float] = {}
        for stat, values in after_stats.items():
            calls = values["calls"] - before_stats.get(stat, {}).get("calls", 0)
            command = stat.removeprefix("cmdstat_")
            if calls and command != "info":
                deltas[command] = calls / done
        results[name] = (sends / done, deltas)
    return results


def measure(bench: Bench, repeats: int) -> dict[str, tuple[float, float, int]]:
    """ops/s (best batch), spread, and operations per batch for every measurement."""
    runs: dict[str, tuple[Callable[[], None], Callable[[], None] | None, int]] = {
        "raw HGET loop": (bench.raw_hget, None, bench.ops),
        "raw HSET loop": (bench.raw_hset, None, bench.ops),
        "backend.get": (bench.backend_get, None, bench.ops),
        "store.get": (bench.get, None, bench.ops),
        "store.create": (bench.create, None, bench.ops),
        "store.set_variables": (bench.set_variables, None, bench.ops),
        "store.complete": (bench.complete, bench.prepare_complete, bench.ops),
        "store.list(50)": (bench.list_pages(OWNER), None, max(bench.ops // 20, 10)),
        "list(50), no results": (bench.list_pages(bench.small_owner), None,
                                 max(bench.ops // 20, 10)),
        "list(50), 300 KB results": (bench.list_pages(bench.big_owner), None,
                                     max(bench.ops // 20, 10)),
    }
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for batch in range(repeats + 1):
        for name, (run, prepare, count) in runs.items():
            if prepare is not None:
                prepare()
            started = time.perf_counter()
            run()
            elapsed = time.perf_counter() - started
            if batch:  # batch 0 warms up
                timings[name].append(count / elapsed)
    return {
        name: (max(rates), max(rates) - min(rates), runs[name][2])
        for name, rates in timings.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start redis-server)")
    parser.add_argument("--ops", type=int, default=5_000, help="operations per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches")
    parser.add_argument("--quick", action="store_true", help="--ops 1000 --repeats 3")
    args = parser.parse_args()
    if args.quick:
        args.ops, args.repeats = 1_000, 3
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_server())
        bench = Bench(url, args.ops)
        server = bench.client.info("server")
        rates = measure(bench, args.repeats)
        costs = per_operation_costs(bench)
        bench.store.close()
        bench.client.close()

    print(f"# RedisBackend benchmark ({time.strftime('%Y-%m-%d')})\n")
    print(
        f"Redis {server['redis_version']} on {url.split('?')[0]}, redis-py {redis.__version__}, "
        f"taskstore {taskstore.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()} ({platform.processor() or platform.system()}). "
        f"One client, one thread; {args.ops} operations per batch, best of {args.repeats} "
        "batches (± = spread).\n"
    )
    print("## Throughput\n")
    print("| operation | ops/s | ± | vs raw HGET |")
    print("|---|---:|---:|---:|")
    floor = rates["raw HGET loop"][0]
    for name, (rate, spread, _) in rates.items():
        print(f"| {name} | {rate:,.0f} | {spread:,.0f} | {rate / floor:.2f}x |")
    print("\n## Round trips and server commands per operation\n")
    print("| operation | round trips | server commands (INFO commandstats deltas) |")
    print("|---|---:|---|")
    for name, (trips, deltas) in costs.items():
        listed = ", ".join(
            f"{command.upper()} {calls:g}" for command, calls in sorted(deltas.items())
        )
        print(f"| {name} | {trips:g} | {listed} |")
    print(
        "\nServer commands include those a script runs (its HMGET, HSET, ZADD, PUBLISH, …); "
        "the client sends one EVALSHA for them. A store mutation is a read (HMGET) plus one "
        "compare-and-set script: 2 round trips, of which the backend mutation is 1.\n"
    )
    small = rates["list(50), no results"][0]
    big = rates["list(50), 300 KB results"][0]
    checks = [
        ("get: 1 round trip", costs["backend.get"][0] == 1 and costs["store.get"][0] == 1),
        ("create: 1 script call, 1 round trip", costs["store.create"][0] == 1),
        (
            "each backend mutation is 1 script call",
            all(
                costs[n][1].get("evalsha", 0) == 1
                for n in ("store.create", "store.set_variables", "store.complete")
            ),
        ),
        ("list page: <= 2 round trips", costs["store.list(50)"][0] <= 2
         and costs["store.list(50) after a cursor"][0] <= 2),
        (f"store.get >= 0.5x raw HGET ({rates['store.get'][0] / floor:.2f}x)",
         rates["store.get"][0] >= 0.5 * floor),
        (f"300 KB-result list within 1.5x of the small one ({small / big:.2f}x)",
         small / big <= 1.5),
    ]
    print("## Targets (issue 3)\n")
    for label, ok in checks:
        print(f"- {'PASS' if ok else 'MISS'}: {label}")


if __name__ == "__main__":
    main()
