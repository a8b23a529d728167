"""DynamoDB-specific behaviour that the shared contract and store suites cannot see: the table
layout, request counts, the enforced item size, the quota ledger, read-side expiry, error
mapping and configuration. Runs on moto (fast, deterministic) and without any server; the
tests that need AWS's own emulator (races, the TTL sweeper, DynamoDB's exact size limit) live in
``test_dynamodb_local.py``.
"""

from __future__ import annotations

import importlib
import math
import socket
import string
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.servers import require_modules

require_modules("boto3", "moto", markers=["dynamodb"])

import botocore.exceptions
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

import taskstore
from support.dynamodb_support import REGION, fresh_table_name
from taskstore import (
    BackendError,
    ConfigurationError,
    ConflictError,
    InvalidCursorError,
    InvalidParamsError,
    ManualClock,
    MissingDependencyError,
    QuotaExceededError,
    RecordNotFound,
    ResultTooLargeError,
    SecurityConfig,
    StoreConfig,
    TaskNotFoundError,
    TaskStore,
    VariablesTooLargeError,
    VersionConflict,
)
from taskstore.backends.base import ListPosition, encode_scan_cursor, retrying_until
from taskstore.backends.dynamodb import ITEM_LIMIT_BYTES, DynamoDbBackend, _number_size
from taskstore.backends.dynamodb import items as dynamodb_items
from taskstore.backends.dynamodb.client import is_transient
from taskstore.record import json_size
from taskstore.testing import FUTURE, T0
from taskstore.testing._scan import scan_all

pytestmark = pytest.mark.dynamodb

Factory = Callable[..., DynamoDbBackend]
OWNER = "alice"
HOUR = 3_600_000
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


class Calls:
    """Counts the DynamoDB operations a client performs (one per API call, retries excluded)
    and keeps their parameters."""

    def __init__(self, client: Any) -> None:
        self.ops: list[str] = []
        self.params: list[dict[str, Any]] = []
        client.meta.events.register("before-parameter-build.dynamodb", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.ops.append(model.name)
        self.params.append(dict(params))

    def reset(self) -> None:
        self.ops.clear()
        self.params.clear()

    @property
    def writes(self) -> list[str]:
        return [op for op in self.ops if op in WRITES]


@pytest.fixture
def make(backend_factory_moto: Factory) -> Factory:
    """Backends on fresh moto tables."""
    return backend_factory_moto


@pytest.fixture
def backend(make: Factory) -> DynamoDbBackend:
    """One backend on a fresh moto table."""
    return make()


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at the suite's base time."""
    return ManualClock(T0)


@pytest.fixture
def store(backend: DynamoDbBackend, clock: ManualClock) -> Iterator[TaskStore]:
    """A TaskStore over the moto backend, on the manual clock."""
    with TaskStore(backend, clock=clock) as made:
        yield made


def raw_item(backend: DynamoDbBackend, owner: str, task_id: str) -> dict[str, Any] | None:
    """The task's item exactly as stored, every attribute, bypassing the backend."""
    from taskstore.backends.base import encode_key_part

    response = backend.client.get_item(
        TableName=backend.table_name,
        Key={"PK": {"S": "OWNER#" + encode_key_part(owner)},
             "SK": {"S": "TASK#" + encode_key_part(task_id)}},
        ConsistentRead=True,
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


def variables_of_size(size: int) -> dict[str, str]:
    """A variables map whose compact JSON is exactly ``size`` bytes (strings stay < 64 KiB)."""
    chunk = 60_000
    variables: dict[str, str] = {}
    index = 0
    while json_size(variables) + chunk + 16 < size:
        variables[f"k{index}"] = "x" * chunk
        index += 1
    variables[f"k{index}"] = ""
    variables[f"k{index}"] = "x" * (size - json_size(variables))
    assert json_size(variables) == size
    return variables


# -- configuration -----------------------------------------------------------------------------


def test_from_url_keyword_options_beat_query_parameters(aws_env: None) -> None:
    """from_url reads the table from the host part; keyword options win over query params."""
    backend = DynamoDbBackend.from_url(
        "dynamodb://my-tasks?region=eu-west-1&endpoint_url=http://127.0.0.1:9&read_timeout=3",
        region="us-west-2",
        connect_timeout=1.5,
    )
    try:
        assert backend.table_name == "my-tasks"
        assert backend.client.meta.region_name == "us-west-2"
        assert backend.client.meta.endpoint_url == "http://127.0.0.1:9"
        assert backend.client.meta.config.read_timeout == 3.0
        assert backend.client.meta.config.connect_timeout == 1.5
    finally:
        backend.close()


def test_default_client_has_bounded_timeouts_and_adaptive_retries(aws_env: None) -> None:
    """The backend's own client uses short timeouts and boto3's adaptive retry mode."""
    backend = DynamoDbBackend("tasks", region=REGION)
    try:
        config = backend.client.meta.config
        assert config.connect_timeout == 2.0
        assert config.read_timeout == 5.0
        assert config.retries == {"mode": "adaptive", "total_max_attempts": 4}
        assert config.max_pool_connections >= 32
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("url", "options", "needle"),
    [
        ("dynamodb://tasks?colour=blue", {}, "colour"),
        ("dynamodb://tasks", {"colour": "blue"}, "colour"),
        ("dynamodb://", {}, "names its table"),
        ("dynamodb://tasks/extra", {}, "no path"),
        ("dynamodb://tasks?read_timeout=soon", {}, "read_timeout"),
        ("dynamodb://tasks?max_attempts=0", {}, "max_attempts"),
        ("dynamodb://x", {}, "table name"),
        ("dynamodb://tasks?client=me", {}, "keyword"),
    ],
)
def test_from_url_rejects_bad_configuration(
    aws_env: None, url: str, options: dict[str, Any], needle: str
) -> None:
    """Unknown options, a missing table, a path or bad values are ConfigurationError."""
    with pytest.raises(ConfigurationError, match=needle):
        DynamoDbBackend.from_url(url, **options)


def test_no_region_is_configuration_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any region configured the backend refuses to build, saying what to set."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigurationError, match="region"):
        DynamoDbBackend("tasks")


def test_taskstore_open_builds_a_store_on_an_existing_client(moto: Any) -> None:
    """taskstore.open("dynamodb://TABLE", client=...) uses the client given, as it is."""
    table = fresh_table_name()
    DynamoDbBackend.create_table(table, client=moto)
    with taskstore.open(f"dynamodb://{table}?max_tasks_per_owner=3", client=moto) as store:
        assert store.backend.client is moto
        assert store.security.max_tasks_per_owner == 3
        record = store.create(OWNER)
        assert store.get(record.task_id, OWNER).version == 1


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the backend without boto3 raises MissingDependencyError (an ImportError)
    whose message is the pip command."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "taskstore.backends.dynamodb")
    expected = r"pip install 'taskstore\[dynamodb\]'"
    with pytest.raises(MissingDependencyError, match=expected) as info:
        importlib.import_module("taskstore.backends.dynamodb")
    assert isinstance(info.value, ImportError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_constructor_sends_no_request_and_a_missing_table_says_how_to_create_it(
    moto: Any,
) -> None:
    """The constructor never touches DynamoDB (nor creates tables); the first request on a
    missing table is a BackendError naming the create-table command."""
    backend = DynamoDbBackend("no-such-table", region=REGION)
    try:
        calls = Calls(backend.client)
        assert calls.ops == []
        with pytest.raises(BackendError, match="create-table no-such-table") as info:
            backend.get((OWNER, "t"))
        assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
        assert "no-such-table" not in moto.list_tables()["TableNames"]
    finally:
        backend.close()


def test_create_table_layout(moto: Any) -> None:
    """create_table makes an on-demand table with the key schema, a listing index that holds
    records but never outcomes, and TTL on expires_at; creating it twice is a
    ConfigurationError."""
    table = fresh_table_name()
    DynamoDbBackend.create_table(table, client=moto)
    description = moto.describe_table(TableName=table)["Table"]
    assert description["TableStatus"] == "ACTIVE"
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]} == {
        "PK": "HASH",
        "SK": "RANGE",
    }
    (index,) = description["LocalSecondaryIndexes"]
    assert index["IndexName"] == "by_created"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["PK", "lsk"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert sorted(index["Projection"]["NonKeyAttributes"]) == ["d", "v", "x"]
    ttl = moto.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    with pytest.raises(ConfigurationError, match="already exists"):
        DynamoDbBackend.create_table(table, client=moto)


def test_declared_differences(backend: DynamoDbBackend, store: TaskStore) -> None:
    """The backend declares its caps and its in-process-only events; the store's effective
    caps are exactly the declared ones."""
    assert backend.max_variable_bytes == 350 * 1024
    assert backend.max_result_bytes == 350 * 1024
    assert backend.cross_process_events is False
    assert backend.native_ttl is True
    assert store.max_variable_bytes == backend.max_variable_bytes
    assert store.result_max_bytes == backend.max_result_bytes


def test_closed_backend_refuses_requests(backend: DynamoDbBackend) -> None:
    """After close (idempotent) every request is a ConfigurationError, never a hang."""
    backend.close()
    backend.close()
    with pytest.raises(ConfigurationError, match="closed"):
        backend.get((OWNER, "t"))


# -- layout and request counts -----------------------------------------------------------------


def test_item_layout(store: TaskStore, backend: DynamoDbBackend, clock: ManualClock) -> None:
    """A task is one item under OWNER#/TASK# keys with a numeric version, the record bytes,
    the exact ms expiry, the TTL in seconds rounded up, and its outcome in its own attribute."""
    clock.advance(123)  # an expiry that is not a whole second
    record = store.create("ann:b", ttl_ms=60_000)
    store.complete(record.task_id, "ann:b", {"big": "result"})
    item = raw_item(backend, "ann:b", record.task_id)
    assert item is not None
    assert item["PK"] == {"S": "OWNER#ann%3Ab"}
    assert item["SK"] == {"S": f"TASK#{record.task_id}"}
    assert item["v"] == {"N": "2"}
    assert item["lsk"] == {"S": f"{T0 + 123:016d}#{record.task_id}"}
    expires = T0 + 123 + 60_000
    assert item["x"] == {"N": str(expires)}
    assert item["expires_at"] == {"N": str(math.ceil(expires / 1000))}
    assert int(item["expires_at"]["N"]) * 1000 >= expires
    assert b'"big":"result"' in item["o"]["B"]
    assert item["os"] == {"N": str(len(item["o"]["B"]))}
    assert b'"big"' not in item["d"]["B"]  # the record never carries the outcome


def test_task_without_ttl_has_no_ttl_attribute(
    backend: DynamoDbBackend, clock: ManualClock
) -> None:
    """A task kept forever carries neither x nor expires_at, so DynamoDB never deletes it."""
    store = TaskStore(backend, config=StoreConfig(default_ttl_ms=None, max_ttl_ms=None),
                      clock=clock)
    record = store.create(OWNER)
    item = raw_item(backend, OWNER, record.task_id)
    assert item is not None
    assert "x" not in item and "expires_at" not in item


def test_request_counts_per_operation(store: TaskStore, backend: DynamoDbBackend) -> None:
    """1 request per get and per create, 2 per mutation, 1 per get_result and per list page."""
    calls = Calls(backend.client)
    record = store.create(OWNER)
    assert calls.ops == ["TransactWriteItems"]
    steps: list[tuple[Callable[[], object], list[str]]] = [
        (lambda: store.get(record.task_id, OWNER), ["GetItem"]),
        (lambda: store.set_variables(record.task_id, OWNER, {"a": 1}), ["GetItem", "UpdateItem"]),
        (lambda: store.update_status(record.task_id, OWNER, "input_required"),
         ["GetItem", "UpdateItem"]),
        (lambda: store.set_message(record.task_id, OWNER, "hi"), ["GetItem", "UpdateItem"]),
        (lambda: store.complete(record.task_id, OWNER, {"r": 1}), ["GetItem", "UpdateItem"]),
        (lambda: store.get_result(record.task_id, OWNER), ["GetItem"]),
        (lambda: store.list(OWNER), ["Query"]),
    ]
    for step, expected in steps:
        calls.reset()
        step()
        assert calls.ops == expected
    for _ in range(4):
        store.create(OWNER)
    calls.reset()
    page = store.list(OWNER, limit=2)
    store.list(OWNER, cursor=page.next_cursor, limit=2)
    assert calls.ops == ["Query", "Query"]


def test_reads_are_consistent_and_never_transfer_outcomes(
    store: TaskStore, backend: DynamoDbBackend
) -> None:
    """get and list read strongly consistently and leave the outcome in DynamoDB; only
    get_result transfers it; listing is a Query, never a Scan."""
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, {"payload": "x" * 5000})
    calls = Calls(backend.client)
    store.get(record.task_id, OWNER)
    store.list(OWNER)
    store.wait(record.task_id, OWNER, timeout=1)
    assert calls.ops == ["GetItem", "Query", "GetItem"]
    for op, params in zip(calls.ops, calls.params, strict=True):
        assert params["ConsistentRead"] is True
        if op == "Query":
            # Only what the index holds (never o): no fetch from the table at all.
            assert params["IndexName"] == "by_created"
            assert params["Select"] == "ALL_PROJECTED_ATTRIBUTES"
            continue
        projected = {params["ExpressionAttributeNames"][name.strip()]
                     for name in params["ProjectionExpression"].split(",")}
        assert "o" not in projected
    calls.reset()
    assert store.get_result(record.task_id, OWNER).result == {"payload": "x" * 5000}
    assert "#o" in calls.params[0]["ProjectionExpression"]


def test_writes_are_conditional_and_report_the_old_item(
    store: TaskStore, backend: DynamoDbBackend
) -> None:
    """Every write carries a condition and asks for ALL_OLD on failure, so a conflict reports
    the actual version without another read."""
    calls = Calls(backend.client)
    record = store.create(OWNER)
    store.set_variables(record.task_id, OWNER, {"a": 1})
    sent = list(zip(calls.ops, calls.params, strict=True))
    (transaction,) = (p for op, p in sent if op == "TransactWriteItems")
    put = transaction["TransactItems"][0]["Put"]
    assert "attribute_not_exists(#pk)" in put["ConditionExpression"]
    assert put["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    (update,) = (p for op, p in sent if op == "UpdateItem")
    assert update["ConditionExpression"].startswith("#v = :expected")
    assert update["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    calls.reset()
    with pytest.raises(VersionConflict) as info:
        backend.put_if_version((OWNER, record.task_id), b"{}", 1, now_ms=T0)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert calls.ops == ["UpdateItem"]


def test_stale_knowledge_never_makes_waiting_spin(make: Factory) -> None:
    """After another backend object moved a record on, the versions this object wrote earlier
    are stale: wait_for_change on the version just read blocks instead of returning at once
    (which would make the store's wait() re-read in a busy loop)."""
    first = make()
    other = DynamoDbBackend(first.table_name, region=REGION)
    try:
        key = (OWNER, "t")
        first.put(key, b"1", None, sort_ms=T0, now_ms=T0)
        first.put_if_version(key, b"2", 1, now_ms=T0)
        other.put_if_version(key, b"3", 2, now_ms=T0)
        current = first.get(key, now_ms=T0)
        assert current.version == 3
        started = time.monotonic()
        first.wait_for_change(key, current.version, 0.3)
        assert time.monotonic() - started >= 0.25
        first.put_if_version(key, b"4", 3, now_ms=T0)
        started = time.monotonic()
        first.wait_for_change(key, 3, 30)  # a newer write through this object: no wait
        first.delete(key)
        first.wait_for_change(key, 4, 30)  # a delete: no wait either
        assert time.monotonic() - started < 10.0  # either wait missing its news takes 30 s
    finally:
        other.close()


# -- read-side expiry --------------------------------------------------------------------------


def test_expired_tasks_are_filtered_before_dynamodb_deletes_them(
    backend: DynamoDbBackend, clock: ManualClock
) -> None:
    """With the injected clock past a task's expiry it is absent for get, mutations, list
    and the quota, while the item is still in the table (moto never sweeps)."""
    store = TaskStore(backend, security=SecurityConfig(max_tasks_per_owner=1), clock=clock)
    record = store.create(OWNER, ttl_ms=1_000)
    clock.advance(999)
    assert store.get(record.task_id, OWNER).version == 1
    clock.advance(1)
    with pytest.raises(TaskNotFoundError):
        store.get(record.task_id, OWNER)
    with pytest.raises(TaskNotFoundError):
        store.set_variables(record.task_id, OWNER, {"a": 1})
    with pytest.raises(TaskNotFoundError):
        store.get_result(record.task_id, OWNER)
    assert store.list(OWNER).tasks == []
    assert raw_item(backend, OWNER, record.task_id) is not None
    assert store.create(OWNER).version == 1  # the expired task no longer counts
    assert store.cleanup_expired() == 1
    assert raw_item(backend, OWNER, record.task_id) is None


def test_listing_pages_past_expired_items(backend: DynamoDbBackend) -> None:
    """Expired items thin a page server-side; the backend pages further only then, and a
    cursor whose anchor expired is refused rather than skipped."""
    for i in range(10):
        expires = T0 + 100 if i % 3 else T0 + HOUR
        backend.put((OWNER, f"t{i}"), b"{}", expires, sort_ms=T0 + i, now_ms=T0)
    calls = Calls(backend.client)
    page = backend.list_by_prefix(OWNER, limit=3, now_ms=T0 + 100)
    assert [r.key[1] for r in page] == ["t9", "t6", "t3"]
    assert len(calls.ops) > 1 and set(calls.ops) == {"Query"}
    calls.reset()
    assert [r.key[1] for r in backend.list_by_prefix(OWNER, limit=3, now_ms=T0)] == [
        "t9", "t8", "t7",
    ]
    assert calls.ops == ["Query"]
    with pytest.raises(RecordNotFound):
        backend.list_by_prefix(OWNER, ListPosition(T0 + 8, "t8"), 3, now_ms=T0 + 100)


def test_records_too_large_for_the_index_cost_one_more_request(backend: DynamoDbBackend) -> None:
    """A record too large to be copied into the listing index lives in dx and costs its page
    one BatchGetItem; shrunk again, it moves back into the index (one Query per page)."""
    backend.put((OWNER, "small"), b"s" * 100, None, sort_ms=T0, now_ms=T0)
    backend.put((OWNER, "big"), b"b" * 250_000, None, sort_ms=T0 + 1, now_ms=T0)
    big = raw_item(backend, OWNER, "big")
    small = raw_item(backend, OWNER, "small")
    assert big is not None and "dx" in big and "d" not in big
    assert small is not None and "d" in small and "dx" not in small
    calls = Calls(backend.client)
    listed = backend.list_by_prefix(OWNER, limit=10, now_ms=T0)
    assert [(r.key[1], r.data) for r in listed] == [("big", b"b" * 250_000),
                                                    ("small", b"s" * 100)]
    assert calls.ops == ["Query", "BatchGetItem"]
    assert backend.get((OWNER, "big"), now_ms=T0).data == b"b" * 250_000
    backend.put_if_version((OWNER, "big"), b"b" * 10, 1, now_ms=T0)
    big = raw_item(backend, OWNER, "big")
    assert big is not None and "d" in big and "dx" not in big
    calls.reset()
    assert [r.data for r in backend.list_by_prefix(OWNER, limit=10, now_ms=T0)] == [
        b"b" * 10, b"s" * 100,
    ]
    assert calls.ops == ["Query"]


def test_listing_restarts_when_a_large_record_changes_between_requests(
    backend: DynamoDbBackend,
) -> None:
    """If a record read from outside the index vanished after the Query, the page is listed
    again rather than returned with a hole."""
    backend.put((OWNER, "small"), b"s", None, sort_ms=T0, now_ms=T0)
    backend.put((OWNER, "big"), b"b" * 250_000, None, sort_ms=T0 + 1, now_ms=T0)
    calls = Calls(backend.client)
    deleted: list[bool] = []

    def delete_once(model: Any, **_: Any) -> None:
        if model.name == "Query" and not deleted:
            deleted.append(True)
            backend.delete((OWNER, "big"))

    backend.client.meta.events.register("after-call.dynamodb", delete_once)
    assert [r.key[1] for r in backend.list_by_prefix(OWNER, now_ms=T0)] == ["small"]
    assert [op for op in calls.ops if op != "TransactWriteItems"] == [
        "Query", "BatchGetItem", "Query",
    ]


@pytest.mark.parametrize(
    "anchor",
    [ListPosition(-5, "t1"), ListPosition(T0, "x" * 5000), ListPosition(T0, "\ud800")],
)
def test_impossible_cursor_positions_are_stale_not_backend_errors(
    backend: DynamoDbBackend, anchor: ListPosition
) -> None:
    """A position no record can have (crafted cursor) is RecordNotFound, sent nowhere."""
    backend.put((OWNER, "t1"), b"{}", None, sort_ms=T0, now_ms=T0)
    calls = Calls(backend.client)
    with pytest.raises(RecordNotFound):
        backend.list_by_prefix(OWNER, anchor, 5, now_ms=T0)
    assert calls.ops == []


@pytest.mark.parametrize("key", [("o" * 3000, "t"), (OWNER, "é" * 400), ("\udc80", "t"),
                                 (OWNER, "\udc80")])
def test_keys_dynamodb_cannot_hold(backend: DynamoDbBackend, key: tuple[str, str]) -> None:
    """Owners or task ids too long for DynamoDB keys, or not valid Unicode, cannot be written
    (InvalidParamsError) and read as absent, all without a request."""
    calls = Calls(backend.client)
    with pytest.raises(InvalidParamsError):
        backend.create(key, b"{}", None, sort_ms=T0, now_ms=T0)
    with pytest.raises(InvalidParamsError):
        backend.put(key, b"{}", None, sort_ms=T0, now_ms=T0)
    with pytest.raises(RecordNotFound):
        backend.get(key, now_ms=T0)
    with pytest.raises(VersionConflict) as info:
        backend.put_if_version(key, b"{}", 1, now_ms=T0)
    assert info.value.actual == 0
    assert backend.delete(key) is False
    if key[1] == "t":
        assert backend.list_by_prefix(key[0], now_ms=T0) == []
        with pytest.raises(RecordNotFound):
            backend.list_by_prefix(key[0], ListPosition(T0, "t"), now_ms=T0)
    assert calls.ops == []


# -- item size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("over", [0, 1])
def test_variables_cap_at_the_exact_boundary(store: TaskStore, backend: DynamoDbBackend,
                                             over: int) -> None:
    """Variables of exactly the backend's cap are stored; one byte more is
    VariablesTooLargeError naming the limit, and no write is sent."""
    record = store.create(OWNER)
    cap = backend.max_variable_bytes
    assert cap is not None
    variables = variables_of_size(cap + over)
    calls = Calls(backend.client)
    if over:
        with pytest.raises(VariablesTooLargeError, match=str(cap)):
            store.set_variables(record.task_id, OWNER, variables)
        assert calls.writes == []
        assert store.get(record.task_id, OWNER).version == 1
    else:
        assert store.set_variables(record.task_id, OWNER, variables).version == 2
        assert store.get(record.task_id, OWNER).variables == variables


@pytest.mark.parametrize("over", [0, 1])
def test_result_cap_at_the_exact_boundary(store: TaskStore, backend: DynamoDbBackend,
                                          over: int) -> None:
    """A result of exactly the backend's cap is stored; one byte more is ResultTooLargeError
    naming the limit, and no write is sent."""
    record = store.create(OWNER)
    cap = backend.max_result_bytes
    assert cap is not None
    result = "r" * (cap - 2 + over)  # a JSON string: two quotes
    assert json_size(result) == cap + over
    calls = Calls(backend.client)
    if over:
        with pytest.raises(ResultTooLargeError, match=str(cap)):
            store.complete(record.task_id, OWNER, result)
        assert calls.writes == []
    else:
        store.complete(record.task_id, OWNER, result)
        assert store.get_result(record.task_id, OWNER).result == result


def test_variables_and_result_together_over_an_item_fail_before_sending(
    store: TaskStore, backend: DynamoDbBackend
) -> None:
    """Each within its cap, but together over 400 KB: the write that would overflow the item
    (here complete) is ResultTooLargeError naming the item limit, and nothing is sent."""
    record = store.create(OWNER)
    store.set_variables(record.task_id, OWNER, variables_of_size(250_000))
    calls = Calls(backend.client)
    with pytest.raises(ResultTooLargeError, match=str(ITEM_LIMIT_BYTES)) as info:
        store.complete(record.task_id, OWNER, "r" * 200_000)
    assert info.value.data["limit"] == ITEM_LIMIT_BYTES
    assert info.value.data["size"] > ITEM_LIMIT_BYTES
    assert calls.writes == []
    assert store.get(record.task_id, OWNER).status.value == "working"


def test_growing_variables_next_to_a_stored_result_fail_before_sending(
    store: TaskStore, backend: DynamoDbBackend
) -> None:
    """Variables may change after completion; growing them past what the item can hold next
    to the stored result is InvalidParamsError naming the item limit, and nothing is sent."""
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, "r" * 300_000)
    calls = Calls(backend.client)
    with pytest.raises(InvalidParamsError, match=str(ITEM_LIMIT_BYTES)):
        store.set_variables(record.task_id, OWNER, variables_of_size(120_000))
    assert calls.writes == []
    assert store.set_variables(record.task_id, OWNER, variables_of_size(90_000)).version == 3


def test_unseen_stored_outcome_is_guarded_in_the_condition(
    make: Factory, backend: DynamoDbBackend
) -> None:
    """A compare-and-set through an object that never read the item still cannot overflow
    it: the condition checks the stored outcome's size, and the refusal names the limit."""
    key = (OWNER, "t1")
    backend.put(key, b"{}", None, sort_ms=T0, outcome=b"o" * 300_000, now_ms=T0)
    other = DynamoDbBackend(backend.table_name, region=REGION)
    try:
        with pytest.raises(InvalidParamsError, match=str(ITEM_LIMIT_BYTES)):
            other.put_if_version(key, b"d" * 150_000, 1, now_ms=T0)
        assert backend.get(key, now_ms=T0).version == 1
        assert other.put_if_version(key, b"d" * 50_000, 1, now_ms=T0) == 2
    finally:
        other.close()


def test_oversized_create_is_refused_before_sending(backend: DynamoDbBackend) -> None:
    """A record that cannot fit in an item (e.g. a huge stored request) is InvalidParamsError
    naming the limit; create sends nothing."""
    calls = Calls(backend.client)
    with pytest.raises(InvalidParamsError, match=str(ITEM_LIMIT_BYTES)) as info:
        backend.create((OWNER, "t"), b"x" * ITEM_LIMIT_BYTES, None, sort_ms=T0, now_ms=T0)
    assert not isinstance(info.value, ResultTooLargeError)
    assert calls.ops == []


@pytest.mark.parametrize(
    ("number", "size"),
    [(0, 1), (1, 2), (12, 2), (99, 2), (123, 3), (100, 2), (1_000_000, 2),
     (1_767_225_600_000, 6), (9_999_999_999_999_999, 9), (-1, 3), (-123, 4)],
)
def test_number_sizes_match_dynamodb_local(number: int, size: int) -> None:
    """Numbers are sized as DynamoDB Local measures them (base-100 digits plus one)."""
    assert _number_size(number) == size


# -- the quota ledger --------------------------------------------------------------------------


def test_quota_refusal_costs_one_request_when_nothing_was_freed(
    backend: DynamoDbBackend,
) -> None:
    """At the limit with no task expired or deleted, a create is refused in one request."""
    for i in range(3):
        backend.create((OWNER, f"t{i}"), b"{}", T0 + HOUR, sort_ms=T0, max_live=3, now_ms=T0)
    calls = Calls(backend.client)
    with pytest.raises(QuotaExceededError) as info:
        backend.create((OWNER, "t3"), b"{}", T0 + HOUR, sort_ms=T0, max_live=3, now_ms=T0)
    assert info.value.data == {"limit": 3}
    assert calls.ops == ["TransactWriteItems"]


def test_quota_with_mixed_ttls_frees_slots_exactly_as_tasks_expire(
    backend: DynamoDbBackend,
) -> None:
    """Tasks with shorter and longer lifetimes than earlier ones keep the ledger's expiry
    bounds right: each slot frees exactly when its task expires, never before."""
    plan = [("long", 10_000), ("short", 1_000), ("forever", None), ("mid", 5_000)]
    for name, ttl in plan:
        expires = None if ttl is None else T0 + ttl
        backend.create((OWNER, name), b"{}", expires, sort_ms=T0, max_live=4, now_ms=T0)
    for now, free in ((T0 + 999, False), (T0 + 1_000, True)):
        try:
            backend.create((OWNER, f"n{now}"), b"{}", T0 + HOUR, sort_ms=now, max_live=4,
                           now_ms=now)
        except QuotaExceededError:
            assert not free, now
        else:
            assert free, now
    with pytest.raises(QuotaExceededError):
        backend.create((OWNER, "again"), b"{}", T0 + HOUR, sort_ms=T0, max_live=4,
                       now_ms=T0 + 4_999)
    assert backend.create((OWNER, "later"), b"{}", T0 + HOUR, sort_ms=T0, max_live=4,
                          now_ms=T0 + 5_000) == 1
    live = backend.list_by_prefix(OWNER, limit=10, now_ms=T0 + 5_000)
    assert sorted(r.key[1] for r in live) == ["forever", "later", "long", f"n{T0 + 1_000}"]


def test_put_inserts_and_expiry_changes_keep_the_quota_exact(backend: DynamoDbBackend) -> None:
    """Records written by put count toward the quota, and moving a record's expiry earlier
    frees its slot at the new time."""
    backend.put((OWNER, "a"), b"{}", T0 + HOUR, sort_ms=T0, now_ms=T0)
    backend.create((OWNER, "b"), b"{}", T0 + HOUR, sort_ms=T0, max_live=2, now_ms=T0)
    with pytest.raises(QuotaExceededError):
        backend.create((OWNER, "c"), b"{}", T0 + HOUR, sort_ms=T0, max_live=2, now_ms=T0)
    backend.put_if_version((OWNER, "a"), b"{}", 1, T0 + 50, now_ms=T0)
    with pytest.raises(QuotaExceededError):
        backend.create((OWNER, "c"), b"{}", T0 + HOUR, sort_ms=T0, max_live=2, now_ms=T0 + 49)
    assert backend.create((OWNER, "c"), b"{}", T0 + HOUR, sort_ms=T0, max_live=2,
                          now_ms=T0 + 50) == 1


def test_ledger_is_invisible_to_listing_and_cleanup(backend: DynamoDbBackend) -> None:
    """The owner's quota ledger never shows up in a listing or in cleanup counts."""
    backend.create((OWNER, "t"), b"{}", T0 + 10, sort_ms=T0, max_live=5, now_ms=T0)
    assert [r.key for r in backend.list_by_prefix(OWNER, now_ms=T0)] == [(OWNER, "t")]
    assert backend.cleanup_expired(T0 + HOUR * 1000) == 1
    assert backend.list_by_prefix(OWNER, now_ms=T0) == []


# -- driver errors -----------------------------------------------------------------------------


def _offline_backend(**options: Any) -> DynamoDbBackend:
    # Nothing listens on port 9 (discard); the tests below never let a request out anyway.
    return DynamoDbBackend("tasks", region=REGION, endpoint_url="http://127.0.0.1:9", **options)


def _throttling_response(request: Any, **_: Any) -> AWSResponse:
    body = (b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
            b'"message":"slow down"}')
    return AWSResponse(request.url, 400, {"content-type": "application/x-amz-json-1.0"},
                       _RawBody(body))


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def test_throttling_is_a_backend_error_after_boto3_retries(aws_env: None) -> None:
    """ProvisionedThroughputExceededException on every attempt: boto3 retries (adaptive
    mode), then the backend sends the request again until the retry deadline, then
    BackendError with the ClientError chained, transient, known not applied (a throttled
    request never is)."""
    backend = _offline_backend(max_attempts=2)
    sends: list[str] = []

    def throttle(request: Any, **kwargs: Any) -> AWSResponse:
        sends.append(request.url)
        return _throttling_response(request, **kwargs)

    backend.client.meta.events.register("before-send.dynamodb", throttle)
    try:
        # A deadline already passed: boto3's two attempts and no more.
        with pytest.raises(BackendError, match="ProvisionedThroughputExceededException") as info, (
            retrying_until(time.monotonic())
        ):
            backend.get((OWNER, "t"))
        cause = info.value.__cause__
        assert isinstance(cause, botocore.exceptions.ClientError)
        assert cause.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        assert len(sends) == 2
        assert info.value.transient and info.value.applied is False
    finally:
        backend.close()


def test_a_request_boto3_gave_up_on_is_sent_again(aws_env: None) -> None:
    """Throttling that outlasts boto3's attempts costs time, not an error: the backend sends
    the request again (within the retry deadline) and its answer is the call's."""
    backend = _offline_backend(max_attempts=2)
    sends: list[str] = []

    def throttle_twice(request: Any, **kwargs: Any) -> AWSResponse:
        sends.append(request.url)
        if len(sends) <= 2:
            return _throttling_response(request, **kwargs)
        return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"},
                           _RawBody(b"{}"))

    backend.client.meta.events.register("before-send.dynamodb", throttle_twice)
    try:
        with pytest.raises(RecordNotFound), retrying_until(time.monotonic() + 30):
            backend.get((OWNER, "t"))  # the third send answers: no such item
        assert len(sends) == 3
    finally:
        backend.close()


def test_throttled_transaction_items_give_up_with_backend_error(aws_env: None) -> None:
    """A create whose transaction keeps being cancelled for throttling retries within the
    budget, then raises BackendError (not a quota or version error)."""
    backend = _offline_backend(retry_budget_s=0.05)
    stub = Stubber(backend.client)
    for _ in range(200):
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": "ThrottlingError"}]},
        )
    with stub, pytest.raises(BackendError, match="throttling") as info:
        backend.create((OWNER, "t"), b"{}", None, sort_ms=T0, max_live=5, now_ms=T0)
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
    backend.close()


def test_refused_connection_is_a_backend_error(aws_env: None) -> None:
    """An endpoint on a closed port fails fast (small timeouts and attempts) as BackendError
    with botocore's connection error chained."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = DynamoDbBackend("tasks", region=REGION, endpoint_url=f"http://127.0.0.1:{port}",
                              connect_timeout=0.2, read_timeout=0.5, max_attempts=2)
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as info, retrying_until(time.monotonic() + 0.5):
            backend.put_if_version((OWNER, "t"), b"{}", 1)
    finally:
        backend.close()
    assert isinstance(info.value.__cause__, botocore.exceptions.EndpointConnectionError)
    # Refused, so never sent: a write known not to have been applied.
    assert info.value.transient and info.value.applied is False
    assert time.monotonic() - started < 10


def _botocore_error_types() -> list[type[BaseException]]:
    found: set[type[BaseException]] = set()
    pending: list[type[BaseException]] = [botocore.exceptions.BotoCoreError]
    while pending:
        cls = pending.pop()
        if cls in found:
            continue
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def _instantiate(cls: type[BaseException]) -> BaseException:
    fields = {name for _, name, _, _ in string.Formatter().parse(getattr(cls, "fmt", "")) if name}
    try:
        return cls(**dict.fromkeys(fields, "x"))
    except TypeError:
        error = cls.__new__(cls)
        Exception.__init__(error, f"{cls.__name__} (test)")
        return error


@pytest.mark.parametrize("error_type", _botocore_error_types(), ids=lambda c: c.__name__)
def test_every_botocore_error_is_mapped(aws_env: None, error_type: type[BaseException]) -> None:
    """Every BotoCoreError subclass raised by the driver comes out as BackendError with the
    original chained."""
    error = _instantiate(error_type)
    backend = _offline_backend()

    def fail(**_: Any) -> None:
        raise error

    backend.client.meta.events.register("before-call.dynamodb", fail)
    try:
        for operation in (
            lambda: backend.get((OWNER, "t")),
            lambda: backend.create((OWNER, "t"), b"{}", None, sort_ms=T0, max_live=1),
            lambda: backend.put_if_version((OWNER, "t"), b"{}", 1),
            lambda: backend.list_by_prefix(OWNER),
            lambda: backend.delete((OWNER, "t")),
            lambda: backend.cleanup_expired(),
        ):
            # A deadline already passed: one request each, transient faults included.
            with pytest.raises(BackendError) as info, retrying_until(time.monotonic()):
                operation()
            assert info.value.__cause__ is error
            assert info.value.transient is is_transient(error)
            assert info.value.applied is False  # raised before any request left
    finally:
        backend.close()


@pytest.mark.parametrize(
    "code",
    ["InternalServerError", "ResourceNotFoundException", "AccessDeniedException",
     "ValidationException", "RequestLimitExceeded", "ThrottlingException",
     "ProvisionedThroughputExceededException", "ItemCollectionSizeLimitExceededException",
     "UnrecognizedClientException", "SomethingNew"],
)
def test_every_client_error_is_mapped(aws_env: None, code: str) -> None:
    """Any ClientError that is not one of our own condition failures becomes BackendError
    with the ClientError chained and its code in the message (a missing table: how to create
    it)."""
    backend = _offline_backend()
    stub = Stubber(backend.client)
    stub.add_client_error("get_item", service_error_code=code, http_status_code=400)
    with stub, pytest.raises(BackendError) as info, retrying_until(time.monotonic()):
        backend.get((OWNER, "t"))
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
    assert info.value.transient is (
        code in ("InternalServerError", "RequestLimitExceeded", "ThrottlingException",
                 "ProvisionedThroughputExceededException")
    )
    if code == "ResourceNotFoundException":  # says what to do about it instead of the code
        assert str(info.value) == (
            f"DynamoDB table {backend.table_name!r} not found (GetItem); create it with "
            f"'python -m taskstore dynamodb create-table {backend.table_name}'"
        )
    else:
        assert str(info.value) == f"DynamoDB GetItem failed: {code}"
    backend.close()


def test_transaction_cancellation_reasons_are_parsed(aws_env: None) -> None:
    """A cancelled create is explained from its reasons alone: the task's condition is a
    VersionConflict with the live version, the ledger's a quota refusal, anything else a
    BackendError; no extra request is made."""
    backend = _offline_backend()
    stub = Stubber(backend.client)
    stub.add_client_error(
        "transact_write_items", "TransactionCanceledException", http_status_code=400,
        modeled_fields={"CancellationReasons": [
            {"Code": "ConditionalCheckFailed", "Item": {"v": {"N": "3"}}}, {"Code": "None"},
        ]},
    )
    stub.add_client_error(
        "transact_write_items", "TransactionCanceledException", http_status_code=400,
        modeled_fields={"CancellationReasons": [
            {"Code": "None"},
            {"Code": "ConditionalCheckFailed",
             "Item": {"n": {"N": "5"}, "v": {"N": "9"}, "nx": {"N": str(T0 + HOUR)}}},
        ]},
    )
    stub.add_client_error(
        "transact_write_items", "TransactionCanceledException", http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": "ValidationError"}, {"Code": "None"}]},
    )
    with stub:
        with pytest.raises(VersionConflict) as conflict:
            backend.create((OWNER, "t"), b"{}", T0 + HOUR, sort_ms=T0, max_live=5, now_ms=T0)
        assert conflict.value.actual == 3
        with pytest.raises(QuotaExceededError):
            backend.create((OWNER, "t"), b"{}", T0 + HOUR, sort_ms=T0, max_live=5, now_ms=T0)
        with pytest.raises(BackendError):
            backend.create((OWNER, "t"), b"{}", T0 + HOUR, sort_ms=T0, max_live=5, now_ms=T0)
        stub.assert_no_pending_responses()
    backend.close()


def test_endless_transaction_conflicts_end_in_conflict_error(aws_env: None) -> None:
    """Creates that keep losing to concurrent transactions retry with backoff for the retry
    budget, then raise ConflictError."""
    backend = _offline_backend(retry_budget_s=0.05)
    stub = Stubber(backend.client)
    for _ in range(200):
        stub.add_client_error(
            "transact_write_items", "TransactionCanceledException", http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": "None"},
                                                    {"Code": "TransactionConflict"}]},
        )
    with stub, pytest.raises(ConflictError):
        backend.create((OWNER, "t"), b"{}", None, sort_ms=T0, max_live=5, now_ms=T0)
    backend.close()


def test_a_retried_compare_and_set_that_already_landed_succeeds(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a compare-and-set whose first answer was lost is sent again, its condition fails
    against our own write; the item holds the write's own token one version on, so the
    backend reports success, not a conflict. The same bytes under another write's token are
    someone else's write: a conflict."""
    backend = _offline_backend()
    tokens = iter([b"mine-one", b"mine-two"])
    monkeypatch.setattr(dynamodb_items, "write_token", lambda: next(tokens))
    stub = Stubber(backend.client)
    landed = {"v": {"N": "6"}, "d": {"B": b"new"}, "w": {"B": b"mine-one"}}
    stub.add_client_error("update_item", "ConditionalCheckFailedException",
                          http_status_code=400, modeled_fields={"Item": landed})
    stub.add_client_error("update_item", "ConditionalCheckFailedException",
                          http_status_code=400, modeled_fields={"Item": landed})
    with stub:
        assert backend.put_if_version((OWNER, "t"), b"new", 5, now_ms=T0) == 6
        with pytest.raises(VersionConflict) as info:  # mine-two: someone else's write
            backend.put_if_version((OWNER, "t"), b"new", 5, now_ms=T0)
        assert info.value.actual == 6
    backend.close()


# -- the scan across owners ----------------------------------------------------------------------


def test_scan_reads_only_the_listing_index(backend: DynamoDbBackend) -> None:
    """A scan page is a strongly consistent Scan of the listing index, index-only (outcomes and
    quota ledgers are never read); records too large for the index cost their page one
    BatchGetItem, whatever their owners."""
    big = b'{"kind":"result","result":"' + b"x" * 5_000 + b'"}'
    backend.create(("alice", "small"), b"s" * 100, None, sort_ms=T0, max_live=5, now_ms=T0)
    backend.put(("alice", "big"), b"a" * 250_000, None, sort_ms=T0, outcome=big, now_ms=T0)
    backend.put(("bob", "big"), b"b" * 250_000, None, sort_ms=T0, now_ms=T0)
    calls = Calls(backend.client)
    page = backend.scan(None, 10, now_ms=T0)
    assert sorted((r.key, r.data[:1], len(r.data), r.outcome) for r in page.records) == [
        (("alice", "big"), b"a", 250_000, None),
        (("alice", "small"), b"s", 100, None),
        (("bob", "big"), b"b", 250_000, None),
    ]
    assert page.next_cursor is None
    assert calls.ops == ["Scan", "BatchGetItem"]
    scan = calls.params[0]
    assert (scan["IndexName"], scan["Select"], scan["ConsistentRead"]) == (
        "by_created", "ALL_PROJECTED_ATTRIBUTES", True,
    )
    projected = calls.params[1]["RequestItems"][backend.table_name]["ProjectionExpression"]
    assert "#o" not in projected


def test_scan_pages_stay_bounded_when_expired_items_thin_them(backend: DynamoDbBackend) -> None:
    """Each Scan request reads at most what the page still lacks, so no page exceeds its limit
    and none sends more than 8 requests, even when expired items fill the index: pages may
    then come back short (or empty) with a cursor, and the pass still returns every live
    record once."""
    for i in range(30):
        backend.put((f"owner-{i}", "t"), b"{}", T0 + 5 if i % 10 else FUTURE, sort_ms=T0,
                    now_ms=T0)
    calls = Calls(backend.client)
    records, pages = scan_all(backend, 2, T0 + 5)
    assert sorted(r.key for r in records) == [("owner-0", "t"), ("owner-10", "t"),
                                              ("owner-20", "t")]
    assert len(calls.ops) >= len(pages)
    scans = [p["Limit"] for p in calls.params]
    assert all(1 <= limit <= 2 for limit in scans)
    assert len(calls.ops) <= 8 * len(pages)


@pytest.mark.parametrize(
    "fields",
    [
        [("PK", "alice"), ("SK", "TASK#t")],
        [("PK", "OWNER#alice"), ("SK", "QUOTA")],
        [("PK", "OWNER#alice")],
        [("PK", "OWNER#alice"), ("SK", "TASK#t"), ("lsk", "12#t")],
        [("PK", "OWNER#alice"), ("SK", "TASK#t"), ("other", "x")],
        [("PK", "OWNER#" + "a" * 3000), ("SK", "TASK#t")],
        [("PK", "OWNER#alice"), ("PK", "OWNER#bob"), ("SK", "TASK#t")],
    ],
)
def test_crafted_scan_cursors_are_invalid_without_a_request(
    backend: DynamoDbBackend, fields: list[tuple[str, str]]
) -> None:
    """A cursor whose start key is not one of the listing index's is InvalidCursorError,
    refused before anything is sent (never a DynamoDB ValidationException)."""
    calls = Calls(backend.client)
    with pytest.raises(InvalidCursorError):
        backend.scan(encode_scan_cursor(("d1", fields)), 5, now_ms=T0)
    assert calls.ops == []
