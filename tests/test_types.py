"""Wire conformance of every type against MCP 2025-11-25 (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from taskstore import (
    CancelTaskParams,
    CreateTaskResult,
    GetTaskParams,
    GetTaskPayloadParams,
    InvalidParamsError,
    ListTasksParams,
    ListTasksResult,
    RelatedTaskMetadata,
    Task,
    TaskMetadata,
    TaskStatus,
    ToolExecution,
)
from taskstore.clock import format_timestamp, parse_timestamp
from taskstore.types import decode, encode, server_tasks_capability, to_builtins

TASK_KEYS = {"taskId", "status", "createdAt", "lastUpdatedAt", "ttl"}


def _task(**overrides: Any) -> Task:
    fields: dict[str, Any] = {
        "task_id": "t-1",
        "status": TaskStatus.WORKING,
        "created_at": "2026-02-24T10:30:00.123Z",
        "last_updated_at": "2026-02-24T10:30:00.123Z",
        "ttl": 60_000,
    }
    fields.update(overrides)
    return Task(**fields)


def test_task_minimal_keys() -> None:
    """A task without optional fields has exactly the five required keys."""
    assert set(to_builtins(_task())) == TASK_KEYS


def test_task_ttl_null_is_present() -> None:
    """ttl is always present: null for unlimited, never omitted."""
    wire = to_builtins(_task(ttl=None))
    assert "ttl" in wire and wire["ttl"] is None
    assert b'"ttl":null' in encode(_task(ttl=None))


def test_task_all_keys_camel_case() -> None:
    """Every optional field uses its spec name, `_meta` included."""
    wire = to_builtins(
        _task(status_message="half way", poll_interval=500, meta={"k": 1}, status="input_required")
    )
    assert set(wire) == TASK_KEYS | {"statusMessage", "pollInterval", "_meta"}
    assert wire["status"] == "input_required"
    assert wire["pollInterval"] == 500 and isinstance(wire["pollInterval"], int)


def test_integers_stay_integers() -> None:
    """ttl and pollInterval encode as JSON integers, never floats."""
    raw = encode(_task(ttl=60000, poll_interval=1000))
    assert b'"ttl":60000' in raw and b'"pollInterval":1000' in raw


def test_create_task_result_is_wrapped() -> None:
    """CreateTaskResult wraps the task under `task`."""
    wire = to_builtins(CreateTaskResult(task=_task()))
    assert set(wire) == {"task"}
    assert set(wire["task"]) == TASK_KEYS
    with_meta = to_builtins(CreateTaskResult(task=_task(), meta={"x": 1}))
    assert set(with_meta) == {"task", "_meta"}


def test_list_result_shape() -> None:
    """tasks/list gives {tasks, nextCursor?}."""
    assert set(to_builtins(ListTasksResult(tasks=[_task()]))) == {"tasks"}
    wire = to_builtins(ListTasksResult(tasks=[], next_cursor="abc"))
    assert wire == {"tasks": [], "nextCursor": "abc"}


def test_request_params_decode_and_ignore_unknown_keys() -> None:
    """Inbound params decode from their spec names; unknown keys are ignored."""
    assert decode({"taskId": "a", "zzz": 1}, GetTaskParams).task_id == "a"
    assert decode(b'{"taskId":"b"}', GetTaskPayloadParams).task_id == "b"
    assert decode({}, ListTasksParams).cursor is None
    assert decode({"cursor": "c"}, ListTasksParams).cursor == "c"
    assert decode({"ttl": 5}, TaskMetadata).ttl == 5
    assert to_builtins(RelatedTaskMetadata(task_id="x")) == {"taskId": "x"}


def test_cancel_params_result_extension() -> None:
    """tasks/cancel's `result` extension tells absent from null."""
    assert not decode({"taskId": "a"}, CancelTaskParams).has_result
    present = decode({"taskId": "a", "result": None}, CancelTaskParams)
    assert present.has_result and present.result is None


@pytest.mark.parametrize(
    "bad",
    [{}, {"taskId": 1}, {"taskId": None}, [], "x", {"taskId": ["a"]}],
    ids=repr,
)
def test_bad_params_raise_invalid_params(bad: Any) -> None:
    """Malformed params are InvalidParamsError (-32602), never another exception."""
    with pytest.raises(InvalidParamsError):
        decode(bad, GetTaskParams)


def test_tool_execution_and_capability() -> None:
    """execution.taskSupport and the server tasks capability use the spec's shape."""
    assert to_builtins(ToolExecution(task_support="optional")) == {"taskSupport": "optional"}
    assert server_tasks_capability() == {
        "list": {},
        "cancel": {},
        "requests": {"tools": {"call": {}}},
    }
    assert "list" not in server_tasks_capability(list_supported=False)


def test_timestamp_format() -> None:
    """Timestamps are ISO-8601 UTC, milliseconds, `Z`."""
    assert format_timestamp(1771929000123) == "2026-02-24T10:30:00.123Z"
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_timestamp_round_trip(ms: int) -> None:
    """format_timestamp and parse_timestamp are inverse for every representable instant."""
    assert parse_timestamp(format_timestamp(ms)) == ms


_statuses = st.sampled_from(list(TaskStatus))
_opt_text = st.none() | st.text(max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
_tasks = st.builds(
    Task,
    task_id=st.text(min_size=1, max_size=40),
    status=_statuses,
    created_at=st.text(max_size=30),
    last_updated_at=st.text(max_size=30),
    ttl=st.none() | st.integers(min_value=0, max_value=2**53),
    status_message=_opt_text,
    poll_interval=st.none() | st.integers(min_value=1, max_value=2**31),
    meta=st.none() | st.dictionaries(st.text(max_size=5), _json, max_size=3),
)


@given(_tasks)
def test_task_round_trip(task: Task) -> None:
    """Any Task survives encode → decode unchanged, and None fields other than ttl vanish."""
    raw = encode(task)
    assert decode(raw, Task) == task
    wire = msgspec.json.decode(raw)
    assert "ttl" in wire
    for name, key in (
        ("status_message", "statusMessage"),
        ("poll_interval", "pollInterval"),
        ("meta", "_meta"),
    ):
        assert (key in wire) == (getattr(task, name) is not None)


_DECODED_TYPES = (Task, GetTaskParams, ListTasksParams, CancelTaskParams, CreateTaskResult)


def _assert_invalid_params(exc: InvalidParamsError) -> None:
    assert exc.code == -32602
    assert str(exc).startswith("Invalid params: "), exc
    assert isinstance(exc.__cause__, (msgspec.ValidationError, msgspec.DecodeError))


@example(encode(_task()))
@example(b'{"taskId":"t","_meta":{"k":[1]}}')
@example(b'{"task":' + encode(_task()) + b"}")
@example(b"")
@example(b"[]")
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decoder_fuzz_raises_only_typed_errors(data: bytes) -> None:
    """Arbitrary bytes either decode into the type, which then survives a round trip, or raise
    InvalidParamsError (-32602) with the decoding error chained; nothing else escapes."""
    for cls in _DECODED_TYPES:
        try:
            decoded = decode(data, cls)
        except InvalidParamsError as exc:
            _assert_invalid_params(exc)
        else:
            assert type(decoded) is cls
            assert decode(encode(decoded), cls) == decoded


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@given(
    st.dictionaries(
        st.sampled_from(["taskId", "cursor", "result", "ttl", "_meta", "x"]), _json, max_size=5
    )
)
def test_dict_fuzz_converts_exactly_the_valid_params(data: dict[str, Any]) -> None:
    """A JSON object converts exactly when its known fields have their declared types (unknown
    keys are ignored), carrying those values over; otherwise it raises InvalidParamsError."""
    meta_ok = data.get("_meta") is None or isinstance(data["_meta"], dict)
    cursor_ok = data.get("cursor") is None or isinstance(data["cursor"], str)
    task_id_ok = isinstance(data.get("taskId"), str)
    ttl_ok = data.get("ttl") is None or _is_int(data["ttl"])
    cases: list[tuple[type[Any], bool, Callable[[Any], None]]] = [
        (GetTaskParams, task_id_ok and meta_ok, lambda p: _same(p.task_id, data["taskId"])),
        (ListTasksParams, cursor_ok and meta_ok, lambda p: _same(p.cursor, data.get("cursor"))),
        (
            CancelTaskParams,
            task_id_ok and meta_ok,
            lambda p: _same(
                (p.task_id, p.has_result, p.result if p.has_result else None),
                (data["taskId"], "result" in data, data.get("result")),
            ),
        ),
        (TaskMetadata, ttl_ok, lambda p: _same(p.ttl, data.get("ttl"))),
    ]
    for cls, valid, carries_values in cases:
        try:
            converted = decode(data, cls)
        except InvalidParamsError as exc:
            assert not valid, (cls.__name__, data, exc)
            _assert_invalid_params(exc)
        else:
            assert valid, (cls.__name__, data, converted)
            carries_values(converted)


def _same(actual: Any, expected: Any) -> None:
    assert actual == expected, (actual, expected)
