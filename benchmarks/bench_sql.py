"""The SQL backends, SQLite and PostgreSQL: ``get`` next to a raw ``SELECT`` loop, statements
per operation as the database counts them, SQLite creates from 1 and 4 processes, PostgreSQL
throughput from 8 threads next to 1.

One run measures:

- on each backend, one thread: ops/s of ``store.get`` and of the backend's own ``get`` (no
  record decoding), next to the floor: a raw ``SELECT data FROM <table> WHERE owner = ? AND
  task_id = ?`` loop on the same database, the same table the backend created and the same
  key encoding (UTF-8 ``BLOB``/``bytea`` keys), through ``sqlite3`` / ``psycopg`` directly
  (psycopg: its defaults, autocommit, so statements are prepared after 5 executions; an
  unprepared loop, ``prepare_threshold=None`` as the backend's pool uses, is printed too);
- statements per operation (``store.get``, ``store.create``, ``store.set_variables``,
  ``store.update_status``, ``store.list`` first page of 50 and the page after a cursor), the
  most any of 20 calls ran: on SQLite every statement the backend's connections execute
  (``sqlite3.Connection.set_trace_callback``, through the backend's private trace hook), on
  PostgreSQL every statement the server logs for a store whose connections alone run with
  ``log_statement=all`` and a unique ``application_name`` (BEGIN and COMMIT would count too;
  in autocommit a statement is one round trip);
- SQLite ``store.create`` per second from 1 process and from 4 (``spawn``ed, each its own store
  on the same file, owners of its own), for a fixed time per round (report, no target);
- PostgreSQL ``store.get`` and ``store.set_variables`` per second from 8 threads and from 1
  thread, one store (``pool_min = pool_max = 8``), each thread on tasks of its own.

Targets (issue "SQL backends", Performance), each printed with PASS or MISS computed from this
run: ``store.get`` at least 0.7x the raw ``SELECT`` loop on each backend; statements: ``get`` 1,
a list page 1, on PostgreSQL each mutation's write 1 statement (round trip), on SQLite each
mutation 1 transaction; PostgreSQL 8 threads / 1 thread at least 3x, for ``get`` and for
``set_variables``. The machine's CPU count is in the header: clients and server share it. It
always exits 0: a benchmark reports, it does not gate.

Method: every throughput measurement runs one warm-up round and ``--rounds`` timed rounds
through ``_harness.run_rounds`` (round r of every measurement before round r + 1 of any, the
order reversed every other round), so both sides of a ratio share each round's load; each
ratio is the median of the per-round ratios. ops/s figures are the best round, ``±`` the
spread. The PostgreSQL cluster is private (``initdb`` in a temporary directory, started on a
free port with PostgreSQL's default, durable settings: ``fsync`` and ``synchronous_commit`` on)
unless ``--pg-url`` names a database (then a schema of its own is created and dropped, and the
statement counts are not measured: they need the server's log). SQLite: a temporary file.

Usage (from the repository root, in an environment with the ``postgres`` extra)::

    .tox/all/bin/python benchmarks/bench_sql.py            # ~1 min
    .tox/all/bin/python benchmarks/bench_sql.py --quick    # ~15 s
    .tox/all/bin/python benchmarks/bench_sql.py --pg-url postgresql://user@host/db
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from _harness import (
    Target,
    environment,
    load_average,
    progress,
    ratio,
    run_rounds,
    start_stamp,
    summary_line,
    table,
    targets_table,
)

import taskstore
from taskstore import TaskStore
from taskstore.backends.base import key_bytes

OWNER = "bench-owner"
POOL = 1_000
THREADS = 8
PROCESSES = 4
STORE_OPTIONS: dict[str, Any] = {"default_ttl_ms": 3_600_000, "max_tasks_per_owner": None}


def _store(url: str, **options: Any) -> TaskStore:
    return taskstore.open(url, **STORE_OPTIONS, **options)


def _fill(store: TaskStore) -> list[str]:
    """``POOL`` tasks of ``OWNER`` (a fifth with variables); their ids."""
    ids = [store.create(OWNER).task_id for _ in range(POOL)]
    for task_id in ids[: POOL // 5]:
        store.set_variables(task_id, OWNER, {"step": 1, "note": "warm"})
    return ids


# -- get next to a raw SELECT ------------------------------------------------------------------


class GetBench:
    """``store.get``, ``backend.get`` and raw ``SELECT`` loops of one backend, ``ops`` calls
    each per round, on keys drawn from the same pool."""

    def __init__(self, store: TaskStore, ids: list[str], ops: int, seed: int) -> None:
        self.store, self.ids, self.ops = store, ids, ops
        self.random = random.Random(seed)

    def keys(self) -> list[str]:
        return [self.ids[self.random.randrange(len(self.ids))] for _ in range(self.ops)]

    def timed(self, loop: Callable[[list[str]], None]) -> Callable[[], float]:
        def one_round() -> float:
            keys = self.keys()  # untimed
            started = time.perf_counter()
            loop(keys)
            return self.ops / (time.perf_counter() - started)

        return one_round

    def store_get(self, keys: list[str]) -> None:
        get = self.store.get
        for task_id in keys:
            get(task_id, OWNER)

    def backend_get(self, keys: list[str]) -> None:
        get = self.store.backend.get
        for task_id in keys:
            get((OWNER, task_id))


def raw_sqlite(path: str, table_sql: str) -> Callable[[list[str]], None]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    sql = f"SELECT data FROM {table_sql} WHERE owner = ? AND task_id = ?"
    owner = key_bytes(OWNER)

    def loop(keys: list[str]) -> None:
        execute = conn.execute
        for task_id in keys:
            row = execute(sql, (owner, key_bytes(task_id))).fetchone()
            assert row is not None

    return loop


def raw_postgres(url: str, table_sql: str, *, prepared: bool) -> Callable[[list[str]], None]:
    import psycopg

    options: dict[str, Any] = {} if prepared else {"prepare_threshold": None}
    conn = psycopg.connect(url, autocommit=True, **options)
    sql = f"SELECT data FROM {table_sql} WHERE owner = %s AND task_id = %s"
    owner = key_bytes(OWNER)

    def loop(keys: list[str]) -> None:
        execute = conn.execute
        for task_id in keys:
            row = execute(sql, (owner, key_bytes(task_id))).fetchone()
            assert row is not None

    return loop


# -- statements per operation ------------------------------------------------------------------

#: The operations counted: name → call(store, ids, i, cursor).
OPERATIONS: dict[str, Callable[[TaskStore, list[str], int, Any], object]] = {
    "store.get": lambda s, ids, i, c: s.get(ids[i], OWNER),
    "store.create": lambda s, ids, i, c: s.create("counted"),
    "store.set_variables": lambda s, ids, i, c: s.set_variables(ids[i], OWNER, {"n": i}),
    "store.update_status": lambda s, ids, i, c: s.update_status(
        ids[-1 - i], OWNER, "input_required", f"step {i}"
    ),
    "store.list(50)": lambda s, ids, i, c: s.list(OWNER, limit=50),
    "store.list(50) after a cursor": lambda s, ids, i, c: s.list(OWNER, cursor=c, limit=50),
}
COUNTED = 20


def count_sqlite(store: TaskStore, ids: list[str]) -> dict[str, dict[str, int]]:
    """Per operation, the most statements (and transactions, writes) one call ran."""
    cursor = store.list(OWNER, limit=50).next_cursor
    seen: list[str] = []
    store.backend._set_trace(seen.append)  # type: ignore[attr-defined]
    costs: dict[str, dict[str, int]] = {}
    try:
        for name, call in OPERATIONS.items():
            worst = {"statements": 0, "transactions": 0}
            for i in range(COUNTED):
                seen.clear()
                call(store, ids, i, cursor)
                worst["statements"] = max(worst["statements"], len(seen))
                begins = sum(s.startswith("BEGIN") for s in seen)
                worst["transactions"] = max(worst["transactions"], begins)
            costs[name] = worst
    finally:
        store.backend._set_trace(None)  # type: ignore[attr-defined]
    return costs


def count_postgres(cluster: Any, url: str, ids: list[str]) -> dict[str, dict[str, int]]:
    """Per operation, the most statements one call ran as the server logged them, and how
    many of those were mutation function calls (the write)."""
    app = f"bench_sql_{uuid.uuid4().hex[:8]}"
    with _store(url, application_name=app, options="-c log_statement=all") as store:
        cursor = store.list(OWNER, limit=50).next_cursor
        costs: dict[str, dict[str, int]] = {}
        for name, call in OPERATIONS.items():
            worst = {"statements": 0, "writes": 0}
            for i in range(COUNTED):
                before = cluster.logged(app)
                call(store, ids, i, cursor)
                new = cluster.logged(app)[len(before):]
                worst["statements"] = max(worst["statements"], len(new))
                writes = sum('__create"(' in s or '__put_if_version"(' in s for s in new)
                worst["writes"] = max(worst["writes"], writes)
            costs[name] = worst
    return costs


# -- SQLite creates from several processes -----------------------------------------------------


def _creator(path: str, conn: Connection) -> None:
    """A spawned process: its own store on ``path``; on ``(start_at, seconds)`` it creates
    tasks (owners of its own) from ``start_at`` (monotonic) for ``seconds``, then answers
    ``(count, seconds taken)``; on ``None`` it ends."""
    owner = f"proc-{os.getpid()}"
    with _store(f"sqlite:///{path}") as store:
        store.create(owner)
        conn.send("ready")
        while (message := conn.recv()) is not None:
            start_at, seconds = message
            time.sleep(max(0.0, start_at - time.monotonic()))
            end, count = start_at + seconds, 0
            while time.monotonic() < end:
                store.create(f"{owner}-{count % 50}")
                count += 1
            conn.send((count, time.monotonic() - start_at))


@contextlib.contextmanager
def creators(path: str, count: int) -> Iterator[list[Connection]]:
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for _ in range(count):
        mine, theirs = context.Pipe()
        worker = context.Process(target=_creator, args=(path, theirs), daemon=True)
        worker.start()
        pipes.append(mine)
        workers.append(worker)
    try:
        for pipe in pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError("a creator process did not start")
        yield pipes
    finally:
        for pipe, worker in zip(pipes, workers, strict=True):
            with contextlib.suppress(OSError):
                pipe.send(None)
            worker.join(10)
            if worker.is_alive():
                worker.terminate()


def creates_per_second(pipes: list[Connection], seconds: float) -> float:
    start_at = time.monotonic() + 0.05
    for pipe in pipes:
        pipe.send((start_at, seconds))
    answers = [pipe.recv() for pipe in pipes]
    return sum(count for count, _ in answers) / max(taken for _, taken in answers)


# -- PostgreSQL threads ------------------------------------------------------------------------


def threaded_rate(threads: int, seconds: float, op: Callable[[int, int], object]) -> float:
    """Calls per second of ``op(thread, n)`` from ``threads`` threads for ``seconds``."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    finished = [0.0] * threads
    window: list[float] = []

    def work(k: int) -> None:
        barrier.wait()
        n, end = 0, window[1]
        while time.perf_counter() < end:
            op(k, n)
            n += 1
        counts[k], finished[k] = n, time.perf_counter()

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    window.extend((start, start + seconds))
    barrier.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (max(finished) - start)


# -- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pg-url", help="an existing PostgreSQL database (default: start one)")
    parser.add_argument("--ops", type=int, default=5_000, help="get calls per round (5000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (5)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="seconds per round of the process and thread measurements (1.0)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--quick", action="store_true", help="--ops 1000 --rounds 3 --seconds 0.3")
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.rounds, args.seconds = 1_000, 3, 0.3
    began = start_stamp()
    started = time.perf_counter()
    log = progress(started)
    targets: list[Target] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sql-"))
        path = os.path.join(directory, "bench.db")
        sqlite_store = stack.enter_context(_store(f"sqlite:///{path}"))
        sqlite_ids = _fill(sqlite_store)
        sqlite_table = f'"{sqlite_store.backend.table}"'  # type: ignore[attr-defined]
        sq = GetBench(sqlite_store, sqlite_ids, args.ops, args.seed)
        measurements: dict[str, Callable[[], float]] = {
            "SQLite raw SELECT": sq.timed(raw_sqlite(path, sqlite_table)),
            "SQLite store.get": sq.timed(sq.store_get),
            "SQLite backend.get": sq.timed(sq.backend_get),
        }
        pg_error = ""
        cluster = None
        pg_version = ""
        try:
            import psycopg

            if args.pg_url:
                base = args.pg_url
            else:
                from _postgres import private_cluster

                cluster = stack.enter_context(private_cluster(durable=True))
                base = cluster.url
                log(f"PostgreSQL cluster started on port {cluster.port}")
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            sep = "&" if "?" in base else "?"
            pg_url = f"{base}{sep}schema={schema}"

            def drop_schema(base: str = base, schema: str = schema) -> None:
                with psycopg.connect(base, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

            stack.callback(drop_schema)
            pg_store = stack.enter_context(
                _store(pg_url, pool_min=THREADS, pool_max=THREADS)
            )
            with psycopg.connect(base, autocommit=True) as conn:
                pg_version = str(conn.execute("SELECT version()").fetchone()[0]).split(",")[0]
                fsync = conn.execute("SHOW fsync").fetchone()[0]
                commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
            pg_version += f" (fsync {fsync}, synchronous_commit {commit})"
            pg_ids = _fill(pg_store)
            pg_table = f'"{schema}"."{pg_store.backend.table}"'  # type: ignore[attr-defined]
            pg = GetBench(pg_store, pg_ids, args.ops, args.seed)
            measurements.update({
                "PostgreSQL raw SELECT": pg.timed(raw_postgres(base, pg_table, prepared=True)),
                "PostgreSQL store.get": pg.timed(pg.store_get),
                "PostgreSQL backend.get": pg.timed(pg.backend_get),
                "PostgreSQL raw SELECT, unprepared": pg.timed(
                    raw_postgres(base, pg_table, prepared=False)
                ),
            })
        except Exception as exc:  # no driver, no server binaries, no connection
            pg_error = f"PostgreSQL not measured: {exc}".splitlines()[0]
            log(pg_error)

        log(f"get: {args.ops} calls per round, 1 + {args.rounds} interleaved rounds")
        rates = run_rounds(measurements, args.rounds, log=log)

        log("statements per operation")
        sqlite_costs = count_sqlite(sqlite_store, sqlite_ids)
        pg_costs = None
        if not pg_error and cluster is not None:
            pg_costs = count_postgres(cluster, pg_url, pg_ids)

        log(f"SQLite creates: 1 and {PROCESSES} processes, {args.seconds:g} s per round")
        with creators(path, PROCESSES) as pipes:
            procs = run_rounds({
                "1 process": lambda: creates_per_second(pipes[:1], args.seconds),
                f"{PROCESSES} processes": lambda: creates_per_second(pipes, args.seconds),
            }, args.rounds, log=log)

        scaling: dict[str, list[float]] = {}
        if not pg_error:
            log(f"PostgreSQL: 1 and {THREADS} threads, {args.seconds:g} s per round")

            def get_op(k: int, n: int) -> object:
                return pg_store.get(pg_ids[(k * 125 + n * 7) % POOL], OWNER)

            owned = [pg_ids[k::THREADS] for k in range(THREADS)]

            def mutate_op(k: int, n: int) -> object:
                own = owned[k]
                return pg_store.set_variables(own[n % len(own)], OWNER, {"n": n})

            scaling = run_rounds({
                "get, 1 thread": lambda: threaded_rate(1, args.seconds, get_op),
                f"get, {THREADS} threads": lambda: threaded_rate(THREADS, args.seconds, get_op),
                "set_variables, 1 thread": lambda: threaded_rate(1, args.seconds, mutate_op),
                f"set_variables, {THREADS} threads": lambda: threaded_rate(
                    THREADS, args.seconds, mutate_op
                ),
            }, args.rounds, log=log)

    print("# SQL backends benchmark" + (" (--quick)" if args.quick else "") + "\n")
    extra = [f"SQLite {sqlite3.sqlite_version} (temporary file, WAL, synchronous=FULL)"]
    if pg_error:
        extra.append(pg_error)
    else:
        import psycopg

        where = "given by --pg-url" if args.pg_url else "private cluster started here"
        extra.append(f"{pg_version}, {where}; psycopg {psycopg.__version__}")
    for line in environment(*extra, started=began):
        print(f"- {line}")
    print(f"\n{args.ops} calls per round, one thread; best of {args.rounds} interleaved rounds "
          "after a warm-up (± = spread of the rounds); ratios: median of the per-round "
          "ratios.\n")
    print("## get next to a raw SELECT loop\n")
    rows = []
    for name, values in rates.items():
        floor = rates[name.split(" ", 1)[0] + " raw SELECT"]
        relative = ratio(values, floor)
        rows.append([name, f"{max(values):,.0f}", f"{max(values) - min(values):,.0f}",
                     str(relative), relative.range])
    print(table(["operation", "ops/s", "±", "vs raw SELECT", "per-round range"], rows,
                left=(0, 4)))
    print("\n## Statements per operation\n")
    rows = [["SQLite", name, str(c["statements"]), f"{c['transactions']} transaction(s)"]
            for name, c in sqlite_costs.items()]
    if pg_costs is not None:
        rows += [["PostgreSQL", name, str(c["statements"]), f"{c['writes']} mutation call(s)"]
                 for name, c in pg_costs.items()]
    print(table(["backend", "operation", "statements", "of which"], rows, left=(0, 1, 3)))
    print(f"\nThe most any of {COUNTED} calls ran. SQLite: statements its connections executed "
          "(BEGIN IMMEDIATE and COMMIT included). PostgreSQL: statements the server logged "
          "for the counting store's connections; in autocommit each is one round trip. A "
          "store mutation is a read (get) and one compare-and-set write.")
    if pg_costs is None and not pg_error:
        notes.append("PostgreSQL statement counts: not measured (--pg-url: no server log).")
    print(f"\n## SQLite store.create, 1 process and {PROCESSES} processes\n")
    one, many = procs["1 process"], procs[f"{PROCESSES} processes"]
    relative = ratio(many, one)
    print(table(["processes", "creates/s (median)", "per round"], [
        ["1", f"{sorted(one)[len(one) // 2]:,.0f}", ", ".join(f"{v:,.0f}" for v in one)],
        [str(PROCESSES), f"{sorted(many)[len(many) // 2]:,.0f}",
         ", ".join(f"{v:,.0f}" for v in many)],
    ], left=(0, 2)))
    print(f"\n{PROCESSES} processes / 1 process: {relative} (per round {relative.range}); "
          "report, no target. Each process: its own store on the file, owners of its own.")
    if scaling:
        print(f"\n## PostgreSQL, {THREADS} threads and 1 thread (one store, pool of {THREADS})\n")
        rows = [[name, f"{max(v):,.0f}", f"{max(v) - min(v):,.0f}"] for name, v in scaling.items()]
        print(table(["measurement", "ops/s", "±"], rows))
    for note in notes:
        print(f"\n{note}")

    for backend in ("SQLite", "PostgreSQL"):
        if f"{backend} store.get" in rates:
            targets.append(Target(
                f"{backend}: store.get ops/s / raw SELECT loop ops/s",
                ratio(rates[f"{backend} store.get"], rates[f"{backend} raw SELECT"]), ">=", 0.7,
            ))
        elif backend == "PostgreSQL":
            targets.append(Target(f"{backend}: store.get / raw SELECT", None, ">=", 0.7))

    def count(costs: dict[str, dict[str, int]] | None, name: str, what: str) -> int | None:
        return None if costs is None else costs[name][what]

    targets += [
        Target("SQLite: store.get statements", count(sqlite_costs, "store.get", "statements"),
               "==", 1, ""),
        *(Target(f"SQLite: {name} transactions", count(sqlite_costs, name, "transactions"),
                 "==", 1, "")
          for name in ("store.create", "store.set_variables", "store.update_status")),
        *(Target(f"SQLite: {name} statements", count(sqlite_costs, name, "statements"),
                 "==", 1, "")
          for name in ("store.list(50)", "store.list(50) after a cursor")),
        Target("PostgreSQL: store.get statements (round trips)",
               count(pg_costs, "store.get", "statements"), "==", 1, ""),
        Target("PostgreSQL: store.create statements (round trips)",
               count(pg_costs, "store.create", "statements"), "==", 1, ""),
        *(Target(f"PostgreSQL: {name}: write statements (round trips)",
                 count(pg_costs, name, "writes"), "==", 1, "")
          for name in ("store.set_variables", "store.update_status")),
        *(Target(f"PostgreSQL: {name} statements (round trips)",
                 count(pg_costs, name, "statements"), "==", 1, "")
          for name in ("store.list(50)", "store.list(50) after a cursor")),
    ]
    for op in ("get", "set_variables"):
        many_key, one_key = f"{op}, {THREADS} threads", f"{op}, 1 thread"
        value = ratio(scaling[many_key], scaling[one_key]) if scaling else None
        targets.append(Target(f"PostgreSQL: store.{op} ops/s, {THREADS} threads / 1 thread",
                              value, ">=", 3.0, note=f"{os.cpu_count()} CPUs"))
    print("\n## Targets\n")
    print("PASS: the target was met in this run; MISS: it was not; not measured: this run "
          "could not measure it. Ratios: median of the per-round ratios, with their range.\n")
    print(targets_table(targets))
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: "
          f"{load_average()})\n")
    print(summary_line(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
