"""The TaskStore rules of DESIGN §5, run unchanged over every backend of the table."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import taskstore.store as store_module
from support.backends import count_reads
from taskstore import (
    AnonymousAccessError,
    InvalidCursorError,
    InvalidParamsError,
    InvalidTransitionError,
    ManualClock,
    NotReadyError,
    QuotaExceededError,
    ResultTooLargeError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskStatus,
    TaskStore,
    VariablesTooLargeError,
)
from taskstore.testing import T0, TRICKY_OWNERS

MakeStore = Callable[..., TaskStore]
OWNER = "alice"


# -- creation -------------------------------------------------------------------------------


def test_create_returns_a_working_task(store: TaskStore) -> None:
    """A new task is working, version 1, with default ttl and pollInterval and equal stamps."""
    record = store.create(OWNER)
    assert record.status is TaskStatus.WORKING
    assert record.version == 1
    assert record.owner == OWNER
    assert record.request_method == "tools/call"
    assert record.task.ttl == 3_600_000
    assert record.task.poll_interval == 1_000
    assert record.task.created_at == record.task.last_updated_at == "2026-01-01T00:00:00.000Z"
    assert record.expires_at_ms == T0 + 3_600_000
    assert record.to_wire() == {
        "taskId": record.task_id,
        "status": "working",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastUpdatedAt": "2026-01-01T00:00:00.000Z",
        "ttl": 3_600_000,
        "pollInterval": 1_000,
    }
    assert store.get(record.task_id, OWNER) == record


def test_create_keeps_request_and_method(store: TaskStore) -> None:
    """The original request params and method are stored with the task."""
    request = {"name": "echo", "arguments": {"text": "hi"}}
    record = store.create(OWNER, "tools/call", request=request)
    assert store.get(record.task_id, OWNER).request == request


def test_task_ids_are_unique_uuid4(store: TaskStore) -> None:
    """Task ids are random UUID4s (122 random bits), never repeated."""
    import uuid

    ids = {store.create(f"owner{i}").task_id for i in range(200)}
    assert len(ids) == 200
    assert all(uuid.UUID(task_id).version == 4 for task_id in ids)


@pytest.mark.parametrize("owner", ["", "local"])
def test_anonymous_owner_cannot_create_by_default(make_store: MakeStore, owner: str) -> None:
    """The anonymous owner is refused with AnonymousAccessError (-32600) unless allowed."""
    with pytest.raises(AnonymousAccessError) as info:
        make_store().create(owner)
    assert info.value.code == -32600
    assert make_store(allow_anonymous=True).create(owner).owner == owner


# -- ttl ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "reported"),
    [
        (None, 3_600_000),
        (5_000, 5_000),
        (1_000, 1_000),
        (999, 1_000),
        (0, 1_000),
        (86_400_000, 86_400_000),
        (86_400_001, 86_400_000),
        (10**12, 86_400_000),
    ],
)
def test_ttl_default_clamp_and_minimum(
    store: TaskStore, requested: int | None, reported: int
) -> None:
    """The Task reports the ttl actually used: default, clamped to max, raised to min."""
    record = store.create(OWNER, ttl_ms=requested)
    assert record.task.ttl == reported
    assert record.expires_at_ms == T0 + reported


@pytest.mark.parametrize("bad", [-1, 1.5, 1000.0, True, False, "1000", [1]])
def test_bad_ttl_is_invalid_params(store: TaskStore, bad: Any) -> None:
    """Negative, non-integer and boolean ttls are InvalidParamsError; nothing is created."""
    with pytest.raises(InvalidParamsError):
        store.create(OWNER, ttl_ms=bad)
    assert store.list(OWNER).tasks == []


def test_unlimited_ttl(make_store: MakeStore, clock: ManualClock) -> None:
    """default_ttl_ms=None keeps tasks forever and reports ttl null."""
    store = make_store(default_ttl_ms=None)
    record = store.create(OWNER)
    assert record.task.ttl is None and record.to_wire()["ttl"] is None
    assert record.expires_at_ms is None
    clock.advance(10 * 365 * 86_400_000)
    assert store.get(record.task_id, OWNER).task.ttl is None
    assert store.create(OWNER, ttl_ms=5_000).task.ttl == 5_000


# -- expiry ---------------------------------------------------------------------------------


def test_expiry_boundary(store: TaskStore, clock: ManualClock) -> None:
    """A task is visible until createdAt + ttl - 1 ms and absent from createdAt + ttl."""
    record = store.create(OWNER, ttl_ms=5_000)
    clock.advance(4_999)
    assert store.get(record.task_id, OWNER).task_id == record.task_id
    clock.advance(1)
    with pytest.raises(TaskNotFoundError):
        store.get(record.task_id, OWNER)


def test_expired_task_is_absent_everywhere(store: TaskStore, clock: ManualClock) -> None:
    """Every operation treats an expired task as not found, and list skips it."""
    record = store.create(OWNER, ttl_ms=1_000)
    done = store.create(OWNER, ttl_ms=1_000)
    store.complete(done.task_id, OWNER, {"ok": True})
    clock.advance(1_000)
    task_id = record.task_id
    operations: list[Callable[[], Any]] = [
        lambda: store.get(task_id, OWNER),
        lambda: store.update_status(task_id, OWNER, "input_required"),
        lambda: store.set_message(task_id, OWNER, "x"),
        lambda: store.set_variables(task_id, OWNER, {"a": 1}),
        lambda: store.complete(task_id, OWNER, 1),
        lambda: store.fail(task_id, OWNER, message="x"),
        lambda: store.cancel(task_id, OWNER),
        lambda: store.get_result(done.task_id, OWNER),
        lambda: store.wait(task_id, OWNER, timeout=0.1),
    ]
    for operation in operations:
        with pytest.raises(TaskNotFoundError):
            operation()
    assert store.list(OWNER).tasks == []


def test_cleanup_expired(store: TaskStore, clock: ManualClock) -> None:
    """cleanup_expired reclaims exactly the expired tasks."""
    for _ in range(3):
        store.create(OWNER, ttl_ms=1_000)
    keep = store.create(OWNER, ttl_ms=60_000)
    clock.advance(1_000)
    assert store.cleanup_expired() == 3
    assert [r.task_id for r in store.list(OWNER).tasks] == [keep.task_id]


# -- quota ----------------------------------------------------------------------------------


def test_quota_counts_live_tasks_per_owner(make_store: MakeStore, clock: ManualClock) -> None:
    """max_tasks_per_owner caps live tasks; terminal tasks still count; expiry frees slots."""
    store = make_store(max_tasks_per_owner=3)
    first = store.create(OWNER, ttl_ms=1_000)
    clock.advance(10)
    store.create(OWNER)
    store.create(OWNER)
    store.complete(first.task_id, OWNER, None)
    with pytest.raises(QuotaExceededError):
        store.create(OWNER)
    assert store.create("bob").owner == "bob"
    clock.advance(990)
    assert store.create(OWNER).status is TaskStatus.WORKING
    with pytest.raises(QuotaExceededError):
        store.create(OWNER)


def test_quota_rejection_has_its_code_limit_and_retry_hint(make_store: MakeStore) -> None:
    """Every backend refuses a create over the quota with the same error: code -32010 (not
    -32603), a message naming the limit and saying the client may retry, data.limit."""
    store = make_store(max_tasks_per_owner=2)
    store.create(OWNER)
    store.create(OWNER)
    with pytest.raises(QuotaExceededError) as info:
        store.create(OWNER)
    assert info.value.to_jsonrpc() == {
        "code": -32010,
        "message": "Task quota exceeded: at most 2 live tasks per owner; retry when some have "
        "ended or expired",
        "data": {"limit": 2},
    }


# -- isolation ------------------------------------------------------------------------------


def test_other_owner_sees_nothing(store: TaskStore) -> None:
    """Another owner's task is TaskNotFoundError for every call, and is never listed."""
    record = store.create(OWNER)
    task_id = record.task_id
    operations: list[Callable[[str], Any]] = [
        lambda o: store.get(task_id, o),
        lambda o: store.update_status(task_id, o, "input_required"),
        lambda o: store.set_message(task_id, o, "x"),
        lambda o: store.set_variables(task_id, o, {"a": 1}),
        lambda o: store.complete(task_id, o, 1),
        lambda o: store.fail(task_id, o),
        lambda o: store.cancel(task_id, o),
        lambda o: store.get_result(task_id, o),
        lambda o: store.wait(task_id, o, timeout=0.1),
    ]
    for intruder in ("bob", "alice:", "alic", "Alice", ""):
        for operation in operations:
            with pytest.raises(TaskNotFoundError) as info:
                operation(intruder)
            message = str(info.value).lower()
            assert "owner" not in message and "alice" not in message
            if intruder:
                assert intruder.lower() not in message
        assert store.list(intruder).tasks == []
    assert store.get(task_id, OWNER).status is TaskStatus.WORKING


def test_not_found_message_is_the_same_for_missing_and_foreign(store: TaskStore) -> None:
    """A foreign task and a missing task produce identical errors (no existence leak)."""
    record = store.create(OWNER)
    with pytest.raises(TaskNotFoundError) as foreign:
        store.get(record.task_id, "bob")
    with pytest.raises(TaskNotFoundError) as missing:
        store.get(record.task_id, "nobody-has-this")
    assert foreign.value.to_jsonrpc() == missing.value.to_jsonrpc()


def test_tricky_owners_are_isolated(make_store: MakeStore) -> None:
    """Owners that are prefixes of each other or contain separators each see only their own."""
    store = make_store(allow_anonymous=True)
    created = {owner: store.create(owner).task_id for owner in TRICKY_OWNERS}
    for owner, task_id in created.items():
        assert [r.task_id for r in store.list(owner).tasks] == [task_id]
        for other, other_id in created.items():
            if other != owner:
                with pytest.raises(TaskNotFoundError):
                    store.get(other_id, owner)


# -- status changes -------------------------------------------------------------------------


def test_input_required_round_trip(store: TaskStore, clock: ManualClock) -> None:
    """working → input_required → working, with messages set and cleared, versions +1 each."""
    record = store.create(OWNER)
    clock.advance(5)
    waiting = store.update_status(record.task_id, OWNER, TaskStatus.INPUT_REQUIRED, "need input")
    assert (waiting.status, waiting.task.status_message, waiting.version) == (
        TaskStatus.INPUT_REQUIRED,
        "need input",
        2,
    )
    assert waiting.task.last_updated_at == "2026-01-01T00:00:00.005Z"
    resumed = store.update_status(record.task_id, OWNER, "working")
    assert (resumed.status, resumed.task.status_message, resumed.version) == (
        TaskStatus.WORKING,
        None,
        3,
    )
    assert "statusMessage" not in resumed.to_wire()


def test_self_transition_and_terminal_moves_refused(store: TaskStore) -> None:
    """Self-transitions and any move out of a terminal status raise InvalidTransitionError;
    only cancelling the cancelled task again succeeds, writing nothing (idempotent)."""
    record = store.create(OWNER)
    with pytest.raises(InvalidTransitionError):
        store.update_status(record.task_id, OWNER, "working")
    store.cancel(record.task_id, OWNER)
    for target in TaskStatus:
        if target is TaskStatus.CANCELLED:
            assert store.update_status(record.task_id, OWNER, target).version == 2
            continue
        with pytest.raises(InvalidTransitionError):
            store.update_status(record.task_id, OWNER, target)
    with pytest.raises(InvalidTransitionError):
        store.set_message(record.task_id, OWNER, "late")
    assert store.get(record.task_id, OWNER).version == 2


def test_unknown_status_is_invalid_params(store: TaskStore) -> None:
    """A status that is not one of the five is InvalidParamsError."""
    record = store.create(OWNER)
    with pytest.raises(InvalidParamsError):
        store.update_status(record.task_id, OWNER, "canceled")


def test_set_message_keeps_status(store: TaskStore) -> None:
    """set_message changes only the statusMessage of a non-terminal task."""
    record = store.create(OWNER)
    updated = store.set_message(record.task_id, OWNER, "50%")
    assert (updated.status, updated.task.status_message) == (TaskStatus.WORKING, "50%")


# -- outcomes -------------------------------------------------------------------------------


def test_null_result_survives(store: TaskStore) -> None:
    """complete(None) stores a real null result: has_outcome is True and get_result gives it."""
    record = store.create(OWNER)
    done = store.complete(record.task_id, OWNER, None)
    assert done.status is TaskStatus.COMPLETED and done.has_outcome
    assert done.outcome is not None and done.outcome.kind == "result"
    fetched = store.get(record.task_id, OWNER)
    assert fetched.has_outcome and fetched.outcome is None  # get never loads the outcome
    outcome = store.get_result(record.task_id, OWNER)
    assert (outcome.kind, outcome.result, outcome.error) == ("result", None, None)


def test_complete_stores_result(store: TaskStore) -> None:
    """A completed task's result comes back exactly as stored."""
    result = {"content": [{"type": "text", "text": "héllo"}], "structuredContent": {"n": 1.5}}
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, result)
    assert store.get_result(record.task_id, OWNER).result == result


def test_outcome_immutable_once_terminal(store: TaskStore) -> None:
    """A second complete/fail/cancel is refused and the first outcome stays."""
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, {"first": True})
    with pytest.raises(InvalidTransitionError):
        store.complete(record.task_id, OWNER, {"second": True})
    with pytest.raises(InvalidTransitionError):
        store.fail(record.task_id, OWNER, {"code": 1, "message": "no"})
    with pytest.raises(InvalidTransitionError):
        store.cancel(record.task_id, OWNER)
    assert store.get_result(record.task_id, OWNER).result == {"first": True}


def test_fail_with_error(store: TaskStore) -> None:
    """fail(error) stores the JSON-RPC error; the status message defaults to its message."""
    record = store.create(OWNER)
    error = {"code": -32603, "message": "boom", "data": {"trace": "x"}}
    failed = store.fail(record.task_id, OWNER, error)
    assert failed.status is TaskStatus.FAILED and failed.task.status_message == "boom"
    outcome = store.get_result(record.task_id, OWNER)
    assert (outcome.kind, outcome.error) == ("error", error)


def test_fail_with_result(store: TaskStore) -> None:
    """fail(result=...) keeps an isError tool result as the outcome of a failed task."""
    record = store.create(OWNER)
    result = {"content": [{"type": "text", "text": "bad input"}], "isError": True}
    store.fail(record.task_id, OWNER, result=result, message="tool error")
    outcome = store.get_result(record.task_id, OWNER)
    assert (outcome.kind, outcome.result) == ("result", result)
    assert store.get(record.task_id, OWNER).task.status_message == "tool error"


def test_fail_without_outcome_synthesises_error(store: TaskStore) -> None:
    """fail(message=...) alone stores a -32603 error carrying the message."""
    record = store.create(OWNER)
    store.fail(record.task_id, OWNER, message="disk full")
    assert store.get_result(record.task_id, OWNER).error == {"code": -32603, "message": "disk full"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error": {"code": 1, "message": "x"}, "result": 1},
        {"error": {"message": "x"}},
        {"error": {"code": "1", "message": "x"}},
        {"error": {"code": True, "message": "x"}},
        {"error": {"code": 1}},
    ],
    ids=["both", "no-code", "str-code", "bool-code", "no-message"],
)
def test_fail_rejects_bad_outcomes(store: TaskStore, kwargs: dict[str, Any]) -> None:
    """Malformed failure outcomes are InvalidParamsError and nothing is written."""
    record = store.create(OWNER)
    with pytest.raises(InvalidParamsError):
        store.fail(record.task_id, OWNER, **kwargs)
    assert store.get(record.task_id, OWNER).version == 1


def test_update_status_to_terminal_delegates(store: TaskStore) -> None:
    """update_status to completed/failed/cancelled behaves like complete/fail/cancel."""
    a, b, c = (store.create(OWNER) for _ in range(3))
    store.update_status(a.task_id, OWNER, "completed")
    assert store.get_result(a.task_id, OWNER).kind == "result"
    store.update_status(b.task_id, OWNER, "failed", "nope")
    assert store.get_result(b.task_id, OWNER).error == {"code": -32603, "message": "nope"}
    store.update_status(c.task_id, OWNER, "cancelled")
    assert store.get(c.task_id, OWNER).status is TaskStatus.CANCELLED


def test_get_result_not_ready_and_cancelled(store: TaskStore) -> None:
    """get_result before terminal is NotReadyError; after cancel it is TaskCancelledError."""
    record = store.create(OWNER)
    with pytest.raises(NotReadyError) as info:
        store.get_result(record.task_id, OWNER)
    assert not isinstance(info.value, TaskCancelledError)
    store.cancel(record.task_id, OWNER)
    with pytest.raises(TaskCancelledError) as cancelled:
        store.get_result(record.task_id, OWNER)
    assert cancelled.value.to_jsonrpc()["data"] == {"taskId": record.task_id, "status": "cancelled"}


def test_get_with_outcome_loads_it_once_terminal_in_one_read(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_with_outcome carries what get_result gives for a completed or failed task (a
    failed task without a stored outcome too), None while working and once cancelled, and
    reads the backend once each time."""
    working, done, broken, bare, dropped = (store.create(OWNER) for _ in range(5))
    store.complete(done.task_id, OWNER, {"n": 1})
    store.fail(broken.task_id, OWNER, error={"code": -32000, "message": "boom"})
    store.update_status(bare.task_id, OWNER, "failed", "nope")
    store.cancel(dropped.task_id, OWNER)
    reads = count_reads(store, monkeypatch)
    assert store.get_with_outcome(working.task_id, OWNER).outcome is None
    got = store.get_with_outcome(done.task_id, OWNER)
    assert got.status is TaskStatus.COMPLETED and got.result == {"n": 1}
    assert got.outcome == store.get_result(done.task_id, OWNER)
    failed = store.get_with_outcome(broken.task_id, OWNER)
    assert failed.error == {"code": -32000, "message": "boom"}
    assert store.get_with_outcome(bare.task_id, OWNER).error == {
        "code": -32603, "message": "nope"
    }
    cancelled = store.get_with_outcome(dropped.task_id, OWNER)
    assert cancelled.status is TaskStatus.CANCELLED and cancelled.outcome is None
    assert reads == [True, True, True, True, True, True]  # five calls, and one get_result
    with pytest.raises(TaskNotFoundError):
        store.get_with_outcome(done.task_id, "mallory")


def test_complete_with_the_created_record_writes_without_reading(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """complete(known=created) on an untouched task is one write and no read."""
    created = store.create(OWNER)
    reads = count_reads(store, monkeypatch)
    record = store.complete(created.task_id, OWNER, {"ok": True}, known=created)
    assert reads == []
    assert record.version == created.version + 1
    assert store.get_result(created.task_id, OWNER).result == {"ok": True}


def test_complete_with_a_stale_known_record_reads_afresh(store: TaskStore) -> None:
    """A known record out of date costs a read, not correctness: what changed meanwhile is
    kept, a task cancelled meanwhile refuses, a repeat with the same result is idempotent."""
    created = store.create(OWNER)
    store.set_variables(created.task_id, OWNER, {"step": 2})
    record = store.complete(created.task_id, OWNER, "done", known=created)
    assert record.variables == {"step": 2} and record.version == created.version + 2
    again = store.complete(created.task_id, OWNER, "done", known=created)
    assert again.version == record.version and again.result == "done"
    with pytest.raises(InvalidTransitionError):
        store.complete(created.task_id, OWNER, "other", known=created)
    other = store.create(OWNER)
    store.cancel(other.task_id, OWNER)
    with pytest.raises(InvalidTransitionError):
        store.fail(other.task_id, OWNER, message="late", known=other)
    assert store.get(other.task_id, OWNER).status is TaskStatus.CANCELLED


def test_complete_refuses_a_known_record_of_another_task(store: TaskStore) -> None:
    """known must be a record of the task written; anything else is InvalidParamsError and
    writes nothing."""
    a, b = store.create(OWNER), store.create(OWNER)
    for bad in (b, {"taskId": a.task_id}):
        with pytest.raises(InvalidParamsError):
            store.complete(a.task_id, OWNER, 1, known=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamsError):
        store.fail(a.task_id, "bob", message="x", known=a)
    assert store.get(a.task_id, OWNER).status is TaskStatus.WORKING


def test_result_size_boundary(make_store: MakeStore) -> None:
    """A result of exactly result_max_bytes is stored; one byte more is ResultTooLargeError."""
    store = make_store(result_max_bytes=1_000)
    fits = "x" * (1_000 - 2)  # a JSON string: two quotes plus the characters
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, fits)
    assert store.get_result(record.task_id, OWNER).result == fits
    other = store.create(OWNER)
    with pytest.raises(ResultTooLargeError) as info:
        store.complete(other.task_id, OWNER, fits + "x")
    assert "1000" in str(info.value)
    assert store.get(other.task_id, OWNER).status is TaskStatus.WORKING


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, {"a": [math.nan]}, {1: "x"}, {"s": {1, 2}}]
)
def test_result_must_be_json(store: TaskStore, bad: Any) -> None:
    """NaN, Infinity, non-string keys and non-JSON types are rejected, not coerced."""
    record = store.create(OWNER)
    with pytest.raises(InvalidParamsError):
        store.complete(record.task_id, OWNER, bad)
    assert store.get(record.task_id, OWNER).status is TaskStatus.WORKING


def test_reads_never_decode_outcomes(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """get, list and wait work without ever decoding a stored outcome."""
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, {"big": "x" * 100_000})

    def forbidden(_: bytes) -> Any:
        raise AssertionError("outcome decoded by a read")

    monkeypatch.setattr(store_module, "decode_outcome", forbidden)
    assert store.get(record.task_id, OWNER).has_outcome
    assert [r.task_id for r in store.list(OWNER).tasks] == [record.task_id]
    assert store.wait(record.task_id, OWNER, timeout=1).status is TaskStatus.COMPLETED


# -- variables ------------------------------------------------------------------------------


def test_variables_merge_and_delete(store: TaskStore) -> None:
    """New keys are added, existing overwritten, None deletes; each call is one version."""
    record = store.create(OWNER)
    store.set_variables(record.task_id, OWNER, {"a": 1, "b": {"x": [1, 2]}, "c": "keep"})
    updated = store.set_variables(record.task_id, OWNER, {"a": 2, "b": None, "d": True})
    assert updated.variables == {"a": 2, "c": "keep", "d": True}
    assert updated.version == 3
    assert store.get(record.task_id, OWNER).variables == {"a": 2, "c": "keep", "d": True}
    assert store.set_variables(record.task_id, OWNER, {"zz": None}).variables == updated.variables


def test_variables_in_wire_meta(store: TaskStore) -> None:
    """to_wire(include_variables=True) injects variables at the top of _meta."""
    record = store.create(OWNER)
    updated = store.set_variables(record.task_id, OWNER, {"progress": 0.5})
    assert updated.to_wire(include_variables=True)["_meta"] == {"progress": 0.5}
    assert "_meta" not in updated.to_wire()


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [1, 9, 10])
def test_variable_depth_within_limit(store: TaskStore, depth: int) -> None:
    """Values nested up to max_variable_depth (arrays and objects both count) are accepted."""
    record = store.create(OWNER)
    assert store.set_variables(record.task_id, OWNER, {"v": _nested(depth)}).variables[
        "v"
    ] == _nested(depth)


@pytest.mark.parametrize("value", [_nested(11), [[[[[[[[[[[1]]]]]]]]]]], {"a": _nested(10)}])
def test_variable_depth_over_limit(store: TaskStore, value: Any) -> None:
    """One level deeper than max_variable_depth is InvalidParamsError and writes nothing."""
    record = store.create(OWNER)
    with pytest.raises(InvalidParamsError):
        store.set_variables(record.task_id, OWNER, {"v": value})
    assert store.get(record.task_id, OWNER).version == 1


def test_variable_string_limit_counts_utf8_bytes(store: TaskStore) -> None:
    """A string of exactly 64 KiB of UTF-8 is accepted; one more byte is refused."""
    record = store.create(OWNER)
    exact = "é" * 32_768  # 2 bytes each: 65,536 bytes
    store.set_variables(record.task_id, OWNER, {"s": exact, "ascii": "a" * 65_536})
    for too_long in ("é" * 32_768 + "a", "a" * 65_537, "日" * 21_846):
        with pytest.raises(InvalidParamsError):
            store.set_variables(record.task_id, OWNER, {"t": too_long})
    with pytest.raises(InvalidParamsError):
        store.set_variables(record.task_id, OWNER, {"deep": {"inner": ["ok", "é" * 32_769]}})
    assert store.get(record.task_id, OWNER).version == 2


def test_variables_total_size_boundary(make_store: MakeStore) -> None:
    """The merged map may take exactly max_variable_bytes as compact JSON; one more byte fails."""
    store = make_store(max_variable_bytes=100)
    record = store.create(OWNER)
    # {"a":"…"} is 8 bytes of JSON around the string.
    store.set_variables(record.task_id, OWNER, {"a": "x" * 92})
    with pytest.raises(VariablesTooLargeError) as info:
        store.set_variables(record.task_id, OWNER, {"a": "x" * 93})
    assert info.value.code == -32602 and "100" in str(info.value)
    with pytest.raises(VariablesTooLargeError):
        store.set_variables(record.task_id, OWNER, {"b": 1})
    assert store.set_variables(record.task_id, OWNER, {"a": None, "b": 1}).variables == {"b": 1}


@pytest.mark.parametrize(
    "bad",
    [
        {"": 1},
        {"n": math.nan},
        {"n": math.inf},
        {"n": [1, -math.inf]},
        {"s": {1, 2}},
        {"o": {2: "x"}},
        {"b": b"bytes"},
        {"s": "\ud800"},
    ],
    ids=["empty-key", "nan", "inf", "nested-inf", "set", "int-key", "bytes", "surrogate"],
)
def test_bad_variables_rejected_and_nothing_written(store: TaskStore, bad: dict[Any, Any]) -> None:
    """Invalid names or values raise InvalidParamsError and leave the task untouched."""
    record = store.create(OWNER)
    store.set_variables(record.task_id, OWNER, {"keep": 1})
    with pytest.raises(InvalidParamsError):
        store.set_variables(record.task_id, OWNER, {"ok": 2, **bad})
    after = store.get(record.task_id, OWNER)
    assert (after.variables, after.version) == ({"keep": 1}, 2)


def test_variables_must_be_a_mapping(store: TaskStore) -> None:
    """set_variables with a non-object is InvalidParamsError."""
    record = store.create(OWNER)
    with pytest.raises(InvalidParamsError):
        store.set_variables(record.task_id, OWNER, [("a", 1)])  # type: ignore[arg-type]


# -- listing --------------------------------------------------------------------------------


def test_list_newest_first_and_paginates(store: TaskStore, clock: ManualClock) -> None:
    """Pages run newest first, each task once, and the last page has no cursor."""
    created = []
    for i in range(7):
        created.append(store.create(OWNER).task_id)
        if i % 2:
            clock.advance(1)
    expected = [
        r.task_id
        for r in sorted(
            (store.get(t, OWNER) for t in created),
            key=lambda r: (r.created_at_ms, r.task_id),
            reverse=True,
        )
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list(OWNER, cursor, limit=3)
        pages += 1
        seen.extend(r.task_id for r in page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3


def test_list_exact_page_has_no_cursor(store: TaskStore) -> None:
    """When the tasks fill the page exactly, next_cursor is None."""
    for _ in range(3):
        store.create(OWNER)
    page = store.list(OWNER, limit=3)
    assert len(page.tasks) == 3 and page.next_cursor is None


def test_list_default_page_size(make_store: MakeStore) -> None:
    """Without a limit, list returns list_page_size tasks."""
    store = make_store(list_page_size=4)
    for _ in range(5):
        store.create(OWNER)
    page = store.list(OWNER)
    assert len(page.tasks) == 4 and page.next_cursor is not None


@pytest.mark.parametrize("limit", [0, -1, 1001, 2.0, True, "5"])
def test_list_bad_limit(store: TaskStore, limit: Any) -> None:
    """A limit outside 1..max_list_page_size is InvalidParamsError."""
    with pytest.raises(InvalidParamsError):
        store.list(OWNER, limit=limit)


@pytest.mark.parametrize(
    "cursor", ["", "garbage", "!!!!", "W10", "WzEsMiwieCJd", "eyJhIjoxfQ", 12, "A" * 5000]
)
def test_list_malformed_cursor(store: TaskStore, cursor: Any) -> None:
    """Malformed cursors raise InvalidCursorError (-32602), never restart the list."""
    store.create(OWNER)
    with pytest.raises(InvalidCursorError) as info:
        store.list(OWNER, cursor)
    assert info.value.code == -32602


def test_list_foreign_cursor(store: TaskStore) -> None:
    """A cursor issued to one owner is InvalidCursorError for another."""
    for owner in (OWNER, "bob"):
        for _ in range(3):
            store.create(owner)
    cursor = store.list(OWNER, limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursorError):
        store.list("bob", cursor)
    assert len(store.list(OWNER, cursor).tasks) == 2


def test_list_stale_cursor(store: TaskStore, clock: ManualClock) -> None:
    """A cursor whose last task has expired raises InvalidCursorError instead of restarting."""
    store.create(OWNER, ttl_ms=60_000)
    clock.advance(1)
    store.create(OWNER, ttl_ms=1_000)
    clock.advance(1)
    store.create(OWNER, ttl_ms=60_000)
    page = store.list(OWNER, limit=2)
    assert page.next_cursor is not None
    clock.advance(1_000)
    with pytest.raises(InvalidCursorError):
        store.list(OWNER, page.next_cursor)


def test_every_gettable_task_is_listed(store: TaskStore, clock: ManualClock) -> None:
    """Every task get can see appears in list for that owner, whatever its status."""
    ids = set()
    for i in range(6):
        record = store.create(OWNER)
        ids.add(record.task_id)
        if i % 3 == 0:
            store.complete(record.task_id, OWNER, i)
        elif i % 3 == 1:
            store.cancel(record.task_id, OWNER)
    assert {r.task_id for r in store.list(OWNER, limit=100).tasks} == ids


# -- waiting and events ---------------------------------------------------------------------


class _BackendWaits:
    """Counts the store's calls of ``backend.wait_for_change`` (from one waiting thread) and
    signals when the first one starts."""

    def __init__(self, store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.entered = threading.Event()
        original = store.backend.wait_for_change

        def counting(key: tuple[str, str], version: int, timeout_s: float) -> None:
            self.calls += 1
            self.entered.set()
            original(key, version, timeout_s)

        monkeypatch.setattr(store.backend, "wait_for_change", counting)


def test_wait_returns_terminal_task_at_once(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait on a finished task returns it without ever waiting in the backend."""
    record = store.create(OWNER)
    store.complete(record.task_id, OWNER, 1)
    waits = _BackendWaits(store, monkeypatch)
    assert store.wait(record.task_id, OWNER, timeout=0).status is TaskStatus.COMPLETED
    assert store.wait(record.task_id, OWNER, timeout=30).status is TaskStatus.COMPLETED
    assert waits.calls == 0


def test_wait_wakes_when_another_thread_finishes(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter blocks in the backend while the task works and returns the terminal record once
    another thread completes it, woken by that write: long before the 30 s poll interval or
    its 20 s timeout could end the wait, and without re-reading in a busy loop."""
    store = make_store(poll_interval_ms=30_000)
    record = store.create(OWNER)
    waits = _BackendWaits(store, monkeypatch)

    def finish() -> None:
        if waits.entered.wait(10):
            time.sleep(0.2)  # lets the waiter block; no outcome depends on this sleep
        store.complete(record.task_id, OWNER, {"done": 1})

    worker = threading.Thread(target=finish)
    started = time.monotonic()
    worker.start()
    try:
        done = store.wait(record.task_id, OWNER, timeout=20)
        elapsed = time.monotonic() - started
    finally:
        worker.join(30)
    assert done.status is TaskStatus.COMPLETED
    assert elapsed < 10.0, f"woke only after {elapsed:.2f}s"
    assert 1 <= waits.calls <= 10, f"{waits.calls} backend waits: busy waiting"


def test_wait_blocks_until_its_timeout(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """wait on a task that stays working raises TimeoutError no earlier than its timeout, having
    slept in the backend meanwhile (a few waits, not a busy loop of re-reads)."""
    record = store.create(OWNER)
    waits = _BackendWaits(store, monkeypatch)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        store.wait(record.task_id, OWNER, timeout=0.3)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.3 - 1e-3, f"gave up after {elapsed:.3f}s"
    assert elapsed < 10.0, f"hung for {elapsed:.2f}s"
    assert 1 <= waits.calls <= 10, f"{waits.calls} backend waits in 0.3 s: busy waiting"


def test_subscribe_receives_status_changes(store: TaskStore) -> None:
    """Subscribers get the wire dict of every status change, filtered by owner if asked."""
    everything: list[dict[str, Any]] = []
    only_bob: list[dict[str, Any]] = []
    store.subscribe(everything.append)
    unsubscribe_bob = store.subscribe(only_bob.append, owner="bob")
    a = store.create(OWNER)
    store.set_variables(a.task_id, OWNER, {"x": 1})  # not a status change
    store.set_message(a.task_id, OWNER, "50%")  # not a status change
    store.update_status(a.task_id, OWNER, "input_required", "?")
    store.complete(a.task_id, OWNER, None)
    b = store.create("bob")
    store.cancel(b.task_id, "bob")
    _eventually(lambda: len(everything) == 3 and len(only_bob) == 1)
    assert [e["status"] for e in everything if e["taskId"] == a.task_id] == [
        "input_required",
        "completed",
    ]
    assert only_bob[0]["taskId"] == b.task_id and only_bob[0]["status"] == "cancelled"
    assert next(e for e in everything if e["taskId"] == a.task_id) == {
        "taskId": a.task_id,
        "status": "input_required",
        "statusMessage": "?",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastUpdatedAt": "2026-01-01T00:00:00.000Z",
        "ttl": 3_600_000,
        "pollInterval": 1_000,
    }
    unsubscribe_bob()
    c = store.create("bob")
    store.cancel(c.task_id, "bob")
    # A later marker of the same owner (events of one owner arrive in order): once it has
    # arrived, c's event has been dispatched to every subscriber there is.
    marker = store.create("bob")
    store.cancel(marker.task_id, "bob")
    _eventually(lambda: len(everything) == 5)
    assert [e["taskId"] for e in everything[3:]] == [c.task_id, marker.task_id]
    assert [e["taskId"] for e in only_bob] == [b.task_id]


def test_failing_subscriber_never_breaks_the_store(store: TaskStore) -> None:
    """A subscriber that raises is logged; the write succeeds and others still hear it."""
    heard: list[dict[str, Any]] = []

    def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(broken)
    store.subscribe(heard.append)
    record = store.create(OWNER)
    assert store.complete(record.task_id, OWNER, 1).status is TaskStatus.COMPLETED
    _eventually(lambda: len(heard) == 1)


def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for an asynchronous effect such as a pub/sub delivery."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_update_variables_read_modify_write(store: TaskStore) -> None:
    """update_variables merges what the callback returns from the current record; None
    writes nothing."""
    record = store.create(OWNER)
    store.set_variables(record.task_id, OWNER, {"count": 1})
    updated = store.update_variables(
        record.task_id, OWNER, lambda r: {"count": r.variables["count"] + 1, "seen": True}
    )
    assert updated.variables == {"count": 2, "seen": True} and updated.version == 3
    unchanged = store.update_variables(record.task_id, OWNER, lambda r: None)
    assert unchanged.version == 3
    with pytest.raises(InvalidParamsError):
        store.update_variables(record.task_id, OWNER, lambda r: {"bad": math.nan})
    assert store.get(record.task_id, OWNER).version == 3


def test_task_ids_differ_across_fork() -> None:
    """A forked child never repeats the task ids its parent would generate next."""
    import os
    import warnings

    from taskstore.store import _new_task_id

    _new_task_id()  # the parent now holds a random batch
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        os.write(write, _new_task_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child_id != _new_task_id()
