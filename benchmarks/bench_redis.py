"""Throughput, round trips and wake-up latencies of ``TaskStore`` over ``RedisBackend``, side by
side with a raw redis-py floor, against a real local ``redis-server``.

One run measures, on one client (so one connection, single-threaded):

- ops/s of ``get``, ``create``, ``set_variables``, ``complete`` and ``list`` (a page of 50) of
  the store, and of the backend's own ``get`` (one ``HMGET``, no record decoding);
- the floor: a raw redis-py ``HGET`` loop and ``HSET`` loop of a record-sized value on the same
  client;
- per operation: round trips (counted by the client's connection: one packed send is one round
  trip) and the commands the server executed (``INFO commandstats`` deltas; commands that a Lua
  script runs count there too, listed separately);
- ``list`` of 50 tasks each holding a 300 KB result vs 50 tasks without results (DESIGN §5);
- latencies, one sample per round, p50/p90/p100 (p100 = the slowest round):

  - ``wait()`` wake-up in this process: a thread blocked in ``store.wait`` (30 s poll
    interval, so only a pub/sub wake-up can end it early) while this thread completes the
    task, through the same store and through a second store (its own connections);
  - ``wait()`` wake-up across processes: a spawned process blocked in ``store.wait``, this
    process completes the task; the two clocks are the system-wide ``CLOCK_MONOTONIC``;
  - event delivery to ``store.subscribe`` listeners: from just before ``complete`` (in this
    process, and in the spawned process) to the listener here receiving the event;
  - ``wait_for_change`` on a version that already changed, on a fresh backend (it subscribes,
    then re-reads): how long it takes to return;
  - ``delete`` waking a ``wait_for_change`` caller (deletes publish a wake-up, no event);
  - a write whose message is lost (written without an event): the waiter notices it by its
    bounded re-read, after at most ``wait_slice_s`` (0.2 s here);
  - only when the script started redis-server itself (not with ``--url``): after a restart
    of the server (0.3 s down), the time from the server being back until events reach a
    listener again, and then a ``wait()`` wake-up; after ``CLIENT KILL TYPE pubsub``, the
    time until a blocked ``wait_for_change`` returns and until events flow again; with the
    server stopped, and frozen (``SIGSTOP``), how long store calls take to raise
    ``BackendError`` (socket timeouts 0.5 s).

Targets (issue 3, DESIGN §5, issue 10), each printed with PASS or MISS computed from this run:
1 round trip per get, 1 round trip for create, 1 script call per backend mutation, at most 2
round trips per list page; store ``get`` throughput at least 0.5x the raw ``HGET`` loop; the
300 KB-result list within 1.5x of the small one; every wake-up and event delivery above
p100 < 100 ms; the lost message p100 < ``wait_slice_s`` + 100 ms; events flowing again within
1 s of the server's return or of the killed subscription; calls against a stopped or frozen
server failing within 2 s (two attempts bounded by the 0.5 s timeouts, + 1 s). It always exits
0: a benchmark reports, it does not gate.

Method: the throughput measurements run one warm-up batch and ``--repeats`` timed batches
(default 5) through ``_harness.run_rounds``: batch r of every measurement before batch r + 1 of
any, the order reversed every other round, so background load spreads over all figures and
both sides of a ratio share each round. Each ops/s figure is the best batch, ``±`` the spread
(max - min) over batches; each ratio is the median of the per-round ratios. Timing uses
``time.perf_counter`` (``time.monotonic`` across processes). ``create`` and ``complete`` use up
tasks; their inputs are prepared untimed before each batch.

Usage (from the repository root, in an environment with the ``redis`` extra)::

    .tox/all/bin/python benchmarks/bench_redis.py           # starts redis-server, ~1.5 min
    .tox/all/bin/python benchmarks/bench_redis.py --quick   # fewer operations, ~15 s
    .tox/all/bin/python benchmarks/bench_redis.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import redis
from _harness import (
    Latencies,
    Ratio,
    Target,
    environment,
    free_port,
    load_average,
    progress,
    ratio,
    run_rounds,
    start_stamp,
    summary_line,
    table,
    targets_table,
    time_wakeup,
)

import taskstore
from taskstore import BackendError, SecurityConfig, StoreConfig, TaskStatus, TaskStore
from taskstore.backends.redis import RedisBackend
from taskstore.record import encode_record

OWNER = "bench-owner"
#: Every wake-up and event-delivery target: p100 below this many seconds.
WAKE_LIMIT_S = 0.100
#: Events must reach listeners again within this many seconds of a restart or a killed
#: subscription (the event thread's reconnect back-off is capped at 1 s).
RESUBSCRIBE_LIMIT_S = 1.0
#: wait_slice_s of the lost-message scenario.
LOST_SLICE_S = 0.2
#: Socket timeouts of the fault scenarios' stores, so calls fail fast while the server is down.
FAULT_TIMEOUT_S = 0.5

# The latency scenarios, and the limit of each one's p100 (ms): its target.
W_SAME = "wait() in a thread, complete() here, same store"
W_TWO = "wait() in a thread, complete() here, second store"
E_TWO = "event to subscribe() listener, written by a second store"
W_PROC = "wait() in another process, complete() here"
E_PROC = "event to subscribe() listener here, written by another process"
CHANGED = "wait_for_change on an already changed version, fresh backend"
CHANGED_RESP2 = "wait_for_change on an already changed version, fresh RESP2 backend"
DELETED = "wait_for_change woken by delete()"
LOST = f"write without a message, noticed by the re-read (wait_slice_s {LOST_SLICE_S:g} s)"
RESTART_EVENTS = "restart (0.3 s down): server back → events reach a listener again"
RESTART_WAIT = "restart: then wait() in a thread, complete() by a second store"
KILL_WAKE = "CLIENT KILL TYPE pubsub → blocked wait_for_change returns"
KILL_EVENTS = "CLIENT KILL TYPE pubsub → events reach a listener again"
STOPPED = "server stopped: each store call raises BackendError (7 kinds of call)"
FROZEN = "server frozen (SIGSTOP): get, set_variables raise BackendError"
LIMITS_MS = {
    W_SAME: WAKE_LIMIT_S * 1000,
    W_TWO: WAKE_LIMIT_S * 1000,
    W_PROC: WAKE_LIMIT_S * 1000,
    E_TWO: WAKE_LIMIT_S * 1000,
    E_PROC: WAKE_LIMIT_S * 1000,
    CHANGED: WAKE_LIMIT_S * 1000,
    CHANGED_RESP2: WAKE_LIMIT_S * 1000,
    DELETED: WAKE_LIMIT_S * 1000,
    LOST: (LOST_SLICE_S + WAKE_LIMIT_S) * 1000,
    RESTART_EVENTS: RESUBSCRIBE_LIMIT_S * 1000,
    RESTART_WAIT: WAKE_LIMIT_S * 1000,
    KILL_WAKE: WAKE_LIMIT_S * 1000,
    KILL_EVENTS: RESUBSCRIBE_LIMIT_S * 1000,
    # One call and at most one retry, each bounded by the 0.5 s socket timeouts, + 1 s.
    STOPPED: (2 * FAULT_TIMEOUT_S + 1.0) * 1000,
    FROZEN: (2 * FAULT_TIMEOUT_S + 1.0) * 1000,
}


class CountingConnection(redis.Connection):
    """A redis-py connection that counts packed sends: one send is one round trip."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


class LocalRedis:
    """``redis-server`` on a free loopback port, without persistence; restartable on the same
    port (for the fault scenarios)."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server not found: apt-get install -y redis-server, or pass --url")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        try:
            for _ in range(500):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                time.sleep(0.01)
            raise RuntimeError("redis-server did not answer within 5 s")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def local_server() -> Iterator[LocalRedis]:
    """Start ``redis-server`` on a free loopback port without persistence; stop it at the end."""
    with tempfile.TemporaryDirectory() as directory:
        server = LocalRedis(directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


# -- throughput --------------------------------------------------------------------------------


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
        self.list_ops = max(ops // 20, 10)
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
            for _ in range(self.list_ops):
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


def measure_throughput(
    bench: Bench, repeats: int, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """ops/s of every measurement, one figure per timed round (interleaved rounds). Those a
    target compares are neighbours: raw HGET and store.get, the two 300 KB-list cases."""
    runs: dict[str, tuple[Callable[[], None], Callable[[], None] | None, int]] = {
        "raw HGET loop": (bench.raw_hget, None, bench.ops),
        "store.get": (bench.get, None, bench.ops),
        "backend.get": (bench.backend_get, None, bench.ops),
        "raw HSET loop": (bench.raw_hset, None, bench.ops),
        "store.create": (bench.create, None, bench.ops),
        "store.set_variables": (bench.set_variables, None, bench.ops),
        "store.complete": (bench.complete, bench.prepare_complete, bench.ops),
        "store.list(50)": (bench.list_pages(OWNER), None, bench.list_ops),
        "list(50), no results": (bench.list_pages(bench.small_owner), None, bench.list_ops),
        "list(50), 300 KB results": (bench.list_pages(bench.big_owner), None, bench.list_ops),
    }

    def timed(
        run: Callable[[], None], prepare: Callable[[], None] | None, count: int
    ) -> Callable[[], float]:
        def one_round() -> float:
            if prepare is not None:
                prepare()  # untimed
            started = time.perf_counter()
            run()
            return count / (time.perf_counter() - started)

        return one_round

    rounds = {name: timed(*spec) for name, spec in runs.items()}
    return run_rounds(rounds, repeats, log=log)


# -- latencies ---------------------------------------------------------------------------------


def _worker(url: str, prefix: str, conn: Connection) -> None:
    """The other process (spawned): on ``("wait", id)`` answers ``"ready"``, blocks in
    ``store.wait`` (30 s poll interval) and answers ``(monotonic time, status)``; on
    ``("complete", id)`` answers the monotonic time just before completing it."""
    with taskstore.open(url, prefix=prefix, poll_interval_ms=30_000) as store:
        while True:
            command, task_id = conn.recv()
            if command == "wait":
                conn.send("ready")
                record = store.wait(task_id, OWNER, timeout=20)
                conn.send((time.monotonic(), record.status.value))
            elif command == "complete":
                stamp = time.monotonic()
                store.complete(task_id, OWNER, {"by": "worker"})
                conn.send(stamp)
            else:
                return


@dataclass
class EventClock:
    """A ``store.subscribe`` callback stamping when each task's ``completed`` event arrives."""

    arrivals: dict[str, float]
    arrived: threading.Condition

    @classmethod
    def new(cls) -> EventClock:
        return cls({}, threading.Condition())

    def __call__(self, task: dict[str, Any]) -> None:
        now = time.monotonic()
        if task.get("status") == "completed":
            with self.arrived:
                self.arrivals.setdefault(task["taskId"], now)
                self.arrived.notify_all()

    def wait_for(self, task_id: str, timeout_s: float = 10.0) -> float:
        """The arrival time of ``task_id``'s event (``inf`` if none within ``timeout_s``)."""
        with self.arrived:
            self.arrived.wait_for(lambda: task_id in self.arrivals, timeout_s)
            return self.arrivals.get(task_id, float("inf"))


def _check(record: object) -> None:
    if getattr(record, "status", None) is not TaskStatus.COMPLETED:
        raise RuntimeError(f"wait() returned {record!r}, not the completed task")


def measure_latencies(url: str, rounds: int, short_rounds: int) -> list[Latencies]:
    """The wake-up and event latencies of one process and across processes."""
    prefix = f"bench-lat-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {
        "prefix": prefix, "poll_interval_ms": 30_000, "max_tasks_per_owner": None
    }
    found: list[Latencies] = []
    with taskstore.open(url, **options) as store, taskstore.open(url, **options) as other:
        same: list[float] = []
        two: list[float] = []
        for index in range(rounds + 1):  # round 0 warms up (subscriptions, scripts)
            task_id = store.create(OWNER).task_id
            latency, record = time_wakeup(
                lambda: store.wait(task_id, OWNER, timeout=20),  # noqa: B023 - joined here
                lambda: store.complete(task_id, OWNER, None),  # noqa: B023
            )
            _check(record)
            task_id = store.create(OWNER).task_id
            latency2, record = time_wakeup(
                lambda: store.wait(task_id, OWNER, timeout=20),  # noqa: B023
                lambda: other.complete(task_id, OWNER, None),  # noqa: B023
            )
            _check(record)
            if index:
                same.append(latency)
                two.append(latency2)
        found.append(Latencies(W_SAME, tuple(same)))
        found.append(Latencies(W_TWO, tuple(two)))

        clock = EventClock.new()
        store.subscribe(clock)
        local: list[float] = []
        for index in range(rounds + 1):
            task_id = other.create(OWNER).task_id
            stamp = time.monotonic()
            other.complete(task_id, OWNER, None)
            arrival = clock.wait_for(task_id)
            if index:
                local.append(arrival - stamp)
        found.append(Latencies(E_TWO, tuple(local)))

        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        worker = context.Process(target=_worker, args=(url, prefix, theirs), daemon=True)
        worker.start()
        try:
            waits: list[float] = []
            events: list[float] = []
            for index in range(rounds + 1):
                task_id = store.create(OWNER).task_id
                mine.send(("wait", task_id))
                if not mine.poll(60):
                    raise RuntimeError("the waiter process did not start")
                mine.recv()
                time.sleep(0.1)  # well past its first read: blocked in the wait
                stamp = time.monotonic()
                store.complete(task_id, OWNER, None)
                if not mine.poll(30):
                    raise RuntimeError("the waiter process did not return from wait()")
                returned, status = mine.recv()
                if status != "completed":
                    raise RuntimeError(f"the waiter process saw {status}")
                task_id = store.create(OWNER).task_id
                mine.send(("complete", task_id))
                if not mine.poll(30):
                    raise RuntimeError("the worker process did not complete the task")
                written = mine.recv()
                arrival = clock.wait_for(task_id)
                if index:
                    waits.append(returned - stamp)
                    events.append(arrival - written)
            mine.send(("stop", ""))
            worker.join(10)
        finally:
            if worker.is_alive():
                worker.terminate()
                worker.join(10)
        found.append(Latencies(W_PROC, tuple(waits)))
        found.append(Latencies(E_PROC, tuple(events)))

    found += _backend_latencies(url, short_rounds)
    return found


def _backend_latencies(url: str, rounds: int) -> list[Latencies]:
    """``wait_for_change`` edge cases: already changed, woken by delete, lost message."""
    prefix = f"bench-edge-{uuid.uuid4().hex[:8]}"
    changed: list[float] = []
    changed2: list[float] = []
    deleted: list[float] = []
    lost: list[float] = []
    writer = RedisBackend.from_url(url, prefix=prefix)
    try:
        for index in range(rounds + 1):
            key = (OWNER, f"t{index}")
            writer.put(key, b"{}", None)
            writer.put(key, b"{}", None)  # version 2
            elapsed = _already_changed(url, prefix, key, protocol=3)
            elapsed2 = _already_changed(url, prefix, key, protocol=2)

            delete_key = (OWNER, f"d{index}")
            writer.put(delete_key, b"{}", None)
            latency, _ = time_wakeup(
                lambda: writer.wait_for_change(delete_key, 1, 5.0),  # noqa: B023 - joined here
                lambda: writer.delete(delete_key),  # noqa: B023
            )
            if index:
                changed.append(elapsed)
                changed2.append(elapsed2)
                deleted.append(latency)
    finally:
        writer.close()

    slow = RedisBackend.from_url(url, prefix=prefix, wait_slice_s=LOST_SLICE_S)
    try:
        for index in range(rounds + 1):
            key = (OWNER, f"lost{index}")
            slow.put(key, b"{}", None)
            slow.wait_for_change(key, 0, 1.0)  # subscription up
            latency, _ = time_wakeup(
                lambda: _wait_past(slow, key, 1),  # noqa: B023 - joined here
                lambda: slow.put(key, b"{}", None),  # noqa: B023 - no event: no message
                settle_s=0.05,
            )
            if index:
                lost.append(latency)
    finally:
        slow.close()
    return [
        Latencies(CHANGED, tuple(changed)),
        Latencies(CHANGED_RESP2, tuple(changed2)),
        Latencies(DELETED, tuple(deleted)),
        Latencies(LOST, tuple(lost)),
    ]


def _already_changed(url: str, prefix: str, key: tuple[str, str], protocol: int) -> float:
    """Seconds a fresh backend's ``wait_for_change`` takes on a version already past (it
    starts the subscription, then re-reads, and returns)."""
    fresh = RedisBackend.from_url(url, prefix=prefix, protocol=protocol)
    try:
        started = time.perf_counter()
        fresh.wait_for_change(key, 1, 5.0)
        return time.perf_counter() - started
    finally:
        fresh.close()


def _wait_past(backend: RedisBackend, key: tuple[str, str], version: int) -> None:
    """Wait until ``key`` is past ``version``, as ``store.wait`` does: wait, re-read, repeat."""
    while backend.get(key).version == version:
        backend.wait_for_change(key, version, 10.0)


# -- faults ------------------------------------------------------------------------------------


def _until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def _first_event_after(writer: TaskStore, clock: EventClock, timeout_s: float = 20.0) -> float:
    """Write a task every 10 ms (a failed write is retried) until a listener receives the
    event of one of them; the monotonic time that event arrived (``inf``: none did)."""
    deadline = time.monotonic() + timeout_s
    written: list[str] = []
    while time.monotonic() < deadline:
        try:
            task_id = writer.create(OWNER).task_id
            writer.complete(task_id, OWNER, None)
            written.append(task_id)
        except BackendError:
            pass
        arrived = [clock.arrivals[t] for t in written if t in clock.arrivals]
        if arrived:
            return min(arrived)
        time.sleep(0.01)
    return float("inf")


def _answers(store: TaskStore) -> bool:
    try:
        store.list(OWNER, limit=1)
    except BackendError:
        return False
    return True


def _fails_fast(action: Callable[[], object]) -> float:
    """Seconds until ``action`` raises ``BackendError`` (anything else is an error here)."""
    started = time.perf_counter()
    try:
        action()
    except BackendError:
        return time.perf_counter() - started
    raise RuntimeError(f"{action} did not fail although the server is down")


def measure_fail_fast(server: LocalRedis, rounds: int) -> list[Latencies]:
    """How soon store calls fail with the server stopped, and frozen (SIGSTOP)."""
    assert server.process is not None
    timeouts = {"socket_timeout": FAULT_TIMEOUT_S, "socket_connect_timeout": FAULT_TIMEOUT_S}
    url = f"{server.url}?prefix=bench-fast-{uuid.uuid4().hex[:8]}"
    stopped: list[float] = []
    frozen: list[float] = []
    with taskstore.open(url, max_tasks_per_owner=None, **timeouts) as store:
        for _ in range(rounds):
            task_id = store.create(OWNER).task_id
            server.stop()
            try:
                for action in (
                    lambda: store.get(task_id, OWNER),  # noqa: B023 - called here
                    lambda: store.create(OWNER),
                    lambda: store.list(OWNER),
                    lambda: store.set_variables(task_id, OWNER, {"k": 1}),  # noqa: B023
                    lambda: store.complete(task_id, OWNER, {"ok": True}),  # noqa: B023
                    lambda: store.wait(task_id, OWNER, timeout=5),  # noqa: B023
                    store.cleanup_expired,
                ):
                    stopped.append(_fails_fast(action))
            finally:
                server.start()  # same port, empty
            _until(lambda: _answers(store), 10)
            task_id = store.create(OWNER).task_id
            pid = server.process.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                frozen.append(_fails_fast(lambda: store.get(task_id, OWNER)))  # noqa: B023
                frozen.append(
                    _fails_fast(lambda: store.set_variables(task_id, OWNER, {"k": 1}))  # noqa: B023
                )
            finally:
                os.kill(pid, signal.SIGCONT)
            _until(lambda: _answers(store), 10)
    return [Latencies(STOPPED, tuple(stopped)), Latencies(FROZEN, tuple(frozen))]


def measure_faults(server: LocalRedis, rounds: int) -> list[Latencies]:
    """Restart of the server and a killed subscription (only for a server started here)."""
    prefix = f"bench-fault-{uuid.uuid4().hex[:8]}"
    timeouts = {"socket_timeout": FAULT_TIMEOUT_S, "socket_connect_timeout": FAULT_TIMEOUT_S}
    options: dict[str, Any] = {
        "prefix": prefix, "poll_interval_ms": 30_000, "max_tasks_per_owner": None, **timeouts
    }
    back: list[float] = []
    woken: list[float] = []
    killed: list[float] = []
    flowing: list[float] = []
    with taskstore.open(server.url, **options) as listener, \
            taskstore.open(server.url, **options) as writer:
        clock = EventClock.new()
        listener.subscribe(clock)
        for _ in range(rounds):
            server.stop()
            time.sleep(0.3)  # the listener notices the outage meanwhile
            server.start()
            returned = time.monotonic()
            back.append(_first_event_after(writer, clock) - returned)
            # The listener's own connection died with the server: a first call may fail.
            _until(lambda: _answers(listener), 10)
            task_id = writer.create(OWNER).task_id
            latency, record = time_wakeup(
                lambda: listener.wait(task_id, OWNER, timeout=20),  # noqa: B023 - joined here
                lambda: writer.complete(task_id, OWNER, None),  # noqa: B023
            )
            _check(record)
            woken.append(latency)

    backend = RedisBackend.from_url(server.url, prefix=prefix, wait_slice_s=30, **timeouts)
    admin = redis.Redis(port=server.port)
    try:
        clock = EventClock.new()
        backend.add_listener(lambda data: clock({"taskId": data.decode(), "status": "completed"}))
        for index in range(rounds):
            key = (OWNER, f"k{index}")
            backend.put(key, b"{}", None)
            kills: list[float] = []

            def kill(kills: list[float] = kills) -> None:
                kills.append(time.monotonic())
                admin.client_kill_filter(_type="pubsub")

            latency, _ = time_wakeup(
                lambda: backend.wait_for_change(key, 1, 20),  # noqa: B023 - joined here
                kill,
                settle_s=0.2,
            )
            killed.append(latency)
            marker = f"after-kill-{index}"

            def publish(marker: str = marker, key: tuple[str, str] = key) -> bool:
                backend.put(key, b"{}", None, event=marker.encode())
                return _until(lambda: marker in clock.arrivals, 0.01)

            _until(publish, 20)
            flowing.append(clock.arrivals.get(marker, float("inf")) - kills[0])
    finally:
        backend.close()
        admin.close()
    return [
        Latencies(RESTART_EVENTS, tuple(back)),
        Latencies(RESTART_WAIT, tuple(woken)),
        Latencies(KILL_WAKE, tuple(killed)),
        Latencies(KILL_EVENTS, tuple(flowing)),
    ]


# -- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="an existing Redis (default: start redis-server)")
    parser.add_argument("--ops", type=int, default=5_000, help="operations per batch (5000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches (5)")
    parser.add_argument("--rounds", type=int, default=50, help="rounds per latency (50)")
    parser.add_argument(
        "--quick", action="store_true", help="--ops 1000 --repeats 3 --rounds 15, fewer faults"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.repeats, args.rounds = 1_000, 3, 15
    short_rounds = max(3, args.rounds // 3)
    fault_rounds = 2 if args.quick else 5
    began = start_stamp()
    started = time.perf_counter()
    log = progress(started)
    with contextlib.ExitStack() as stack:
        server = None if args.url else stack.enter_context(local_server())
        url = args.url if server is None else server.url
        bench = Bench(url, args.ops)
        info = bench.client.info("server")
        log(f"throughput: {args.ops} ops per batch, 1 + {args.repeats} interleaved rounds")
        rates = measure_throughput(bench, args.repeats, log)
        costs = per_operation_costs(bench)
        bench.store.close()
        bench.client.close()
        log(f"latencies: {args.rounds} rounds ({short_rounds} for wait_for_change edges)")
        latencies = measure_latencies(url, args.rounds, short_rounds)
        faults: list[Latencies] = []
        if server is not None:
            log(f"faults: {fault_rounds} rounds of restarts, killed subscriptions, a stopped "
                "and a frozen server")
            faults = measure_faults(server, fault_rounds)
            faults += measure_fail_fast(server, fault_rounds)

    print("# RedisBackend benchmark" + (" (--quick)" if args.quick else "") + "\n")
    for line in environment(
        f"Redis {info['redis_version']} ({'started here' if server else 'given by --url'}), "
        f"redis-py {redis.__version__} ({'hiredis' if _hiredis() else 'no hiredis'})",
        started=began,
    ):
        print(f"- {line}")
    print(
        f"\nOne client, one thread; {args.ops} operations per batch ({max(args.ops // 20, 10)} "
        f"for lists), best of {args.repeats} interleaved batches after a warm-up (± = spread "
        "of the batches); ratios: median of the per-batch ratios.\n"
    )
    print("## Throughput\n")
    floor = rates["raw HGET loop"]
    rows = []
    for name, values in rates.items():
        relative = ratio(values, floor)
        rows.append([name, f"{max(values):,.0f}", f"{max(values) - min(values):,.0f}",
                     str(relative), relative.range])
    print(table(["operation", "ops/s", "±", "vs raw HGET", "per-round range"], rows,
                left=(0, 4)))
    print("\n## Round trips and server commands per operation\n")
    rows = []
    for name, (trips, deltas) in costs.items():
        listed = ", ".join(
            f"{command.upper()} {calls:g}" for command, calls in sorted(deltas.items())
        )
        rows.append([name, f"{trips:g}", listed])
    print(table(["operation", "round trips", "server commands (INFO commandstats deltas)"],
                rows, left=(0, 2)))
    print(
        "\nServer commands include those a script runs (its HMGET, HSET, ZADD, PUBLISH, …); "
        "the client sends one EVALSHA for them. A store mutation is a read (HMGET) plus one "
        "compare-and-set script: 2 round trips, of which the backend mutation is 1.\n"
    )
    print("## Latencies\n")
    measured = latencies + faults
    print(table(Latencies.HEADER, [lat.row() for lat in measured]))
    print(
        "\nOne sample per round after a warm-up round (fault scenarios: no warm-up round; "
        "several calls per round against a stopped or frozen server); p100 = the slowest "
        "sample. Waiters use a 30 s poll interval, so only a pub/sub wake-up (or, for the lost "
        "message, the bounded re-read) ends their wait early; each is triggered 50 ms (100 ms "
        "across processes, 200 ms for CLIENT KILL) after it starts waiting."
        + ("" if server else " Fault scenarios: not run (the server was given by --url).")
        + "\n"
    )

    def cost(name: str, command: str = "") -> float:
        trips, deltas = costs[name]
        return deltas.get(command, 0.0) if command else trips

    lat = {latency.name: latency for latency in measured}
    store_get: Ratio = ratio(rates["store.get"], rates["raw HGET loop"])
    big_list: Ratio = ratio(rates["list(50), no results"], rates["list(50), 300 KB results"])
    targets = [
        Target("store.get: round trips", cost("store.get"), "==", 1, ""),
        Target("backend.get: round trips", cost("backend.get"), "==", 1, ""),
        Target("store.create: round trips", cost("store.create"), "==", 1, ""),
        *(
            Target(f"{name}: script calls (EVALSHA) of the backend mutation",
                   cost(name, command="evalsha"), "==", 1, "")
            for name in ("store.create", "store.set_variables", "store.complete")
        ),
        Target("store.list(50): round trips", cost("store.list(50)"), "<=", 2, ""),
        Target("store.list(50) after a cursor: round trips",
               cost("store.list(50) after a cursor"), "<=", 2, ""),
        Target("store.get ops/s / raw HGET ops/s", store_get, ">=", 0.5),
        Target("list(50) cost, 300 KB results / none (DESIGN §5)", big_list, "<=", 1.5),
        *(
            Target(f"{name}: p100", lat[name].ms(100) if name in lat else None, "<", limit,
                   "ms")
            for name, limit in LIMITS_MS.items()
        ),
    ]
    print("## Targets\n")
    print(
        "PASS: the target was met in this run; MISS: it was not; not measured: this run "
        "could not measure it. Ratios: median of the per-round ratios, with their range.\n"
    )
    print(targets_table(targets))
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: "
          f"{load_average()})\n")
    print(summary_line(targets))
    return 0


def _hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
