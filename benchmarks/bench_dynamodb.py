"""Requests and consumed capacity of the DynamoDB backend, next to hand-written boto3.

Runs on AWS DynamoDB Local (started here from ``.ci/fetch-dynamodb-local.sh``'s cache, or any
endpoint given with ``--endpoint-url``). Every request the store's backend sends is counted
and asked for ``ReturnConsumedCapacity=TOTAL`` through botocore event hooks, so the backend
runs unmodified. Reported:

1. per store operation: requests, capacity units, median latency;
2. one full task lifecycle (create, 3 status/variable updates, complete, get_result, one list
   page) through ``TaskStore``, next to the same work written by hand with boto3 on the same
   table and with the very same item bytes:

   - *hand-written, same guarantees*: an atomic per-owner quota (a counter item in the create
     transaction), read-then-conditional-write updates (validating a transition or merging
     variables needs the current record), a consistent read of the result, one Query page;
   - *hand-written, no guarantees*: the floor, a plain ``PutItem`` create (no quota) and blind
     ``UpdateItem`` writes (no read, no transition check).

Targets (issue 4): 1 request per get and per create, at most 2 per mutation, 1 per list page,
capacity within 1.2x of the hand-written minimum with the same guarantees.

DynamoDB Local reports capacity with its own accounting (notably 4 units per KB for each item
of a ``TransactWriteItems``, where AWS documents 2); both sides are measured the same way.

Usage::

    bash .ci/fetch-dynamodb-local.sh
    python benchmarks/bench_dynamodb.py [--endpoint-url URL] [--rounds N]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3

from taskstore import SecurityConfig, StoreConfig, TaskStore
from taskstore.backends.base import encode_key_part
from taskstore.backends.dynamodb import DynamoDbBackend
from taskstore.record import Outcome, encode_outcome

REGION = "us-east-1"
CAPACITY_OPERATIONS = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
    "TransactWriteItems", "TransactGetItems", "BatchGetItem", "BatchWriteItem",
}


# -- measuring ----------------------------------------------------------------------------------


class Meter:
    """Counts requests and sums consumed capacity of every call made through ``client``."""

    def __init__(self, client: Any) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.capacity = 0.0
        client.meta.events.register("before-parameter-build.dynamodb", self._ask)
        client.meta.events.register("after-call.dynamodb", self._count)

    @staticmethod
    def _ask(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in CAPACITY_OPERATIONS:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.requests[model.name] += 1
        consumed = parsed.get("ConsumedCapacity") or []
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            self.capacity += float(entry.get("CapacityUnits", 0.0))

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, Any]]:
        """Yield a dict filled, on exit, with this block's requests and capacity."""
        before_requests = collections.Counter(self.requests)
        before_capacity = self.capacity
        result: dict[str, Any] = {}
        started = time.perf_counter()
        yield result
        result["seconds"] = time.perf_counter() - started
        result["requests"] = self.requests - before_requests
        result["capacity"] = self.capacity - before_capacity


def fmt_requests(counter: collections.Counter[str]) -> str:
    total = sum(counter.values())
    detail = ", ".join(f"{n} {op}" for op, n in sorted(counter.items()))
    return f"{total} ({detail})"


# -- DynamoDB Local -----------------------------------------------------------------------------


@contextlib.contextmanager
def dynamodb_local() -> Iterator[str]:
    """Start DynamoDB Local from the cache directory; yield its endpoint URL."""
    directory = Path(os.environ.get("TASKSTORE_DYNAMODB_LOCAL_DIR")
                     or Path.home() / ".cache" / "taskstore" / "dynamodb-local")
    java = shutil.which("java")
    if java is None or not (directory / "DynamoDBLocal.jar").is_file():
        sys.exit(f"need Java and DynamoDB Local in {directory}: run .ci/fetch-dynamodb-local.sh")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as scratch:
        process = subprocess.Popen(
            [java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             f"-Djava.library.path={directory / 'DynamoDBLocal_lib'}",
             "-jar", str(directory / "DynamoDBLocal.jar"),
             "-inMemory", "-sharedDb", "-port", str(port), "-disableTelemetry"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=scratch,
        )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            client = plain_client(endpoint)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.list_tables(Limit=1)
                    break
                except Exception:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            yield endpoint
        finally:
            process.terminate()
            process.wait(10)


def plain_client(endpoint: str) -> Any:
    return boto3.session.Session().client("dynamodb", region_name=REGION, endpoint_url=endpoint)


# -- the benchmark ------------------------------------------------------------------------------

RESULT = {"content": [{"type": "text", "text": "The answer is 42. " * 40}], "isError": False}
VARIABLES = {"answer": "yes", "notes": "n" * 200}


def per_operation(
    store: TaskStore, meter: Meter, rounds: int
) -> list[tuple[str, str, float, float]]:
    """Median latency, and requests/capacity of the last round, for each store operation."""
    rows: list[tuple[str, str, float, float]] = []
    owner = f"bench-{uuid.uuid4().hex[:8]}"
    for _ in range(49):  # a full page of 50 to list
        store.create(owner)

    def run(name: str, prepare: Callable[[], Any], action: Callable[[Any], object]) -> None:
        samples: list[float] = []
        last: dict[str, Any] = {}
        for _ in range(rounds):
            state = prepare()  # set-up is not measured
            with meter.measure() as measured:
                action(state)
            samples.append(measured["seconds"])
            last = measured
        rows.append((name, fmt_requests(last["requests"]), last["capacity"],
                     statistics.median(samples) * 1000))

    def fresh() -> str:
        return store.create(owner).task_id

    def nothing() -> None:
        return None

    run("create (owner with 50 tasks)", nothing, lambda _: store.create(owner))
    store.security = SecurityConfig(max_tasks_per_owner=None)  # the rest needs room
    run("create (first task of an owner)", lambda: f"new-{uuid.uuid4().hex}", store.create)
    run("get", fresh, lambda task_id: store.get(task_id, owner))
    run("set_variables", fresh, lambda task_id: store.set_variables(task_id, owner, VARIABLES))
    run("update_status", fresh,
        lambda task_id: store.update_status(task_id, owner, "input_required"))
    run("complete (1 KB result)", fresh, lambda task_id: store.complete(task_id, owner, RESULT))
    done = fresh()
    store.complete(done, owner, RESULT)
    run("get_result", nothing, lambda _: store.get_result(done, owner))
    run("list (page of 50)", nothing, lambda _: store.list(owner, limit=50))
    page = store.list(owner, limit=20)
    run("list (next page, by cursor)", nothing,
        lambda _: store.list(owner, cursor=page.next_cursor, limit=20))

    # Stored results never reach a listing: it is served from the index, which holds none.
    heavy = f"heavy-{uuid.uuid4().hex[:8]}"
    big_result = {"blob": "r" * 300_000}
    for _ in range(50):
        store.complete(store.create(heavy).task_id, heavy, big_result)
    run("list (page of 50, each with a 300 KB result)", nothing,
        lambda _: store.list(heavy, limit=50))
    heavy_task = store.list(heavy, limit=1).tasks[0].task_id
    # DynamoDB bills a GetItem by the whole item, outcome included, though it is not sent.
    run("get (task holding a 300 KB result)", nothing, lambda _: store.get(heavy_task, heavy))
    run("get_result (300 KB result)", nothing, lambda _: store.get_result(heavy_task, heavy))

    # A record too large for the index (here ~250 KB of variables) costs its page a BatchGetItem.
    wide = f"wide-{uuid.uuid4().hex[:8]}"
    for _ in range(49):
        store.create(wide)
    wide_task = store.create(wide).task_id
    store.set_variables(wide_task, wide, {f"k{i}": "v" * 50_000 for i in range(5)})
    run("list (page of 50, one 250 KB record)", nothing, lambda _: store.list(wide, limit=50))
    return rows


def lifecycle(store: TaskStore, meter: Meter, client: Any, table: str) -> tuple[dict[str, Any],
                                                                                list[bytes]]:
    """One task's whole life through the store; returns the measurement and the record bytes
    after each write (replayed by the hand-written sequences)."""
    owner = f"life-{uuid.uuid4().hex[:8]}"
    snapshots: list[bytes] = []

    def snapshot(task_id: str) -> None:
        item = client.get_item(TableName=table, Key=key(owner, task_id), ConsistentRead=True)
        snapshots.append(bytes(item["Item"]["d"]["B"]))

    with meter.measure() as total:
        record = store.create(owner)
        task_id = record.task_id
    snapshot(task_id)
    steps: list[Callable[[], object]] = [
        lambda: store.update_status(task_id, owner, "input_required", "need an answer"),
        lambda: store.set_variables(task_id, owner, VARIABLES),
        lambda: store.update_status(task_id, owner, "working"),
        lambda: store.complete(task_id, owner, RESULT),
    ]
    for step in steps:
        with meter.measure() as part:
            step()
        total["requests"] += part["requests"]
        total["capacity"] += part["capacity"]
        total["seconds"] += part["seconds"]
        snapshot(task_id)
    with meter.measure() as part:
        store.get_result(task_id, owner)
        store.list(owner)
    total["requests"] += part["requests"]
    total["capacity"] += part["capacity"]
    total["seconds"] += part["seconds"]
    return total, snapshots


def key(owner: str, task_id: str) -> dict[str, Any]:
    return {"PK": {"S": "OWNER#" + encode_key_part(owner)},
            "SK": {"S": "TASK#" + encode_key_part(task_id)}}


def by_hand(client: Any, meter: Meter, table: str, snapshots: list[bytes], *,
            guarantees: bool) -> dict[str, Any]:
    """The same lifecycle written directly against boto3, with the store's item bytes."""
    owner = f"hand-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    now = time.time_ns() // 1_000_000
    item_key = key(owner, task_id)
    outcome = encode_outcome(Outcome.of_result(RESULT))
    item = {**item_key, "lsk": {"S": f"{now:016d}#{task_id}"}, "v": {"N": "1"},
            "d": {"B": snapshots[0]}, "x": {"N": str(now + 3_600_000)},
            "expires_at": {"N": str((now + 3_600_000) // 1000 + 1)}}
    with meter.measure() as total:
        if guarantees:
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": item,
                         "ConditionExpression": "attribute_not_exists(PK)"}},
                {"Update": {"TableName": table,
                            "Key": {"PK": item_key["PK"], "SK": {"S": "COUNTER"}},
                            "UpdateExpression": "ADD n :one",
                            "ConditionExpression": "attribute_not_exists(n) OR n < :max",
                            "ExpressionAttributeValues": {":one": {"N": "1"},
                                                          ":max": {"N": "100"}}}},
            ])
        else:
            client.put_item(TableName=table, Item=item)
        for version, data in enumerate(snapshots[1:], start=2):
            if guarantees:  # the current record is needed to validate and merge
                client.get_item(TableName=table, Key=item_key, ConsistentRead=True,
                                ProjectionExpression="d, v")
            sets = "SET d = :d, v = :v"
            values: dict[str, Any] = {":d": {"B": data}, ":v": {"N": str(version)}}
            if version == len(snapshots):  # complete: the outcome too
                sets += ", o = :o"
                values[":o"] = {"B": outcome}
            params: dict[str, Any] = {"TableName": table, "Key": item_key,
                                      "UpdateExpression": sets,
                                      "ExpressionAttributeValues": values}
            if guarantees:
                params["ConditionExpression"] = "v = :expected"
                values[":expected"] = {"N": str(version - 1)}
            client.update_item(**params)
        client.get_item(TableName=table, Key=item_key, ConsistentRead=guarantees,
                        ProjectionExpression="o")
        client.query(TableName=table, IndexName="by_created",
                     KeyConditionExpression="PK = :pk",
                     ExpressionAttributeValues={":pk": item_key["PK"]},
                     Select="ALL_PROJECTED_ATTRIBUTES", ScanIndexForward=False,
                     ConsistentRead=guarantees, Limit=51)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint-url", help="an existing DynamoDB Local (default: start one)")
    parser.add_argument("--rounds", type=int, default=20, help="samples per operation")
    args = parser.parse_args(argv)
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint_url or stack.enter_context(dynamodb_local())
        table = f"bench-{uuid.uuid4().hex[:8]}"
        client = plain_client(endpoint)
        DynamoDbBackend.create_table(table, client=client)
        backend = DynamoDbBackend(table, region=REGION, endpoint_url=endpoint)
        meter = Meter(backend.client)
        store = TaskStore(backend, config=StoreConfig(),
                          security=SecurityConfig(max_tasks_per_owner=100))
        hand_meter = Meter(client)

        # Warm up the JVM and the connection pools before measuring anything.
        for _ in range(50):
            warm = store.create(f"warm-{uuid.uuid4().hex}")
            store.get(warm.task_id, warm.owner)

        rows = per_operation(store, meter, args.rounds)
        ours, snapshots = lifecycle(store, meter, client, table)
        same = by_hand(client, hand_meter, table, snapshots, guarantees=True)
        floor = by_hand(client, hand_meter, table, snapshots, guarantees=False)

        import platform

        import botocore

        print(f"DynamoDB Local at {endpoint}; {args.rounds} rounds per operation; boto3 "
              f"{boto3.__version__}, botocore {botocore.__version__}, Python "
              f"{platform.python_version()}, {platform.machine()} ({os.cpu_count()} CPUs)\n")
        print("| operation | requests | capacity units | median ms |")
        print("|---|---|---|---|")
        for name, requests, capacity, ms in rows:
            print(f"| {name} | {requests} | {capacity:g} | {ms:.1f} |")
        print()
        print("Full lifecycle: create, 3 updates, complete, get_result, one list page\n")
        print("| sequence | requests | capacity units | vs. hand-written (same guarantees) |")
        print("|---|---|---|---|")
        for name, measured in (("taskstore", ours), ("hand-written, same guarantees", same),
                               ("hand-written, no guarantees (floor)", floor)):
            ratio = measured["capacity"] / same["capacity"]
            print(f"| {name} | {fmt_requests(measured['requests'])} | "
                  f"{measured['capacity']:g} | {ratio:.2f}x |")
        store.close()
        client.delete_table(TableName=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
