"""``TaskStore.stats()`` over a large store on each backend: its time, and its peak memory as the
store grows tenfold.

One run, per backend (memory, SQLite, PostgreSQL, Redis; DynamoDB Local only with
``--dynamodb-endpoint``): fill the store with ``--tasks`` / 10 tasks (default 10,000), call
``stats()``, grow it to ``--tasks`` (default 100,000) and call it again (a smaller size
below 500 tasks, one page of ``stats()``, does not fill a page: its peak is no baseline). At
each size:

- the time of ``stats()``: the median of ``--repeats`` calls (default 3), and the tasks it
  counted per second;
- its peak memory: the peak of ``tracemalloc`` during one call (started just before it, stopped
  just after; the larger of two calls, made after the timed ones), in this process: the Python
  memory the call allocates (pages of records, decoded records, the objects the driver makes)
  beyond what the process held before it. Memory a C library allocates itself (libpq's result
  buffers, SQLite's page cache) is not traced.

Tasks belong to one owner per 100 tasks (100 owners at 10,000, 1,000 at 100,000), all
``working`` (every record is a candidate for the oldest unfinished task). The fill is not what
is measured, but its time is printed: the records are made by ``store.create`` on a
``memory://`` store (so they are encoded by the store, as any task is), then written through
the backend's own ``create`` from 8 threads, except on SQLite, where one ``sqlite3``
``executemany`` transaction per batch inserts the same columns ``create`` writes (``create``
commits, hence syncs, once per task).

Target (issue "Operating taskstore in production", Performance), per backend, printed with PASS
or MISS computed from this run: ``stats()`` peak memory at ``--tasks`` at most 1.5x its peak at
``--tasks`` / 10 (memory does not grow with the store's size). The times are reported, without
a target. A backend whose server or driver is missing is ``not measured``. It always exits 0.

Servers: SQLite on a temporary file; PostgreSQL on a private cluster started here (``initdb``
in a temporary directory; fsync and synchronous commit off, which only speeds up the fill)
unless ``--pg-url`` names a database (a schema of its own is created and dropped); Redis on a
``redis-server`` started here (no persistence) unless ``--redis-url`` is given (a key prefix
of its own, deleted at the end).

Usage (from the repository root, in an environment with every driver)::

    .tox/all/bin/python benchmarks/bench_stats.py            # ~1 min (~5 with DynamoDB)
    .tox/all/bin/python benchmarks/bench_stats.py --quick    # 1,000 and 10,000 tasks, ~30 s
    .tox/all/bin/python benchmarks/bench_stats.py --tasks 200000 --dynamodb-endpoint URL
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from _harness import (
    Target,
    environment,
    free_port,
    load_average,
    progress,
    start_stamp,
    summary_line,
    table,
    targets_table,
)

import taskstore
from taskstore import SecurityConfig, StoreConfig, TaskStore
from taskstore.backends.base import VersionedRecord, key_bytes

TASKS_PER_OWNER = 100
BATCH = 10_000
THREADS = 8
LIMIT = 1.5
STORE_OPTIONS: dict[str, Any] = {"default_ttl_ms": 86_400_000, "max_tasks_per_owner": None}


# -- making and writing the tasks ----------------------------------------------------------------


def encoded_tasks(first: int, count: int) -> list[VersionedRecord]:
    """Tasks ``first`` … ``first + count - 1`` (owner ``i // TASKS_PER_OWNER``), created by
    ``store.create`` on a memory store: the backend records it wrote."""
    with taskstore.open("memory://", **STORE_OPTIONS) as maker:
        for i in range(first, first + count):
            maker.create(f"owner-{i // TASKS_PER_OWNER:06d}")
        records: list[VersionedRecord] = []
        cursor = None
        while True:
            page = maker.backend.scan(cursor, 1_000)  # type: ignore[attr-defined]
            records += page.records
            if page.next_cursor is None:
                return records
            cursor = page.next_cursor


def write_through_create(store: TaskStore) -> Callable[[list[VersionedRecord]], None]:
    backend = store.backend

    def write(records: list[VersionedRecord]) -> None:
        def one(record: VersionedRecord) -> None:
            backend.create(record.key, record.data, record.expires_at_ms,
                           sort_ms=record.sort_ms, now_ms=record.sort_ms)

        with ThreadPoolExecutor(THREADS) as pool:
            for _ in pool.map(one, records, chunksize=64):
                pass

    return write


def write_sqlite(path: str, table_sql: str) -> Callable[[list[VersionedRecord]], None]:
    def write(records: list[VersionedRecord]) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {table_sql} (owner, task_id, version, expires_at_ms, sort_ms, "
                "data) VALUES (?, ?, 1, ?, ?, ?)",
                [(key_bytes(r.key[0]), key_bytes(r.key[1]), r.expires_at_ms, r.sort_ms, r.data)
                 for r in records],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    return write


# -- the backends ------------------------------------------------------------------------------


@dataclass
class Subject:
    """One backend under test: its store, how to write records into it, what it runs on."""

    name: str
    store: TaskStore
    write: Callable[[list[VersionedRecord]], None]
    server: str


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
    import redis

    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", directory], stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        try:
            for _ in range(500):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            client.close()
            process.terminate()
            process.wait(10)


def open_subject(name: str, args: argparse.Namespace, stack: contextlib.ExitStack) -> Subject:
    """Start what ``name`` needs and open its store; raises when its server or driver is
    missing."""
    if name == "memory":
        store = stack.enter_context(taskstore.open("memory://", **STORE_OPTIONS))
        return Subject(name, store, write_through_create(store), "memory:// in this process")
    if name == "SQLite":
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-stats-"))
        path = os.path.join(directory, "stats.db")
        store = stack.enter_context(taskstore.open(f"sqlite:///{path}", **STORE_OPTIONS))
        table_sql = f'"{store.backend.table}"'  # type: ignore[attr-defined]
        return Subject(name, store, write_sqlite(path, table_sql),
                       f"SQLite {sqlite3.sqlite_version}, temporary file")
    if name == "PostgreSQL":
        import psycopg

        if args.pg_url:
            base, where = args.pg_url, "given by --pg-url"
        else:
            from _postgres import private_cluster

            base = stack.enter_context(private_cluster(durable=False)).url
            where = "private cluster started here, fsync off"
        schema = f"bench_{uuid.uuid4().hex[:8]}"

        def drop() -> None:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        stack.callback(drop)
        sep = "&" if "?" in base else "?"
        store = stack.enter_context(taskstore.open(
            f"{base}{sep}schema={schema}", pool_max=THREADS, **STORE_OPTIONS
        ))
        with psycopg.connect(base, autocommit=True) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        return Subject(name, store, write_through_create(store),
                       f"PostgreSQL {version} ({where}), psycopg {psycopg.__version__}")
    if name == "Redis":
        import redis

        url = args.redis_url or stack.enter_context(redis_server())
        prefix = f"bench-stats-{uuid.uuid4().hex[:8]}"
        store = stack.enter_context(taskstore.open(url, prefix=prefix, **STORE_OPTIONS))
        if args.redis_url:
            def drop_keys() -> None:
                client = redis.Redis.from_url(url)
                for key in client.scan_iter(match=f"*{prefix}*", count=1000):
                    client.delete(key)
                client.close()

            stack.callback(drop_keys)
        info = redis.Redis.from_url(url).info("server")
        where = "given by --redis-url" if args.redis_url else "started here"
        return Subject(name, store, write_through_create(store),
                       f"Redis {info['redis_version']} ({where}), redis-py {redis.__version__}")
    if name == "DynamoDB":
        import boto3

        from taskstore.backends.dynamodb import DynamoDbBackend

        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(variable, "bench")
        table_name = f"bench-stats-{uuid.uuid4().hex[:8]}"
        client = boto3.session.Session().client(
            "dynamodb", region_name="us-east-1", endpoint_url=args.dynamodb_endpoint
        )
        DynamoDbBackend.create_table(table_name, client=client)
        stack.callback(lambda: client.delete_table(TableName=table_name))
        backend = DynamoDbBackend(table_name, region="us-east-1",
                                  endpoint_url=args.dynamodb_endpoint)
        store = stack.enter_context(TaskStore(
            backend, config=StoreConfig(default_ttl_ms=STORE_OPTIONS["default_ttl_ms"]),
            security=SecurityConfig(max_tasks_per_owner=None),
        ))
        return Subject(name, store, write_through_create(store),
                       f"DynamoDB at {args.dynamodb_endpoint} (--dynamodb-endpoint)")
    raise ValueError(name)


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Size:
    """``stats()`` at one size of the store."""

    tasks: int
    fill_s: float
    counted: int = 0
    times: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)

    @property
    def time_s(self) -> float:
        return statistics.median(self.times)

    @property
    def peak(self) -> int:
        return max(self.peaks)


def measure(store: TaskStore, tasks: int, fill_s: float, repeats: int) -> Size:
    size = Size(tasks, fill_s)
    for _ in range(repeats):
        started = time.perf_counter()
        stats = store.stats()
        size.times.append(time.perf_counter() - started)
        size.counted = stats.tasks
    for _ in range(2):
        tracemalloc.start()
        try:
            store.stats()
            size.peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return size


def grow(subject: Subject, have: int, want: int, log: Callable[[str], None]) -> float:
    """Add tasks ``have`` … ``want - 1``; the seconds it took (making records included)."""
    started = time.perf_counter()
    for first in range(have, want, BATCH):
        subject.write(encoded_tasks(first, min(BATCH, want - first)))
        log(f"{subject.name}: {min(first + BATCH, want):,} tasks written")
    return time.perf_counter() - started


def mib(value: int) -> str:
    return f"{value / 1024 / 1024:.2f} MiB"


# -- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, help="the larger size (100000; --quick 10000); "
                        "the smaller is a tenth: keep it at least 500, one stats() page")
    parser.add_argument("--repeats", type=int, default=3, help="timed stats() calls per size")
    parser.add_argument("--pg-url", help="an existing PostgreSQL database (default: start one)")
    parser.add_argument("--redis-url", help="an existing Redis (default: start redis-server)")
    parser.add_argument("--dynamodb-endpoint", help="a DynamoDB Local endpoint (else skipped)")
    parser.add_argument("--quick", action="store_true", help="--tasks 10000 --repeats 2")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    large = args.tasks or (10_000 if args.quick else 100_000)
    small = max(1, large // 10)
    began = start_stamp()
    started = time.perf_counter()
    log = progress(started)
    names = ["memory", "SQLite", "PostgreSQL", "Redis"]
    if args.dynamodb_endpoint:
        names.append("DynamoDB")
    results: dict[str, tuple[Size, Size] | str] = {}
    servers: list[str] = []
    for name in names:
        with contextlib.ExitStack() as stack:
            try:
                subject = open_subject(name, args, stack)
            except Exception as exc:  # a server or driver missing: not measured
                results[name] = f"not measured: {str(exc).splitlines()[0]}"
                log(f"{name}: {results[name]}")
                continue
            servers.append(subject.server)
            fill = grow(subject, 0, small, log)
            first = measure(subject.store, small, fill, args.repeats)
            fill = grow(subject, small, large, log)
            second = measure(subject.store, large, fill, args.repeats)
            results[name] = (first, second)
            log(f"{name}: stats() {first.time_s:.2f} s at {small:,}, {second.time_s:.2f} s at "
                f"{large:,}; peak {mib(first.peak)}, {mib(second.peak)}")

    print("# stats() over a large store" + (" (--quick)" if args.quick else "") + "\n")
    for line in environment(*servers, started=began):
        print(f"- {line}")
    print(f"\nstats() time: median of {args.repeats} calls; peak: tracemalloc's peak during one "
          "call, the larger of two; fill: making the records and writing them (not what is "
          f"measured). One owner per {TASKS_PER_OWNER} tasks, all working.\n")
    rows = []
    targets: list[Target] = []
    for name in names:
        outcome = results[name]
        if isinstance(outcome, str):
            rows.append([name, "–", "–", "–", "–", "–", "–", outcome])
            targets.append(Target(f"{name}: stats() peak memory, {large:,} / {small:,} tasks",
                                  None, "<=", LIMIT, note=outcome))
            continue
        for size in outcome:
            rows.append([
                name, f"{size.tasks:,}", f"{size.counted:,}", f"{size.time_s:.3f} s",
                f"{size.counted / size.time_s:,.0f}", mib(size.peak), f"{size.fill_s:.1f} s",
                "times " + ", ".join(f"{t:.3f}" for t in size.times),
            ])
        first, second = outcome
        targets.append(Target(
            f"{name}: stats() peak memory, {large:,} / {small:,} tasks",
            second.peak / first.peak, "<=", LIMIT,
            note=f"{mib(second.peak)} / {mib(first.peak)}",
        ))
    print(table(["backend", "tasks", "counted", "stats()", "tasks/s", "peak memory", "fill",
                 "note"], rows, left=(0, 7)))
    print("\n## Targets\n")
    print("PASS: the target was met in this run; MISS: it was not; not measured: this run "
          "could not measure it. Times are reported above, without a target.\n")
    print(targets_table(targets))
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: "
          f"{load_average()})\n")
    print(summary_line(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
