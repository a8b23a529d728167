"""Throughput of the in-memory ``TaskStore``, side by side with its floor and the mcp SDK.

One run measures, with the same settings:

- ``create``, ``get``, ``update_status`` (working <-> input_required), ``set_variables``,
  ``complete`` and ``list`` (a page of 50) of ``taskstore.open("memory://")``, one thread, at
  1 k, 10 k and 100 k stored tasks (100 per owner: 10, 100 and 1 000 owners), picking tasks
  uniformly from the whole store; at 100 k also on a "hot" working set (the tasks of 10 owners:
  the same 1 k tasks as the small store, inside the big one), which separates what the store's
  size costs the algorithms from what it costs the CPU caches;
- the same operations on the 1 k store with 1 and N threads (default 8; aggregate throughput,
  each thread on its own tasks, released together by a barrier);
- ``list`` of a single owner holding all 1 k or 100 k tasks: first page, and a page from the
  middle reached through a cursor;
- the floor: a plain ``dict`` lookup of the same stored record bytes plus
  ``taskstore.record.decode_record`` (the msgspec decode any ``get`` must do), with the same
  draws as ``get``;
- the official ``mcp`` SDK's ``InMemoryTaskStore`` (``mcp<2``, the v1.x experimental tasks
  runtime), driven through ``asyncio.run``, at 1 k and 10 k tasks with a one-hour TTL.

It then checks the targets of issue 2 and prints PASS or MISS for each: ``get`` within 3x of the
floor; per-op cost at 100 k tasks within 1.3x of 1 k; N-thread aggregate throughput at least
0.7x single-threaded; ``get`` at least 10x the mcp SDK's at 10 k tasks. It always exits 0: a
benchmark reports, it does not gate.

Method: every sample comes from ``random.Random`` seeded with ``--seed`` (default 1234); the
script re-executes itself with ``PYTHONHASHSEED=0`` (owners map to lock stripes by ``hash``)
unless that variable is set. All stores are built first; then every measurement runs one
warm-up round and ``--repeats`` timed rounds (default 5, 3 with ``--quick``), *interleaved*
(round r of every measurement before round r + 1 of any), so load from other processes spreads
over all figures instead of skewing one side of a ratio. Each figure is the best round
(``--stat median`` for medians); ``±`` is the spread of the rounds (max - min over the figure).
Measurements that a target compares run back to back in every round, and the target's ratio is
the median of the per-round ratios.
Timing uses ``time.perf_counter``; the populations are ``gc.freeze()``-d and ``gc.collect()``
runs before each timed batch. Operations that use tasks up run in batches of at most half the
tasks in play and keep the store's size: ``create`` first deletes the tasks whose owners it
creates for, ``complete``'s tasks are replaced by fresh ones, both untimed between batches.

The ``mcp`` package pulls in many dependencies, so it lives in a venv of its own, never in the
project's environment::

    python -m venv --system-site-packages ~/.cache/taskstore/bench-venv
    ~/.cache/taskstore/bench-venv/bin/pip install 'mcp>=1.24,<2'
    ~/.cache/taskstore/bench-venv/bin/pip install -e . --no-deps
    ~/.cache/taskstore/bench-venv/bin/python benchmarks/bench_memory.py          # ~1.5 min
    ~/.cache/taskstore/bench-venv/bin/python benchmarks/bench_memory.py --quick  # ~15 s

Without ``mcp`` (e.g. ``python benchmarks/bench_memory.py`` in the project's environment) the
SDK comparison prints ``mcp SDK: not installed, skipped`` and the rest runs unchanged.

Populating the SDK's store through ``create_task`` costs O(n) per call (it sweeps every task for
expiry): about 19 s for 10 k tasks. So the population is inserted the way ``create_task`` does
it, minus that sweep (the same ``StoredTask`` objects, from ``create_task_state``); every
measured operation goes through the public async API.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import msgspec

import taskstore
from taskstore import TaskStatus, TaskStore
from taskstore.record import decode_record

_T = TypeVar("_T")

#: Original ``tools/call`` params every task keeps (a typical, small request).
REQUEST: dict[str, Any] = {"name": "search", "arguments": {"query": "quarterly report", "top": 10}}
#: What ``complete`` stores: a small ``CallToolResult``.
RESULT: dict[str, Any] = {"content": [{"type": "text", "text": "42 documents found"}]}
TTL_MS = 3_600_000
PER_OWNER = 100
PAGE = 50
#: Stored tasks of the taskstore runs (threads and the hot view: see ``run_taskstore``).
SIZES = (1_000, 10_000, 100_000)
#: Owners whose tasks form the "hot" working set inside the 100 k store: 1 k tasks.
HOT_OWNERS = 10
MCP_SIZES = (1_000, 10_000)
OPS = ("create", "get", "update_status", "set_variables", "complete", "list")
#: list(50) of a single owner holding every task: first page, and a page from the middle.
_ONE_OWNER = ("list_one_owner_first", "list_one_owner_middle")
# Operations per round (full run; --quick divides by 5), so that a round of one measurement
# takes about 0.1 s on the 2-core machine of docs/benchmarks.md.
TASKSTORE_OPS = {
    "create": 5_000,
    "get": 25_000,
    "update_status": 5_000,
    "set_variables": 6_000,
    "complete": 4_000,
    "list": 1_200,
    "floor": 50_000,
    "list_big": 1_200,
}
# The SDK's create/get/list sweep every task for expiry (O(n)); its update/complete do not.
MCP_OPS = {
    1_000: {"create": 500, "get": 500, "update_status": 4_000, "complete": 2_000, "list": 300},
    10_000: {"create": 50, "get": 50, "update_status": 4_000, "complete": 2_000, "list": 30},
}

TaskKey = tuple[str, str]  # (task_id, owner)


# -- measuring ---------------------------------------------------------------------------------


class Stats(NamedTuple):
    """Seconds per operation over the timed rounds (aggregate over threads).

    ``cost`` is the figure reported: the best (lowest) round, or the median with
    ``--stat median``.
    """

    cost: float
    low: float
    median: float
    high: float
    ops: int
    samples: tuple[float, ...]  # per round, in round order

    @property
    def rate(self) -> float:
        """Operations per second at ``cost``."""
        return 1.0 / self.cost

    @property
    def spread(self) -> float:
        """(slowest - fastest) / ``cost``: how much the rounds disagreed."""
        return (self.high - self.low) / self.cost


class Key(NamedTuple):
    """What one measurement measured.

    ``access`` is ``"all"`` (operations spread uniformly over every stored task) or ``"hot"``
    (over the tasks of 10 owners, i.e. 1 k tasks, of a larger store).
    """

    impl: str  # "taskstore", "floor" or "mcp"
    case: str
    size: int
    threads: int = 1
    access: str = "all"


Results = dict[Key, Stats]


@dataclass
class Batch:
    """One timed batch: ``jobs`` run in parallel (one thread each) and perform ``ops`` ops."""

    jobs: list[Callable[[], None]]
    ops: int
    after: Callable[[], None] | None = None  # untimed clean-up


@dataclass
class ABatch:
    """One timed batch of the async (mcp SDK) side: ``run`` times itself."""

    run: Callable[[], Awaitable[float]]
    ops: int
    after: Callable[[], Awaitable[None]] | None = None


#: One round of one measurement, as timed batches (set up lazily, right before each is timed).
Bench = Callable[[], Iterator[Batch]]
ABench = Callable[[], AsyncIterator[ABatch]]


def _run_parallel(jobs: Sequence[Callable[[], None]]) -> float:
    """Run each job on its own thread, released together; return the wall time they took."""
    gc.collect()
    if len(jobs) == 1:
        start = time.perf_counter()
        jobs[0]()
        return time.perf_counter() - start
    barrier = threading.Barrier(len(jobs))
    starts = [0.0] * len(jobs)
    ends = [0.0] * len(jobs)
    errors: list[BaseException] = []

    def work(index: int, job: Callable[[], None]) -> None:
        barrier.wait()
        starts[index] = time.perf_counter()
        try:
            job()
        except BaseException as exc:  # re-raised on the main thread
            errors.append(exc)
        ends[index] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    # Each worker stamps its own start after the barrier: no thread-start latency is counted.
    return max(ends) - min(starts)


def _stats(samples: list[float], ops: int, stat: str) -> Stats:
    low, median, high = min(samples), statistics.median(samples), max(samples)
    return Stats(low if stat == "best" else median, low, median, high, ops, tuple(samples))


def measure(
    benches: dict[Key, Bench], repeats: int, stat: str, log: Callable[[str], None]
) -> Results:
    """Time every bench for one warm-up round and ``repeats`` rounds, interleaved.

    Round *r* of every bench runs before round *r + 1* of any, in the order of ``benches``, so
    a burst of load from another process on the machine lands on many measurements a little
    instead of on one a lot, and measurements that are compared (placed next to each other)
    share the same conditions round by round: see :func:`_paired_ratio`.
    """
    samples: dict[Key, list[float]] = {key: [] for key in benches}
    ops: dict[Key, int] = {}
    for round_ in range(repeats + 1):
        for key, bench in benches.items():
            elapsed = 0.0
            ops[key] = 0
            for batch in bench():
                elapsed += _run_parallel(batch.jobs)
                ops[key] += batch.ops
                if batch.after is not None:
                    batch.after()
            if round_:  # round 0 warms up
                samples[key].append(elapsed / ops[key])
        log(f"round {round_}/{repeats} done" + (" (warm-up)" if not round_ else ""))
    return {key: _stats(samples[key], ops[key], stat) for key in benches}


async def measure_async(benches: dict[Key, ABench], repeats: int, stat: str) -> Results:
    """:func:`measure` for coroutines, on the running event loop."""
    samples: dict[Key, list[float]] = {key: [] for key in benches}
    ops: dict[Key, int] = {}
    for round_ in range(repeats + 1):
        for key, bench in benches.items():
            elapsed = 0.0
            ops[key] = 0
            async for batch in bench():
                gc.collect()
                elapsed += await batch.run()
                ops[key] += batch.ops
                if batch.after is not None:
                    await batch.after()
            if round_:
                samples[key].append(elapsed / ops[key])
    return {key: _stats(samples[key], ops[key], stat) for key in benches}


def _split(items: Sequence[_T], parts: int) -> list[Sequence[_T]]:
    """Deal ``items`` into ``parts`` disjoint slices (so threads never touch the same task)."""
    return [items[i::parts] for i in range(parts)]


def _batch_sizes(ops: int, population: int) -> list[int]:
    """Batches of at most half the tasks, so a store never shrinks or grows by more."""
    size = max(1, min(ops, population // 2))
    return [size] * max(1, ops // size)


# -- the taskstore side ------------------------------------------------------------------------


@dataclass
class Population:
    """A store filled with ``size`` working tasks, ``per_owner`` per owner.

    ``keys[i]`` is the ``(task_id, owner)`` of slot ``i``; operations that use a task up
    (``complete``) or make room (``create``) put a fresh task back in the same slot.
    """

    store: TaskStore
    keys: list[TaskKey]
    owners: list[str]
    seed: str

    @classmethod
    def build(cls, size: int, per_owner: int, seed: int) -> Population:
        """Create the tasks through the public API (quota = ``per_owner`` unless one owner)."""
        quota = None if per_owner >= size else per_owner
        store = taskstore.open("memory://", max_tasks_per_owner=quota)
        owners = [f"user-{n:06d}@example.com" for n in range(max(1, size // per_owner))]
        keys: list[TaskKey] = []
        for owner in owners:
            for _ in range(min(per_owner, size)):
                keys.append((store.create(owner, request=REQUEST).task_id, owner))
        return cls(store, keys, owners, f"{seed}:{size}:{per_owner}")

    def view(self, owners: int | None = None) -> View:
        """All tasks, or those of ``owners`` owners picked at random (seeded)."""
        if owners is None or owners >= len(self.owners):
            return View(self, "all", list(range(len(self.keys))), list(self.owners))
        chosen = random.Random(f"{self.seed}:hot").sample(self.owners, owners)
        wanted = set(chosen)
        indexes = [i for i, (_, owner) in enumerate(self.keys) if owner in wanted]
        return View(self, "hot", indexes, chosen)

    def replace(self, index: int) -> None:
        """Delete task ``index`` and create a fresh working one for the same owner (untimed)."""
        task_id, owner = self.keys[index]
        self.store.backend.delete((owner, task_id))
        self.keys[index] = (self.store.create(owner, request=REQUEST).task_id, owner)


@dataclass
class View:
    """The slots (and owners) of a :class:`Population` that one measurement works on."""

    pop: Population
    name: str
    indexes: list[int]
    owners: list[str]

    def rng(self, case: str, threads: int) -> random.Random:
        """A generator seeded by the run seed, the population, the view and the case."""
        return random.Random(f"{self.pop.seed}:{self.name}:{case}:{threads}")

    def keys(self, indexes: Sequence[int]) -> list[TaskKey]:
        """The current ``(task_id, owner)`` of each slot."""
        return [self.pop.keys[i] for i in indexes]


def _bench_get(view: View, ops: int, threads: int) -> Bench:
    rng = view.rng("get", threads)
    get = view.pop.store.get

    def job(part: Sequence[TaskKey]) -> Callable[[], None]:
        def run() -> None:
            for task_id, owner in part:
                get(task_id, owner)

        return run

    def bench() -> Iterator[Batch]:
        sample = view.keys(rng.choices(view.indexes, k=ops))
        yield Batch([job(part) for part in _split(sample, threads)], ops)

    return bench


def _bench_floor(view: View, ops: int) -> Bench:
    """What any ``get`` must do at least: find the stored bytes, decode them."""
    rng = view.rng("get", 1)  # the same draws as get
    backend = view.pop.store.backend
    slot_ids = {i: view.pop.keys[i][0] for i in view.indexes}  # frozen: slots may be refilled
    table = {
        task_id: backend.get((view.pop.keys[i][1], task_id)).data for i, task_id in slot_ids.items()
    }

    def run(ids: Sequence[str]) -> None:
        for task_id in ids:
            decode_record(table[task_id], 1)

    def bench() -> Iterator[Batch]:
        ids = [slot_ids[i] for i in rng.choices(view.indexes, k=ops)]
        yield Batch([lambda: run(ids)], ops)

    return bench


def _bench_update_status(view: View, ops: int, threads: int) -> Bench:
    rng = view.rng("update_status", threads)
    update = view.pop.store.update_status
    distinct = min(ops // 2, len(view.indexes))
    passes = max(2, ops // distinct // 2 * 2)  # even: every task ends as it started, working

    def job(part: Sequence[TaskKey]) -> Callable[[], None]:
        def run() -> None:
            for n in range(passes):
                status = TaskStatus.INPUT_REQUIRED if n % 2 == 0 else TaskStatus.WORKING
                for task_id, owner in part:
                    update(task_id, owner, status)

        return run

    def bench() -> Iterator[Batch]:
        sample = view.keys(rng.sample(view.indexes, distinct))
        yield Batch([job(part) for part in _split(sample, threads)], distinct * passes)

    return bench


def _bench_set_variables(view: View, ops: int, threads: int) -> Bench:
    rng = view.rng("set_variables", threads)
    set_variables = view.pop.store.set_variables
    distinct = min(ops, len(view.indexes))
    passes = max(1, ops // distinct)

    def job(part: Sequence[TaskKey]) -> Callable[[], None]:
        def run() -> None:
            for n in range(passes):
                for task_id, owner in part:
                    set_variables(task_id, owner, {"progress": n, "phase": "ranking"})

        return run

    def bench() -> Iterator[Batch]:
        sample = view.keys(rng.sample(view.indexes, distinct))
        yield Batch([job(part) for part in _split(sample, threads)], distinct * passes)

    return bench


def _bench_complete(view: View, ops: int, threads: int) -> Bench:
    rng = view.rng("complete", threads)
    complete = view.pop.store.complete

    def job(part: Sequence[TaskKey]) -> Callable[[], None]:
        def run() -> None:
            for task_id, owner in part:
                complete(task_id, owner, RESULT)

        return run

    def bench() -> Iterator[Batch]:
        for size in _batch_sizes(ops, len(view.indexes)):
            indexes = rng.sample(view.indexes, size)

            def after(indexes: list[int] = indexes) -> None:
                for index in indexes:
                    view.pop.replace(index)

            jobs = [job(part) for part in _split(view.keys(indexes), threads)]
            yield Batch(jobs, size, after)

    return bench


def _bench_create(view: View, ops: int, threads: int) -> Bench:
    rng = view.rng("create", threads)
    pop = view.pop
    create = pop.store.create

    def job(part: Sequence[int], made: dict[int, str]) -> Callable[[], None]:
        def run() -> None:
            for index in part:
                made[index] = create(pop.keys[index][1], request=REQUEST).task_id

        return run

    def bench() -> Iterator[Batch]:
        for size in _batch_sizes(ops, len(view.indexes)):
            indexes = rng.sample(view.indexes, size)
            # Make room first, so each owner ends where it started (at its quota).
            for task_id, owner in view.keys(indexes):
                pop.store.backend.delete((owner, task_id))
            made: dict[int, str] = {}

            def after(made: dict[int, str] = made) -> None:
                for index, task_id in made.items():
                    pop.keys[index] = (task_id, pop.keys[index][1])

            yield Batch([job(part, made) for part in _split(indexes, threads)], size, after)

    return bench


def _bench_list(view: View, ops: int, threads: int) -> Bench:
    rng = view.rng("list", threads)
    list_ = view.pop.store.list

    def job(part: Sequence[str]) -> Callable[[], None]:
        def run() -> None:
            for owner in part:
                list_(owner, limit=PAGE)

        return run

    def bench() -> Iterator[Batch]:
        sample = rng.choices(view.owners, k=ops)
        yield Batch([job(part) for part in _split(sample, threads)], ops)

    return bench


def _bench_list_big(pop: Population, ops: int, *, middle: bool) -> Bench:
    """``list(50)`` of a single owner holding every task: first page, or one from the middle."""
    owner = pop.owners[0]
    cursor: str | None = None
    seen = 0
    while middle and seen < len(pop.keys) // 2:  # walk there, untimed
        want = min(pop.store.config.max_list_page_size, len(pop.keys) // 2 - seen)
        page = pop.store.list(owner, cursor=cursor, limit=want)
        seen += len(page.tasks)
        cursor = page.next_cursor
    list_ = pop.store.list

    def run() -> None:
        for _ in range(ops):
            list_(owner, cursor=cursor, limit=PAGE)

    def bench() -> Iterator[Batch]:
        yield Batch([run], ops)

    return bench


_BENCHES: dict[str, Callable[[View, int, int], Bench]] = {
    "create": _bench_create,
    "get": _bench_get,
    "update_status": _bench_update_status,
    "set_variables": _bench_set_variables,
    "complete": _bench_complete,
    "list": _bench_list,
}


def run_taskstore(settings: Settings, log: Callable[[str], None]) -> Results:
    """Measure the memory store: every operation at 1 k / 10 k / 100 k tasks, threads, lists."""
    benches: dict[Key, Bench] = {}
    pops: list[Population] = []
    for size in SIZES:
        pop = Population.build(size, PER_OWNER, settings.seed)
        pops.append(pop)
        log(f"taskstore: {size:,} tasks, {len(pop.owners):,} owners")
        views = [pop.view()] + ([pop.view(HOT_OWNERS)] if size > HOT_OWNERS * PER_OWNER else [])
        thread_counts = (1, settings.threads) if size == SIZES[0] else (1,)
        for view in views:
            floor_ops = settings.scaled(TASKSTORE_OPS["floor"])
            benches[Key("floor", "get", size, 1, view.name)] = _bench_floor(view, floor_ops)
            for threads in thread_counts:
                for case in OPS:
                    bench = _BENCHES[case](view, settings.scaled(TASKSTORE_OPS[case]), threads)
                    benches[Key("taskstore", case, size, threads, view.name)] = bench
    for size in (SIZES[0], SIZES[-1]):
        pop = Population.build(size, size, settings.seed)
        pops.append(pop)
        log(f"taskstore: one owner with {size:,} tasks")
        ops = settings.scaled(TASKSTORE_OPS["list_big"])
        for middle in (False, True):
            case = "list_one_owner_middle" if middle else "list_one_owner_first"
            benches[Key("taskstore", case, size)] = _bench_list_big(pop, ops, middle=middle)
    # Measurements that targets compare run back to back (see _paired_ratio): group them.
    order = [*OPS, *_ONE_OWNER]
    benches = dict(
        sorted(
            benches.items(),
            key=lambda item: order.index("get" if item[0].impl == "floor" else item[0].case),
        )
    )
    # Freeze the populations out of the collector's reach: the gc.collect() before each batch
    # then costs milliseconds, not a walk over 200 k stored objects.
    gc.collect()
    gc.freeze()
    log(f"taskstore: {len(benches)} measurements, 1 + {settings.repeats} interleaved rounds")
    results = measure(benches, settings.repeats, settings.stat, log)
    gc.unfreeze()
    for pop in pops:
        pop.store.close()
    return results


# -- the mcp SDK side --------------------------------------------------------------------------


@dataclass
class McpSdk:
    """The pieces of the ``mcp`` package the comparison needs (all untyped)."""

    version: str
    where: str
    store_class: Any
    module: Any
    types: Any
    helpers: Any


def load_mcp() -> McpSdk | None:
    """Find ``InMemoryTaskStore`` in the installed ``mcp`` (``None`` when absent)."""
    for name in (
        "mcp.shared.experimental.tasks.in_memory_task_store",
        "mcp.shared.experimental.tasks",
        "mcp.server.experimental.tasks",
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        store_class = getattr(module, "InMemoryTaskStore", None)
        if store_class is None:
            continue
        try:
            helpers = importlib.import_module("mcp.shared.experimental.tasks.helpers")
        except ImportError:
            helpers = None
        try:
            version = importlib.metadata.version("mcp")
        except importlib.metadata.PackageNotFoundError:
            version = "(version unknown)"
        return McpSdk(
            version=version,
            where=f"{store_class.__module__}.{store_class.__qualname__}",
            store_class=store_class,
            module=importlib.import_module(store_class.__module__),
            types=importlib.import_module("mcp.types"),
            helpers=helpers,
        )
    return None


@dataclass
class McpPopulation:
    """An SDK ``InMemoryTaskStore`` holding ``size`` working tasks with a TTL."""

    sdk: McpSdk
    store: Any
    ids: list[str]
    seed: str
    fast_insert: bool = field(default=False)

    @classmethod
    async def build(cls, sdk: McpSdk, size: int, seed: int) -> McpPopulation:
        """Fill a store with ``size`` tasks (page size 50, like ``list(50)``)."""
        store = sdk.store_class(page_size=PAGE)
        pop = cls(sdk, store, [], f"{seed}:mcp:{size}")
        pop.fast_insert = all(
            hasattr(obj, attr)
            for obj, attr in (
                (store, "_tasks"),
                (store, "_calculate_expiry"),
                (sdk.module, "StoredTask"),
                (sdk.helpers, "create_task_state"),
            )
        )
        for _ in range(size):
            pop.ids.append(await pop.insert())
        return pop

    def metadata(self) -> Any:
        """The ``TaskMetadata`` of every task: a one-hour TTL."""
        return self.sdk.types.TaskMetadata(ttl=TTL_MS)

    async def insert(self) -> str:
        """Add one task untimed: what ``create_task`` does, without its O(n) expiry sweep."""
        if not self.fast_insert:
            return str((await self.store.create_task(self.metadata())).taskId)
        task = self.sdk.helpers.create_task_state(self.metadata())
        self.store._tasks[task.taskId] = self.sdk.module.StoredTask(
            task=task, expires_at=self.store._calculate_expiry(TTL_MS)
        )
        return str(task.taskId)

    def rng(self, case: str) -> random.Random:
        """A generator seeded by the run seed, the population and the case."""
        return random.Random(f"{self.seed}:{case}")


def _mcp_bench(pop: McpPopulation, case: str, ops: int) -> ABench | None:
    """The async batches of one SDK operation (``None``: the SDK has no such operation)."""
    store = pop.store
    rng = pop.rng(case)
    result = pop.sdk.types.CallToolResult(
        content=[pop.sdk.types.TextContent(type="text", text="42 documents found")]
    )

    async def get_batches() -> AsyncIterator[ABatch]:
        ids = rng.choices(pop.ids, k=ops)

        async def run() -> float:
            start = time.perf_counter()
            for task_id in ids:
                await store.get_task(task_id)
            return time.perf_counter() - start

        yield ABatch(run, ops)

    async def update_batches() -> AsyncIterator[ABatch]:
        distinct = min(ops // 2, len(pop.ids))
        passes = max(2, ops // distinct // 2 * 2)
        ids = rng.sample(pop.ids, distinct)

        async def run() -> float:
            start = time.perf_counter()
            for n in range(passes):
                status = "input_required" if n % 2 == 0 else "working"
                for task_id in ids:
                    await store.update_task(task_id, status=status)
            return time.perf_counter() - start

        yield ABatch(run, distinct * passes)

    async def complete_batches() -> AsyncIterator[ABatch]:
        for size in _batch_sizes(ops, len(pop.ids)):
            indexes = rng.sample(range(len(pop.ids)), size)
            ids = [pop.ids[i] for i in indexes]

            async def run(ids: list[str] = ids) -> float:
                # What the SDK's TaskContext.complete() does: store the result, then the status.
                start = time.perf_counter()
                for task_id in ids:
                    await store.store_result(task_id, result)
                    await store.update_task(task_id, status="completed")
                return time.perf_counter() - start

            async def after(indexes: list[int] = indexes) -> None:
                for index in indexes:
                    await store.delete_task(pop.ids[index])
                    pop.ids[index] = await pop.insert()

            yield ABatch(run, size, after)

    async def create_batches() -> AsyncIterator[ABatch]:
        for size in _batch_sizes(ops, len(pop.ids)):
            indexes = rng.sample(range(len(pop.ids)), size)
            for index in indexes:
                await store.delete_task(pop.ids[index])
            made: list[str] = []

            async def run(made: list[str] = made, size: int = size) -> float:
                metadata = pop.metadata()
                start = time.perf_counter()
                for _ in range(size):
                    made.append((await store.create_task(metadata)).taskId)
                return time.perf_counter() - start

            async def after(indexes: list[int] = indexes, made: list[str] = made) -> None:
                for index, task_id in zip(indexes, made, strict=True):
                    pop.ids[index] = task_id

            yield ABatch(run, size, after)

    async def list_batches() -> AsyncIterator[ABatch]:
        async def run() -> float:
            start = time.perf_counter()
            for _ in range(ops):
                await store.list_tasks(None)
            return time.perf_counter() - start

        yield ABatch(run, ops)

    cases: dict[str, ABench] = {
        "create": create_batches,
        "get": get_batches,
        "update_status": update_batches,
        "complete": complete_batches,
        "list": list_batches,
    }
    return cases.get(case)


async def run_mcp(sdk: McpSdk, settings: Settings, log: Callable[[str], None]) -> Results:
    """Measure the SDK store at 1 k and 10 k tasks on one event loop (``asyncio.run``)."""
    benches: dict[Key, ABench] = {}
    pops: list[McpPopulation] = []
    for size in MCP_SIZES:
        pop = await McpPopulation.build(sdk, size, settings.seed)
        pops.append(pop)
        how = "inserted directly" if pop.fast_insert else "through create_task"
        log(f"mcp SDK: {size:,} tasks ({how})")
        for case in OPS:
            ops = settings.scaled(MCP_OPS[size].get(case, 0), minimum=20)
            bench = _mcp_bench(pop, case, ops)
            if bench is not None:
                benches[Key("mcp", case, size)] = bench
    log(f"mcp SDK: {len(benches)} measurements, 1 + {settings.repeats} interleaved rounds")
    results = await measure_async(benches, settings.repeats, settings.stat)
    for pop in pops:
        pop.store.cleanup()
    return results


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What the command line chose."""

    quick: bool
    seed: int
    repeats: int
    threads: int
    mcp: bool
    stat: str  # "best" or "median"

    def describe(self) -> str:
        """How each figure was obtained, for the table titles."""
        how = "best" if self.stat == "best" else "median"
        return f"{how} of {self.repeats} rounds after 1 warm-up round"

    def scaled(self, ops: int, *, minimum: int = 100) -> int:
        """``ops``, divided by 5 for ``--quick`` (never below ``minimum``)."""
        return max(minimum, ops // 5) if self.quick else ops


# -- reporting ---------------------------------------------------------------------------------

_LABELS = {
    "list": f"list({PAGE})",
    "floor": "floor (get)",
    "list_one_owner_first": f"list({PAGE}), one owner, 1st page",
    "list_one_owner_middle": f"list({PAGE}), one owner, mid page",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, aligned for the terminal too (first column left, the rest right)."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cells[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)),
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]) + " |"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _rate(stats: Stats | None) -> str:
    return "n/a" if stats is None else f"{stats.rate:,.0f} ±{stats.spread:.0%}"


def _us(stats: Stats | None) -> str:
    return "n/a" if stats is None else f"{stats.cost * 1e6:,.1f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _cost_ratio(a: Stats | None, b: Stats | None) -> float | None:
    """Per-op cost of ``a`` over that of ``b`` (equivalently: throughput of ``b`` over ``a``)."""
    return None if a is None or b is None else a.cost / b.cost


def _paired_ratio(a: Stats | None, b: Stats | None) -> float | None:
    """Median over the rounds of ``a``'s per-op cost over ``b``'s in the same round.

    ``a`` and ``b`` ran back to back in every round, so each round's ratio compares them under
    the same load; the median of those ratios is far steadier on a shared machine than a ratio
    of two independently chosen figures.
    """
    if a is None or b is None:
        return None
    if len(a.samples) != len(b.samples):
        return _cost_ratio(a, b)
    return statistics.median(x / y for x, y in zip(a.samples, b.samples, strict=True))


def _load() -> str:
    """The 1/5/15-minute load averages: other processes on the machine add noise."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _versions(sdk: McpSdk | None) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for text in info:
                if text.startswith("model name"):
                    cpu = text.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"GIL {'on' if gil else 'off'}, switch interval {sys.getswitchinterval() * 1000:g} ms)",
        f"msgspec {msgspec.__version__}, taskstore {taskstore.__version__}",
        (
            f"mcp {sdk.version} ({sdk.where}), pydantic {importlib.metadata.version('pydantic')}"
            if sdk is not None
            else "mcp SDK: not installed, skipped"
        ),
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} logical CPUs",
        f"PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED')}",
    ]


def report(results: Results, settings: Settings, sdk: McpSdk | None) -> str:
    """The tables and the target checks, as Markdown."""
    t = settings.threads
    small, large = SIZES[0], SIZES[-1]

    def ours(case: str, size: int, threads: int = 1, access: str = "all") -> Stats | None:
        if case == "floor":
            return results.get(Key("floor", "get", size, 1, access))
        return results.get(Key("taskstore", case, size, threads, access))

    def scaling(case: str, access: str = "all") -> float | None:
        return _paired_ratio(ours(case, large, access=access), ours(case, small))

    def parallel(case: str) -> float | None:
        return _paired_ratio(ours(case, small), ours(case, small, t))

    out = [
        f"### taskstore memory:// — ops/s ({settings.describe()}; ± = spread of the rounds)",
        "",
    ]
    rows = []
    for case in (*OPS, "floor", *_ONE_OWNER):
        per_owner = case not in _ONE_OWNER
        rows.append(
            [
                _LABELS.get(case, case),
                _rate(ours(case, small)),
                _rate(ours(case, small, t)) if case in OPS else "",
                _rate(ours(case, SIZES[1])) if per_owner else "",
                _rate(ours(case, large)),
                _rate(ours(case, large, access="hot")) if per_owner else "",
                _us(ours(case, small)),
                _us(ours(case, large)),
            ]
        )
    header = ["operation", "1k", f"1k, {t} threads", "10k", "100k", "100k, hot 1k"]
    out.append(_table([*header, "µs/op 1k", "µs/op 100k"], rows))
    out.append(
        f"\n{PER_OWNER} tasks per owner (1k = {small // PER_OWNER} owners, 100k = "
        f"{large // PER_OWNER:,}); one thread unless stated; the {t}-thread figure is the "
        "aggregate of all threads, each on its own tasks. Operations pick tasks (or owners) "
        'uniformly from the whole store, except "hot 1k": the tasks of '
        f"{HOT_OWNERS} owners of the 100k store, the same working set as the 1k store. "
        '"one owner": a single owner holding all 1k or 100k tasks, first page and a page '
        "from the middle (through a cursor). floor = a dict lookup of the same stored bytes "
        "+ taskstore.record.decode_record."
    )

    out += ["", "### mcp SDK InMemoryTaskStore (asyncio, TTL 1 h) vs taskstore — ops/s", ""]
    if sdk is None:
        out.append("mcp SDK: not installed, skipped")
    else:
        rows = [
            [
                _LABELS.get(case, case),
                _rate(results.get(Key("mcp", case, 1_000))),
                _rate(results.get(Key("mcp", case, 10_000))),
                _rate(ours(case, 1_000)),
                _rate(ours(case, 10_000)),
                _times(_cost_ratio(results.get(Key("mcp", case, 1_000)), ours(case, 1_000))),
                _times(_cost_ratio(results.get(Key("mcp", case, 10_000)), ours(case, 10_000))),
            ]
            for case in OPS
        ]
        header = ["operation", "mcp 1k", "mcp 10k", "taskstore 1k", "taskstore 10k"]
        out.append(_table([*header, "taskstore / mcp, 1k", "taskstore / mcp, 10k"], rows))
        out.append(
            "\nThe SDK store has no owners and no variables (set_variables: no counterpart); "
            "complete = store_result + update_task(completed), as its TaskContext.complete "
            f"does; list = list_tasks() first page, page size {PAGE}, over all tasks."
        )

    out += [
        "",
        "### Targets (issue 2)",
        "",
        "Each ratio is the median, over the rounds, of the two measurements' ratio in the same "
        "round (they run back to back), so it compares them under the same load.",
        "",
    ]
    rows = []

    def check(name: str, value: float | None, limit: float | None, at_most: bool = True) -> None:
        if limit is None:
            rows.append([name, _times(value), "reference", ""])
            return
        if value is None:
            verdict = "n/a"
        else:
            verdict = "PASS" if (value <= limit if at_most else value >= limit) else "MISS"
        rows.append([name, _times(value), f"{'≤' if at_most else '≥'} {limit:.2f}x", verdict])

    for size, access in ((small, "all"), (large, "all"), (large, "hot")):
        value = _paired_ratio(ours("get", size, access=access), ours("floor", size, access=access))
        where = f"{size // 1000}k" + (", hot 1k" if access == "hot" else "")
        check(f"get cost / floor cost, {where}", value, 3.0)
    for access in ("all", "hot"):
        where = "100k" if access == "all" else "100k hot 1k"
        for case in OPS:
            check(f"{_LABELS.get(case, case)}: cost {where} / 1k", scaling(case, access), 1.3)
        check(f"floor: cost {where} / 1k", scaling("floor", access), None)
    for case in _ONE_OWNER:
        check(f"{_LABELS[case]}: cost 100k / 1k", scaling(case), 1.3)
    for case in OPS:
        check(f"{_LABELS.get(case, case)}: ops/s {t} threads / 1", parallel(case), 0.7, False)
    value = _cost_ratio(results.get(Key("mcp", "get", 10_000)), ours("get", 10_000))
    check("get ops/s, taskstore / mcp SDK, 10k", value, 10.0, False)
    out.append(_table(["target", "measured", "limit", "result"], rows))
    verdicts = [row[3] for row in rows]
    out.append(
        f"\n{verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS"
        + (f", {verdicts.count('n/a')} n/a" if "n/a" in verdicts else "")
    )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; always 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer ops and 3 repeats (~15 s)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of every sample (1234)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (5; quick 3)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the parallel runs (8)")
    parser.add_argument("--no-mcp", action="store_true", help="skip the mcp SDK comparison")
    parser.add_argument(
        "--stat",
        choices=("best", "median"),
        default="best",
        help="report the best round (default: least disturbed by other processes) or the median",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats else (3 if args.quick else 5)
    settings = Settings(
        quick=args.quick,
        seed=args.seed,
        repeats=max(1, repeats),
        threads=max(1, args.threads),
        mcp=not args.no_mcp,
        stat=args.stat,
    )
    sdk = load_mcp() if settings.mcp else None
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    print("# taskstore benchmark: in-memory store" + (" (--quick)" if settings.quick else ""))
    print()
    for text in _versions(sdk):
        print(f"- {text}")
    print(f"- command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"- seed {settings.seed}; each figure: {settings.describe()}")
    print(f"- load average at start: {_load()}")
    print(flush=True)

    results = run_taskstore(settings, log)
    if sdk is not None:
        results.update(asyncio.run(run_mcp(sdk, settings, log)))
    elif settings.mcp:
        log("mcp SDK: not installed, skipped")
    print(report(results, settings, sdk if settings.mcp else None))
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: {_load()})")
    return 0


if __name__ == "__main__":
    if "PYTHONHASHSEED" not in os.environ:
        # Owners are spread over lock stripes by hash(): fix it so runs are comparable.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    sys.exit(main())
