"""What only AWS's own emulator can prove: atomicity of conditional writes and transactions
under races between threads and between processes, the native TTL sweeper, and DynamoDB's exact
item size limit. Runs only on DynamoDB Local (moto's conditional writes are not atomic and it
never sweeps); skipped without Java or the jar, failed when ``TASKSTORE_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.servers import require_modules

require_modules("boto3", markers=["dynamodb", "dynamodb_local"])

import botocore.exceptions

from support import dynamodb_workers as workers
from support.dynamodb_support import REGION, DynamoDbLocal, fresh_table_name
from taskstore import (
    InvalidParamsError,
    InvalidTransitionError,
    ManualClock,
    QuotaExceededError,
    RecordNotFound,
    ResultTooLargeError,
    SecurityConfig,
    StoreConfig,
    TaskRecord,
    TaskStore,
)
from taskstore.backends.base import encode_key_part
from taskstore.backends.dynamodb import ITEM_LIMIT_BYTES, DynamoDbBackend
from taskstore.testing import T0, run_barrier_threads

pytestmark = [pytest.mark.dynamodb, pytest.mark.dynamodb_local]

Factory = Callable[..., DynamoDbBackend]
OWNER = "alice"
PROCESSES = 4
# Many writers on one item retry a lot on a 2-core machine: give the store's CAS loop room.
PATIENT = StoreConfig(conflict_retry_budget_ms=60_000)


@pytest.fixture
def make(backend_factory_dynamodb_local: Factory) -> Factory:
    """Backends on fresh DynamoDB Local tables."""
    return backend_factory_dynamodb_local


@pytest.fixture
def backend(make: Factory) -> DynamoDbBackend:
    """One backend on a fresh DynamoDB Local table."""
    return make()


@pytest.fixture
def peers(backend: DynamoDbBackend, dynamodb_local: DynamoDbLocal) -> Iterator[Factory]:
    """``peer()``: another backend object (own client) on the same table, as a process has."""
    made: list[DynamoDbBackend] = []

    def peer() -> DynamoDbBackend:
        other = DynamoDbBackend(
            backend.table_name, region=REGION, endpoint_url=dynamodb_local.endpoint_url
        )
        made.append(other)
        return other

    yield peer
    for other in made:
        other.close()


def run_processes(
    target: Callable[..., None], args: Callable[[int, Any, Any], tuple[Any, ...]], expected: int
) -> list[tuple[Any, ...]]:
    """Run ``target`` in ``PROCESSES`` spawned interpreters released by one barrier; collect
    ``expected`` reports (any ``("error", ...)`` report fails the test)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=args(index, barrier, results), daemon=True)
        for index in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    reports: list[tuple[Any, ...]] = []
    try:
        deadline = time.monotonic() + 180
        while len(reports) < expected:
            report = results.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert report[0] != "error", report
            reports.append(report)
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    return reports


# -- races: threads, each with its own client ---------------------------------------------------


def test_threads_lose_no_variable_update(backend: DynamoDbBackend, peers: Factory) -> None:
    """8 threads, each with its own backend object, × 10 set_variables on one task: all 80
    keys land and the version counts every write."""
    owner_store = TaskStore(backend, config=PATIENT)
    record = owner_store.create(OWNER)
    stores = [TaskStore(peers(), config=PATIENT) for _ in range(8)]

    def writer(index: int) -> int:
        for j in range(10):
            stores[index].set_variables(record.task_id, OWNER, {f"t{index}-{j}": j})
        return 10

    assert run_barrier_threads(8, writer) == [10] * 8
    final = owner_store.get(record.task_id, OWNER)
    assert final.variables == {f"t{i}-{j}": j for i in range(8) for j in range(10)}
    assert final.version == 81


def test_threads_complete_versus_cancel_one_winner(
    backend: DynamoDbBackend, peers: Factory
) -> None:
    """30 rounds of complete racing cancel from two backend objects: exactly one wins each
    round and the loser gets InvalidTransitionError."""
    first = TaskStore(backend, security=SecurityConfig(max_tasks_per_owner=None))
    second = TaskStore(peers())
    for _ in range(30):
        record = first.create(OWNER)
        actions: list[Callable[[], TaskRecord]] = [
            lambda: first.complete(record.task_id, OWNER, {"ok": True}),
            lambda: second.cancel(record.task_id, OWNER),
        ]
        results = run_barrier_threads(2, lambda i: actions[i]())
        winners = [r for r in results if isinstance(r, TaskRecord)]
        assert len(winners) == 1, results
        assert sum(isinstance(r, InvalidTransitionError) for r in results) == 1, results
        assert first.get(record.task_id, OWNER).status is winners[0].status


def test_threads_quota_admits_exactly_the_limit(backend: DynamoDbBackend, peers: Factory) -> None:
    """24 threads on 24 backend objects create for one owner with room for 7: exactly 7."""
    stores = [TaskStore(peers(), security=SecurityConfig(max_tasks_per_owner=7)) for _ in range(24)]
    results = run_barrier_threads(24, lambda i: stores[i].create(OWNER))
    assert sum(isinstance(r, TaskRecord) for r in results) == 7, results
    assert sum(isinstance(r, QuotaExceededError) for r in results) == 17, results
    assert len(backend.list_by_prefix(OWNER, limit=100)) == 7


def test_threads_quota_stays_exact_as_tasks_expire_and_are_deleted(
    backend: DynamoDbBackend, peers: Factory
) -> None:
    """With expired and deleted tasks holding stale ledger counts, racing creates still
    admit exactly the free room."""
    for i in range(6):
        expires = T0 + 100 if i < 2 else T0 + 3_600_000
        backend.create((OWNER, f"old{i}"), b"{}", expires, sort_ms=T0, max_live=6, now_ms=T0)
    backend.delete((OWNER, "old5"))
    # Room now: 6 - (6 - 2 expired - 1 deleted) = 3.
    others = [peers() for _ in range(12)]
    results = run_barrier_threads(
        12,
        lambda i: others[i].create(
            (OWNER, f"new{i}"), b"{}", T0 + 3_600_000, sort_ms=T0 + 100, max_live=6, now_ms=T0 + 100
        ),
    )
    assert sum(r == 1 for r in results) == 3, results
    assert sum(isinstance(r, QuotaExceededError) for r in results) == 9, results
    assert len(backend.list_by_prefix(OWNER, limit=100, now_ms=T0 + 100)) == 6


# -- races: processes ----------------------------------------------------------------------------


def test_processes_lose_no_variable_update(
    backend: DynamoDbBackend, dynamodb_local: DynamoDbLocal
) -> None:
    """4 processes × 10 set_variables with distinct keys on one task: all 40 keys land."""
    store = TaskStore(backend)
    record = store.create(OWNER)
    reports = run_processes(
        workers.set_variables,
        lambda i, barrier, results: (
            dynamodb_local.endpoint_url,
            backend.table_name,
            OWNER,
            record.task_id,
            i,
            10,
            barrier,
            results,
        ),
        expected=PROCESSES * 10,
    )
    assert len(reports) == 40
    final = store.get(record.task_id, OWNER)
    assert final.variables == {f"p{i}-{j}": j for i in range(PROCESSES) for j in range(10)}
    assert final.version == 41


def test_processes_complete_versus_cancel_one_winner(
    backend: DynamoDbBackend, dynamodb_local: DynamoDbLocal
) -> None:
    """4 processes (2 completing, 2 cancelling) race on each of 10 tasks: exactly one outcome
    every round. A completion that wins leaves the other three InvalidTransitionError; a cancel
    that wins makes the other cancel an idempotent repeat (it succeeds too)."""
    store = TaskStore(backend, security=SecurityConfig(max_tasks_per_owner=None))
    task_ids = [store.create(OWNER).task_id for _ in range(10)]
    reports = run_processes(
        workers.finish_task,
        lambda i, barrier, results: (
            dynamodb_local.endpoint_url,
            backend.table_name,
            OWNER,
            task_ids,
            i,
            barrier,
            results,
        ),
        expected=PROCESSES * len(task_ids),
    )
    for round_, task_id in enumerate(task_ids):
        outcome = [r for r in reports if r[1] == round_]
        winners = sorted(r[2] for r in outcome if r[0] == "won")
        assert {r[0] for r in outcome} <= {"won", "lost"} and len(outcome) == 4, outcome
        completed = any(index % 2 == 0 for index in winners)
        if completed:
            assert len(winners) == 1, outcome
        else:
            assert winners == [i for i in range(PROCESSES) if i % 2], outcome
        status = store.get(task_id, OWNER).status.value
        assert status == ("completed" if completed else "cancelled")


def test_processes_quota_admits_exactly_the_limit(
    backend: DynamoDbBackend, dynamodb_local: DynamoDbLocal
) -> None:
    """4 processes × 5 creates for one owner with room for 7: exactly 7 succeed."""
    reports = run_processes(
        workers.create_tasks,
        lambda i, barrier, results: (
            dynamodb_local.endpoint_url,
            backend.table_name,
            OWNER,
            i,
            5,
            7,
            barrier,
            results,
        ),
        expected=PROCESSES * 5,
    )
    created = [r for r in reports if r[0] == "created"]
    assert len(created) == 7, reports
    assert sum(r[0] == "quota" for r in reports) == 13
    listed = backend.list_by_prefix(OWNER, limit=100)
    assert sorted(r.key[1] for r in listed) == sorted(r[2] for r in created)


# -- native TTL ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_dynamodb_sweeper_deletes_expired_items(make: Factory, local_client: Any) -> None:
    """An item whose expires_at (epoch seconds) is in the past is deleted by DynamoDB Local's
    own TTL sweeper; reads hid it from the moment it expired; live items stay."""
    backend = make(ttl=True)
    now = time.time_ns() // 1_000_000
    backend.put((OWNER, "gone"), b"{}", now - 5_000, sort_ms=now, now_ms=now - 10_000)
    backend.put((OWNER, "kept"), b"{}", now + 3_600_000, sort_ms=now, now_ms=now)
    with pytest.raises(RecordNotFound):
        backend.get((OWNER, "gone"))

    def present(task_id: str) -> bool:
        response = local_client.get_item(
            TableName=backend.table_name,
            Key={"PK": {"S": "OWNER#" + encode_key_part(OWNER)}, "SK": {"S": "TASK#" + task_id}},
            ConsistentRead=True,
        )
        return "Item" in response

    assert present("gone")
    deadline = time.monotonic() + 90
    while present("gone"):
        assert time.monotonic() < deadline, "DynamoDB Local never swept the expired item"
        time.sleep(0.25)
    assert present("kept")
    assert backend.get((OWNER, "kept")).version == 1


# -- the exact item size limit -------------------------------------------------------------------


def _largest(accepts: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] with accepts(n), given accepts is monotone."""
    while low < high:
        middle = (low + high + 1) // 2
        if accepts(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _write_count(backend: DynamoDbBackend) -> list[str]:
    writes: list[str] = []

    def seen(model: Any, **_: Any) -> None:
        if model.name in ("PutItem", "UpdateItem", "TransactWriteItems"):
            writes.append(model.name)

    backend.client.meta.events.register("before-parameter-build.dynamodb", seen)
    return writes


def _raw_key(task_id: str) -> dict[str, Any]:
    return {"PK": {"S": "OWNER#" + encode_key_part(OWNER)}, "SK": {"S": "TASK#" + task_id}}


def _assert_dynamodb_limit_is(client: Any, table: str, item: dict[str, Any], largest: int) -> None:
    """DynamoDB Local stores ``item`` (a record too large for the index, in ``dx``) with
    ``largest`` record bytes plus the documented slack, and rejects one byte more: the
    backend's accounting is exact up to that slack.

    The backend counts the table's sort key in the item's index entry, as AWS documents ("key
    values and projected attributes"); DynamoDB Local leaves it out, so it accepts exactly
    that many bytes more than the backend does, and not one more.
    """
    assert "dx" in item and "d" not in item
    slack = len("SK") + len(item["SK"]["S"].encode())
    for extra, accepted in ((0, True), (slack, True), (slack + 1, False)):
        candidate = {**item, "dx": {"B": b"d" * (largest + extra)}}
        try:
            client.put_item(TableName=table, Item=candidate)
        except botocore.exceptions.ClientError as exc:
            assert not accepted, (extra, exc)
            assert "Item size has exceeded" in str(exc)
        else:
            assert accepted, extra


def test_item_limit_is_exactly_dynamodbs(backend: DynamoDbBackend, local_client: Any) -> None:
    """The backend accepts items up to DynamoDB's limit (item plus index entry) and refuses
    one byte more with InvalidParamsError naming the limit, sending nothing; DynamoDB Local
    confirms the accounting to the byte (see _assert_dynamodb_limit_is)."""
    expires = T0 + 3_600_000

    def fits(size: int) -> bool:
        try:
            backend.create((OWNER, f"c{size}"), b"d" * size, expires, sort_ms=T0, now_ms=T0)
        except InvalidParamsError:
            return False
        return True

    # Task ids "c<size>" all have 7 characters here, so only the data length varies.
    largest = _largest(fits, ITEM_LIMIT_BYTES - 2_000, ITEM_LIMIT_BYTES)
    if "Item" not in local_client.get_item(
        TableName=backend.table_name, Key=_raw_key(f"c{largest}")
    ):
        assert fits(largest)
    writes = _write_count(backend)
    with pytest.raises(InvalidParamsError, match=str(ITEM_LIMIT_BYTES)):
        backend.create(
            (OWNER, f"c{largest + 1}"), b"d" * (largest + 1), expires, sort_ms=T0, now_ms=T0
        )
    assert writes == []
    stored = local_client.get_item(TableName=backend.table_name, Key=_raw_key(f"c{largest}"))[
        "Item"
    ]
    _assert_dynamodb_limit_is(local_client, backend.table_name, stored, len(stored["dx"]["B"]))


def test_compare_and_set_limit_is_exact_with_a_kept_outcome(
    backend: DynamoDbBackend, local_client: Any
) -> None:
    """After a get, a compare-and-set that keeps a stored outcome is checked exactly: the
    largest accepted item is DynamoDB's limit, one byte more is refused before sending."""
    key = (OWNER, "t1")
    backend.put(key, b"{}", T0 + 3_600_000, sort_ms=T0, outcome=b"o" * 100_000, now_ms=T0)

    def fits(size: int) -> bool:
        current = backend.get(key, now_ms=T0)
        try:
            backend.put_if_version(key, b"d" * size, current.version, now_ms=T0)
        except InvalidParamsError:
            return False
        return True

    largest = _largest(fits, 300_000, ITEM_LIMIT_BYTES)
    assert fits(largest)  # the stored item is now exactly the largest accepted
    current = backend.get(key, now_ms=T0)
    writes = _write_count(backend)
    with pytest.raises(InvalidParamsError, match=str(ITEM_LIMIT_BYTES)):
        backend.put_if_version(key, b"d" * (largest + 1), current.version, now_ms=T0)
    assert writes == []
    stored = local_client.get_item(TableName=backend.table_name, Key=_raw_key("t1"))["Item"]
    assert len(stored["dx"]["B"]) == largest
    _assert_dynamodb_limit_is(local_client, backend.table_name, stored, largest)


def test_records_leave_the_index_exactly_when_it_cannot_hold_them(
    backend: DynamoDbBackend, local_client: Any
) -> None:
    """A record stays in the indexed attribute while the item and its index entry fit (it
    counts twice), moves to the unindexed one beyond, and lists correctly either way."""

    probed: set[str] = set()

    def indexed(size: int) -> bool:
        probed.add(f"i{size}")
        key = (OWNER, f"i{size}")
        backend.put(key, b"d" * size, None, sort_ms=T0 + size, now_ms=T0)
        item = local_client.get_item(TableName=backend.table_name, Key=_raw_key(f"i{size}"))
        return "d" in item["Item"]

    largest = _largest(indexed, 150_000, 220_000)
    assert 200_000 < largest < 205_000
    assert indexed(largest) and not indexed(largest + 1)
    stored = local_client.get_item(TableName=backend.table_name, Key=_raw_key(f"i{largest}"))[
        "Item"
    ]
    local_client.put_item(TableName=backend.table_name, Item=stored)  # DynamoDB agrees it fits
    slack = len("SK") + len(stored["SK"]["S"].encode())
    with pytest.raises(botocore.exceptions.ClientError, match="Item size has exceeded"):
        local_client.put_item(
            TableName=backend.table_name, Item={**stored, "d": {"B": b"d" * (largest + slack)}}
        )
    # Every probe is listed, indexed and unindexed records mixed in one page, newest first.
    listed = backend.list_by_prefix(OWNER, limit=100, now_ms=T0)
    assert {r.key[1] for r in listed} == probed
    assert all(r.data == b"d" * int(r.key[1][1:]) for r in listed)
    assert [r.sort_ms for r in listed] == sorted((r.sort_ms for r in listed), reverse=True)


def test_outcome_limit_is_exact(backend: DynamoDbBackend) -> None:
    """Writing an outcome: the largest that fits DynamoDB's item is accepted, one byte more is
    ResultTooLargeError naming the limit."""
    key = (OWNER, "t1")
    backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)

    def fits(size: int) -> bool:
        current = backend.get(key, now_ms=T0)
        try:
            backend.put_if_version(key, b"{}", current.version, outcome=b"o" * size, now_ms=T0)
        except ResultTooLargeError:
            return False
        return True

    largest = _largest(fits, ITEM_LIMIT_BYTES - 2_000, ITEM_LIMIT_BYTES)
    assert fits(largest)
    assert backend.get(key, include_outcome=True, now_ms=T0).outcome == b"o" * largest
    current = backend.get(key, now_ms=T0)
    with pytest.raises(ResultTooLargeError, match=str(ITEM_LIMIT_BYTES)):
        backend.put_if_version(key, b"{}", current.version, outcome=b"o" * (largest + 1), now_ms=T0)


def test_ttl_is_stored_in_whole_seconds_rounded_up(
    backend: DynamoDbBackend, local_client: Any
) -> None:
    """expires_at is epoch seconds rounded up, so DynamoDB never deletes before the
    millisecond expiry the store promised."""
    backend.put((OWNER, "t"), b"{}", T0 + 1_001, sort_ms=T0, now_ms=T0)
    item = local_client.get_item(TableName=backend.table_name, Key=_raw_key("t"))["Item"]
    assert int(item["expires_at"]["N"]) == math.ceil((T0 + 1_001) / 1000) == T0 // 1000 + 2


# -- command line ------------------------------------------------------------------------------


def test_cli_creates_the_table(
    dynamodb_local: DynamoDbLocal, local_client: Any, aws_env: None
) -> None:
    """`python -m taskstore dynamodb create-table NAME --endpoint-url --region` creates an
    active table with TTL on expires_at that the backend can use at once."""
    name = fresh_table_name()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskstore",
            "dynamodb",
            "create-table",
            name,
            "--endpoint-url",
            dynamodb_local.endpoint_url,
            "--region",
            REGION,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert name in completed.stdout
    try:
        assert local_client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
        ttl = local_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        backend = DynamoDbBackend(name, region=REGION, endpoint_url=dynamodb_local.endpoint_url)
        try:
            assert backend.create((OWNER, "t"), b"{}", None, sort_ms=T0, max_live=1) == 1
        finally:
            backend.close()
    finally:
        local_client.delete_table(TableName=name)


def test_cli_create_table(dynamodb_local: DynamoDbLocal, aws_env: None, local_client: Any) -> None:
    """`python -m taskstore dynamodb create-table NAME --endpoint-url` makes a table with TTL
    on expires_at that a backend can use right away."""
    name = fresh_table_name()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskstore",
            "dynamodb",
            "create-table",
            name,
            "--endpoint-url",
            dynamodb_local.endpoint_url,
            "--region",
            REGION,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"created table {name}"
    ttl = local_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    store = TaskStore(DynamoDbBackend(name, client=local_client))
    record = store.create(OWNER)
    assert store.get(record.task_id, OWNER).task_id == record.task_id


def test_store_wait_polls_other_writers(backend: DynamoDbBackend, peers: Factory) -> None:
    """Listeners and waiters hear only of writes through their own backend object; a store
    waiting on a task finished through another object still returns, by polling at the 100 ms
    poll interval (backing off): long before its 30 s timeout. (Here, not on moto: moto is not
    thread-safe, and a read racing a write on another thread can crash inside it.)"""
    import threading

    first = backend
    clock = ManualClock(T0)
    # Two backend objects on one table, as two processes would have.
    second_on_first = peers()
    waiter = TaskStore(first, config=StoreConfig(poll_interval_ms=100), clock=clock)
    writer = TaskStore(second_on_first, clock=clock)
    heard: list[bytes] = []
    remove = first.add_listener(heard.append)
    record = waiter.create(OWNER)
    timer = threading.Timer(0.2, lambda: writer.complete(record.task_id, OWNER, 1))
    started = time.monotonic()
    timer.start()
    try:
        done = waiter.wait(record.task_id, OWNER, timeout=30)
    finally:
        timer.join()
    assert done.status.value == "completed"
    # Returning at the timeout would re-read once more and succeed too: only a bound well
    # below it shows the polling.
    assert time.monotonic() - started < 10.0
    assert heard == []  # the completion went through the other object
    remove()
    started = time.monotonic()  # nothing newer than what was read: a full timeout
    first.wait_for_change((OWNER, record.task_id), done.version, 0.3)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 10.0, f"{elapsed:.3f}s"
