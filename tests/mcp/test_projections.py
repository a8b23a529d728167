"""One stored record, two wire views (DESIGN §9c "One record, two projections"): the MCP
2025-11-25 projection (``LEGACY``) and the 2026-07-28 tasks extension's (``MODERN``), for a
task in every status, with exact key sets and field rules of each era."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import taskstore
from taskstore import ManualClock, TaskStatus, TaskStore
from taskstore.errors import OutcomeError, ProtocolError
from taskstore.mcp.projections import LEGACY, MODERN
from taskstore.record import Outcome, TaskRecord
from taskstore.testing import T0

OWNER = "alice"
CREATED = "2026-01-01T00:00:00.000Z"
UPDATED = "2026-01-01T00:00:01.000Z"
RELATED = "io.modelcontextprotocol/related-task"
IMMEDIATE = "io.modelcontextprotocol/model-immediate-response"

#: Keys the 2025-11-25 wire never carries, anywhere.
LEGACY_FORBIDDEN = {"ttlMs", "pollIntervalMs", "resultType", "inputRequests"}
#: Keys the 2026-07-28 wire never carries at the top level of a task result.
MODERN_FORBIDDEN = {"ttl", "pollInterval", "requestState", "task"}

ASK_NAME = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Name?",
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
    },
}
ASK_CONFIRM = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Sure?",
        "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    },
}
OK_RESULT = {
    "content": [{"type": "text", "text": "all good"}],
    "structuredContent": {"n": 1},
    "isError": False,
}
TOOL_ERROR = {"content": [{"type": "text", "text": "bad input"}], "isError": True}
LEGACY_TOOL_ERROR = {
    "content": [{"type": "text", "text": "disk"}, {"type": "text", "text": "full"}],
    "isError": True,
}
RPC_ERROR = {"code": -32000, "message": "rate limited", "data": {"retryAfter": 5}}

#: The statuses a stored record is driven to (see :func:`drive`).
STATES = [
    "working",
    "input_required",
    "completed",
    "completed_is_error",
    "failed_error",
    "failed_is_error",
    "cancelled",
]


@pytest.fixture
def pclock() -> ManualClock:
    """A manual clock at the suite's base time."""
    return ManualClock(T0)


@pytest.fixture
def pstore(pclock: ManualClock) -> Iterator[TaskStore]:
    """An in-memory store with the default ttl and poll interval."""
    store = taskstore.open("memory://", clock=pclock)
    yield store
    store.close()


def drive(store: TaskStore, clock: ManualClock, state: str) -> tuple[TaskRecord, Outcome | None]:
    """A task created at ``CREATED`` and moved to ``state`` one second later: the stored
    record (as ``get`` reads it) and its stored outcome (``None`` without one)."""
    task_id = store.create(OWNER).task_id
    clock.advance(1_000)
    if state == "input_required":
        store.request_input(task_id, OWNER, [ASK_NAME, ASK_CONFIRM], "Two questions")
    elif state == "completed":
        store.complete(task_id, OWNER, OK_RESULT)
    elif state == "completed_is_error":  # how a 2026-07-28 request settles an isError result
        store.complete(task_id, OWNER, TOOL_ERROR)
    elif state == "failed_error":
        store.fail(task_id, OWNER, error=RPC_ERROR)
    elif state == "failed_is_error":  # how a 2025-11-25 request settles an isError result
        store.fail(task_id, OWNER, result=LEGACY_TOOL_ERROR, message="disk full")
    elif state == "cancelled":
        store.cancel(task_id, OWNER, "The task was cancelled by request.")
    record = store.get(task_id, OWNER)
    outcome = store.get_result(task_id, OWNER) if state in _WITH_OUTCOME else None
    return record, outcome


_WITH_OUTCOME = {"completed", "completed_is_error", "failed_error", "failed_is_error"}

#: status, statusMessage (None: absent) of each state.
_STATUS = {
    "working": ("working", None),
    "input_required": ("input_required", "Two questions"),
    "completed": ("completed", None),
    "completed_is_error": ("completed", None),
    "failed_error": ("failed", "rate limited"),
    "failed_is_error": ("failed", "disk full"),
    "cancelled": ("cancelled", "The task was cancelled by request."),
}


def legacy_task(record: TaskRecord, state: str) -> dict[str, Any]:
    """The exact flat 2025-11-25 Task of a driven record."""
    status, message = _STATUS[state]
    task: dict[str, Any] = {
        "taskId": record.task_id,
        "status": status,
        "createdAt": CREATED,
        "lastUpdatedAt": CREATED if state == "working" else UPDATED,
        "ttl": 3_600_000,
        "pollInterval": 1_000,
    }
    if message is not None:
        task["statusMessage"] = message
    return task


def modern_task(record: TaskRecord, state: str) -> dict[str, Any]:
    """The exact 2026-07-28 task fields of a driven record (without ``resultType``)."""
    status, message = _STATUS[state]
    task: dict[str, Any] = {
        "taskId": record.task_id,
        "status": status,
        "createdAt": CREATED,
        "lastUpdatedAt": CREATED if state == "working" else UPDATED,
        "ttlMs": 3_600_000,
        "pollIntervalMs": 1_000,
    }
    if message is not None:
        task["statusMessage"] = message
    return task


def all_keys(value: Any) -> set[str]:
    """Every object key anywhere inside ``value``."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def assert_modern_fields(view: dict[str, Any]) -> None:
    """The tasks extension's field rules: no 2025 names, no related-task meta, no ``null``
    but ``ttlMs``."""
    assert not MODERN_FORBIDDEN & set(view), view
    assert RELATED not in all_keys(view), view
    assert [k for k, v in view.items() if v is None and k != "ttlMs"] == [], view
    assert "ttlMs" in view


# -- 2025-11-25 ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_legacy_task_views_are_the_flat_task(
    pstore: TaskStore, pclock: ManualClock, state: str
) -> None:
    """LEGACY.task, .cancelled and .status_notification of a record in every status are the
    exact flat Task (wrapped in the notification), never with a 2026 key."""
    record, _ = drive(pstore, pclock, state)
    expected = legacy_task(record, state)
    assert LEGACY.task(record) == expected
    assert LEGACY.cancelled(record) == expected
    assert LEGACY.status_notification(record) == {
        "jsonrpc": "2.0",
        "method": "notifications/tasks/status",
        "params": expected,
    }
    for view in (LEGACY.task(record), LEGACY.status_notification(record)):
        assert not LEGACY_FORBIDDEN & all_keys(view)


def test_legacy_created_wraps_the_task(pstore: TaskStore, pclock: ManualClock) -> None:
    """LEGACY.created is ``{"task": Task}``, plus the immediate-response ``_meta`` only when
    given."""
    record, _ = drive(pstore, pclock, "working")
    assert LEGACY.created(record) == {"task": legacy_task(record, "working")}
    assert LEGACY.created(record, immediate_response="Working on it") == {
        "task": legacy_task(record, "working"),
        "_meta": {IMMEDIATE: "Working on it"},
    }
    assert not LEGACY_FORBIDDEN & all_keys(LEGACY.created(record, immediate_response="x"))


def test_legacy_listed_pages_flat_tasks(pstore: TaskStore, pclock: ManualClock) -> None:
    """LEGACY.listed is ``{"tasks": [Task...]}`` with ``nextCursor`` only when there is one."""
    records = [drive(pstore, pclock, state)[0] for state in STATES]
    tasks = [LEGACY.task(record) for record in records]
    assert LEGACY.listed(records, None) == {"tasks": tasks}
    assert LEGACY.listed(records, "cursor-1") == {"tasks": tasks, "nextCursor": "cursor-1"}
    assert LEGACY.listed([], None) == {"tasks": []}
    assert not LEGACY_FORBIDDEN & all_keys(LEGACY.listed(records, "c"))


@pytest.mark.parametrize(
    ("state", "stored"),
    [
        ("completed", OK_RESULT),
        ("completed_is_error", TOOL_ERROR),
        ("failed_is_error", LEGACY_TOOL_ERROR),
    ],
)
def test_legacy_payload_is_the_stored_result_with_related_task_meta(
    pstore: TaskStore, pclock: ManualClock, state: str, stored: dict[str, Any]
) -> None:
    """LEGACY.payload of a result outcome (isError ones included) is the stored result with
    only related-task ``_meta`` added."""
    record, outcome = drive(pstore, pclock, state)
    assert outcome is not None
    assert LEGACY.payload(record, outcome) == {
        **stored,
        "_meta": {RELATED: {"taskId": record.task_id}},
    }
    assert not LEGACY_FORBIDDEN & all_keys(LEGACY.payload(record, outcome))


def test_legacy_payload_of_an_error_outcome_raises_the_stored_error(
    pstore: TaskStore, pclock: ManualClock
) -> None:
    """LEGACY.payload of a JSON-RPC error outcome raises OutcomeError carrying the stored code,
    message and data verbatim."""
    record, outcome = drive(pstore, pclock, "failed_error")
    assert outcome is not None
    with pytest.raises(OutcomeError) as raised:
        LEGACY.payload(record, outcome)
    assert raised.value.code == -32000
    assert raised.value.error == RPC_ERROR
    assert raised.value.to_jsonrpc() == RPC_ERROR


# -- 2026-07-28 ------------------------------------------------------------------------------


_MODERN_EXTRA = {
    "working": {},
    "input_required": {"inputRequests": {"input-1": ASK_NAME, "input-2": ASK_CONFIRM}},
    "completed": {"result": OK_RESULT},
    "completed_is_error": {"result": TOOL_ERROR},
    "failed_error": {"error": RPC_ERROR},
    "failed_is_error": {"error": {"code": -32603, "message": "disk full"}},
    "cancelled": {},
}


@pytest.mark.parametrize("state", STATES)
def test_modern_detail_carries_exactly_the_status_payload(
    pstore: TaskStore, pclock: ManualClock, state: str
) -> None:
    """MODERN.detail is the task flat with ``resultType: "complete"`` plus exactly: result
    (completed, isError included), error (failed; a legacy isError failure as an error object
    with code and message), every outstanding inputRequests (input_required), nothing
    (working, cancelled)."""
    record, outcome = drive(pstore, pclock, state)
    detail = MODERN.detail(record, outcome, record.input_requests)
    assert detail == {
        "resultType": "complete",
        **modern_task(record, state),
        **_MODERN_EXTRA[state],
    }
    assert_modern_fields(detail)
    if state in ("working", "cancelled"):
        assert MODERN.task(record) == detail


def test_modern_detail_lists_only_outstanding_requests(
    pstore: TaskStore, pclock: ManualClock
) -> None:
    """After one of two requests is answered, MODERN.detail lists only the other one; once
    both are answered the task is working with no inputRequests."""
    record, _ = drive(pstore, pclock, "input_required")
    answer = {"action": "accept", "content": {"name": "Ada"}}
    partial = pstore.answer_input(record.task_id, OWNER, {"input-1": answer})
    assert MODERN.detail(partial, None, partial.input_requests) == {
        "resultType": "complete",
        **modern_task(record, "input_required"),
        "inputRequests": {"input-2": ASK_CONFIRM},
    }
    done = pstore.answer_input(record.task_id, OWNER, {"input-2": {"action": "decline"}})
    assert MODERN.detail(done, None, done.input_requests) == {
        "resultType": "complete",
        **modern_task(record, "working"),
        "lastUpdatedAt": UPDATED,
    }


@pytest.mark.parametrize("state", STATES)
def test_modern_created_and_cancelled_shapes(
    pstore: TaskStore, pclock: ManualClock, state: str
) -> None:
    """MODERN.created is the task flat with ``resultType: "task"`` and no nested ``task`` (the
    immediate-response hint is dropped); MODERN.cancelled is the bare acknowledgement."""
    record, _ = drive(pstore, pclock, state)
    created = MODERN.created(record, immediate_response="Working on it")
    assert created == {"resultType": "task", **modern_task(record, state)}
    assert MODERN.created(record) == created
    assert_modern_fields(created)
    assert MODERN.cancelled(record) == {"resultType": "complete"}


def test_modern_has_no_list_or_result(pstore: TaskStore, pclock: ManualClock) -> None:
    """MODERN.listed and MODERN.payload raise ProtocolError -32601 (no tasks/list or
    tasks/result in the extension)."""
    record, outcome = drive(pstore, pclock, "completed")
    assert outcome is not None
    with pytest.raises(ProtocolError) as listed:
        MODERN.listed([record], None)
    assert listed.value.code == -32601
    with pytest.raises(ProtocolError) as payload:
        MODERN.payload(record, outcome)
    assert payload.value.code == -32601
    assert MODERN.status_notification(record) is None


def test_unlimited_ttl_and_no_poll_interval_in_both_eras() -> None:
    """With ``ttl`` unlimited and no poll interval, the legacy Task has ``ttl: null`` and no
    ``pollInterval``; the modern views have ``ttlMs: null`` and no ``pollIntervalMs``."""
    with taskstore.open(
        "memory://", clock=ManualClock(T0), default_ttl_ms=None, poll_interval_ms=None
    ) as store:
        record = store.create(OWNER)
    base = {
        "taskId": record.task_id,
        "status": "working",
        "createdAt": CREATED,
        "lastUpdatedAt": CREATED,
    }
    assert LEGACY.task(record) == {**base, "ttl": None}
    assert LEGACY.created(record) == {"task": {**base, "ttl": None}}
    detail = MODERN.detail(record, None, record.input_requests)
    assert detail == {"resultType": "complete", **base, "ttlMs": None}
    assert MODERN.created(record) == {"resultType": "task", **base, "ttlMs": None}
    assert_modern_fields(detail)


def test_both_views_read_one_record(pstore: TaskStore, pclock: ManualClock) -> None:
    """The same stored record gives both eras' views side by side: the same task id, status,
    stamps and lifetime under each era's field names, and the era's own outcome shape."""
    record, outcome = drive(pstore, pclock, "failed_is_error")
    assert outcome is not None
    legacy = LEGACY.task(record)
    modern = MODERN.detail(record, outcome, record.input_requests)
    renamed = {"ttl": "ttlMs", "pollInterval": "pollIntervalMs"}
    assert {renamed.get(k, k): v for k, v in legacy.items()} == {
        k: v for k, v in modern.items() if k not in ("resultType", "error")
    }
    assert LEGACY.payload(record, outcome)["isError"] is True
    assert modern["error"] == {"code": -32603, "message": "disk full"}
    assert record.status is TaskStatus.FAILED
