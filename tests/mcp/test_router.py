"""TaskRouter: every tasks/* method, result shapes, error codes (DESIGN §3, §10), blocking and
races."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from taskstore import ManualClock, TaskStore
from taskstore.errors import (
    InvalidCursorError,
    InvalidParamsError,
    InvalidTransitionError,
    TaskCancelledError,
    TaskNotFoundError,
)
from taskstore.mcp import Caller, OutcomeError, ProtocolError, TaskRouter, error_object

TASK_REQUIRED = {"taskId", "status", "createdAt", "lastUpdatedAt", "ttl"}
TASK_OPTIONAL = {"statusMessage", "pollInterval", "_meta"}
RELATED = "io.modelcontextprotocol/related-task"


def assert_task_shape(task: dict[str, Any]) -> None:
    assert TASK_REQUIRED <= set(task) <= TASK_REQUIRED | TASK_OPTIONAL
    assert isinstance(task["ttl"], int) and not isinstance(task["ttl"], bool)
    assert isinstance(task["pollInterval"], int)


@pytest.fixture
def router(mstore: TaskStore) -> TaskRouter:
    """A router over the in-memory store."""
    return TaskRouter(mstore)


class BackendWaits:
    """Counts the store's calls of ``backend.wait_for_change`` (from one waiting thread) and
    signals when the first one starts: the caller is then blocked inside ``store.wait``."""

    def __init__(self, store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.entered = threading.Event()
        original = store.backend.wait_for_change

        def counting(key: tuple[str, str], version: int, timeout_s: float) -> None:
            self.calls += 1
            self.entered.set()
            original(key, version, timeout_s)

        monkeypatch.setattr(store.backend, "wait_for_change", counting)


@pytest.fixture
def backend_waits(mstore: TaskStore, monkeypatch: pytest.MonkeyPatch) -> BackendWaits:
    """The waits of ``mstore``'s backend, counted."""
    return BackendWaits(mstore, monkeypatch)


def test_get_answers_the_flat_task(router: TaskRouter, mstore: TaskStore, alice: Caller) -> None:
    """tasks/get returns the Task fields flat, with exactly the spec's keys."""
    record = mstore.create("alice", ttl_ms=60_000)
    task = router.handle("tasks/get", {"taskId": record.task_id}, alice)
    assert_task_shape(task)
    assert set(task) == TASK_REQUIRED | {"pollInterval"}
    assert task["taskId"] == record.task_id
    assert task["status"] == "working"
    assert task["ttl"] == 60_000
    assert task["pollInterval"] == 20
    assert task["createdAt"].endswith("Z")


@pytest.mark.parametrize("method", ["tasks/get", "tasks/result", "tasks/cancel"])
def test_unknown_foreign_and_expired_ids_are_invalid_params(
    router: TaskRouter,
    mstore: TaskStore,
    mclock: ManualClock,
    alice: Caller,
    bob: Caller,
    method: str,
) -> None:
    """Unknown, another owner's and expired task ids all answer -32602, indistinguishably."""
    record = mstore.create("alice", ttl_ms=1_000)
    with pytest.raises(TaskNotFoundError) as unknown:
        router.handle(method, {"taskId": "nope"}, alice)
    with pytest.raises(TaskNotFoundError) as foreign:
        router.handle(method, {"taskId": record.task_id}, bob)
    mclock.advance(1_001)
    with pytest.raises(TaskNotFoundError) as expired:
        router.handle(method, {"taskId": record.task_id}, alice)
    assert error_object(unknown.value)["code"] == -32602
    assert error_object(foreign.value) == {
        "code": -32602,
        "message": f"Task not found: {record.task_id}",
        "data": {"taskId": record.task_id},
    }
    assert error_object(expired.value) == error_object(foreign.value)


@pytest.mark.parametrize("method", ["tasks/get", "tasks/result", "tasks/cancel"])
@pytest.mark.parametrize("params", [None, {}, {"taskId": 7}, {"taskId": None}, [1]])
def test_malformed_params_are_invalid_params(
    router: TaskRouter, alice: Caller, method: str, params: Any
) -> None:
    """A missing or mistyped taskId (or non-object params) answers -32602."""
    with pytest.raises((InvalidParamsError, ProtocolError)) as caught:
        router.handle(method, params, alice)
    assert error_object(caught.value)["code"] == -32602


def test_unknown_method_is_method_not_found(router: TaskRouter, alice: Caller) -> None:
    """A method the router does not answer is -32601."""
    with pytest.raises(ProtocolError) as caught:
        router.handle("tasks/update", {}, alice)
    assert caught.value.to_jsonrpc() == {
        "code": -32601,
        "message": "Method not found: tasks/update",
    }


def test_result_returns_the_result_with_related_task_meta(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """tasks/result is the stored CallToolResult with related-task _meta merged into its own."""
    record = mstore.create("alice")
    stored = {"content": [{"type": "text", "text": "hi"}], "isError": False, "_meta": {"k": 1}}
    mstore.complete(record.task_id, "alice", stored)
    result = router.handle("tasks/result", {"taskId": record.task_id}, alice)
    assert result == {
        "content": [{"type": "text", "text": "hi"}],
        "isError": False,
        "_meta": {"k": 1, RELATED: {"taskId": record.task_id}},
    }


def test_result_of_a_null_result_is_wrapped(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """A stored null (or other non-object) result comes back as {"result": value} plus meta."""
    record = mstore.create("alice")
    mstore.complete(record.task_id, "alice", None)
    result = router.handle("tasks/result", {"taskId": record.task_id}, alice)
    assert result == {"result": None, "_meta": {RELATED: {"taskId": record.task_id}}}


def test_result_of_an_error_outcome_is_that_error(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """A task that failed with a JSON-RPC error answers tasks/result with the same error."""
    record = mstore.create("alice")
    error = {"code": -32042, "message": "upstream said no", "data": {"why": [1, 2]}}
    mstore.fail(record.task_id, "alice", error=error)
    with pytest.raises(OutcomeError) as caught:
        router.handle("tasks/result", {"taskId": record.task_id}, alice)
    assert error_object(caught.value) == error


def test_result_of_an_is_error_result_is_that_result(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """A task failed with an isError result answers tasks/result with that result."""
    record = mstore.create("alice")
    failed = {"content": [{"type": "text", "text": "bad"}], "isError": True}
    mstore.fail(record.task_id, "alice", result=failed)
    result = router.handle("tasks/result", {"taskId": record.task_id}, alice)
    assert result == {**failed, "_meta": {RELATED: {"taskId": record.task_id}}}


def test_result_of_a_cancelled_task_says_cancelled(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """tasks/result of a cancelled task is -32602 naming the cancel, data {taskId, status}."""
    record = mstore.create("alice")
    mstore.cancel(record.task_id, "alice")
    with pytest.raises(TaskCancelledError) as caught:
        router.handle("tasks/result", {"taskId": record.task_id}, alice)
    error = error_object(caught.value)
    assert error["code"] == -32602
    assert "cancelled" in error["message"]
    assert error["data"] == {"taskId": record.task_id, "status": "cancelled"}


def test_result_blocks_until_another_thread_completes(
    router: TaskRouter, mstore: TaskStore, alice: Caller, backend_waits: BackendWaits
) -> None:
    """tasks/result blocks (sleeping in the backend, not spinning) while the task works and
    answers only after another thread has completed it."""
    record = mstore.create("alice")
    answers: list[dict[str, Any]] = []
    answered_at: list[float] = []

    def fetch() -> None:
        answers.append(router.handle("tasks/result", {"taskId": record.task_id}, alice))
        answered_at.append(time.monotonic())

    thread = threading.Thread(target=fetch)
    thread.start()
    assert backend_waits.entered.wait(10), "tasks/result never waited"
    thread.join(0.2)  # bounded: the answer must not come while the task works
    assert thread.is_alive()
    assert answers == []
    completing_at = time.monotonic()
    mstore.complete(record.task_id, "alice", {"content": []})
    thread.join(10)
    assert not thread.is_alive()
    assert answers == [{"content": [], "_meta": {RELATED: {"taskId": record.task_id}}}]
    assert answered_at[0] >= completing_at, "answered before the task was completed"
    # The 20 ms poll interval grows by half each round: a handful of waits, not thousands.
    assert backend_waits.calls <= 30, f"{backend_waits.calls} backend waits: busy waiting"


def test_blocked_result_is_released_by_a_cancel(
    router: TaskRouter, mstore: TaskStore, alice: Caller, backend_waits: BackendWaits
) -> None:
    """A tasks/result blocked on a working task answers the cancelled error once the task is
    cancelled."""
    record = mstore.create("alice")
    errors: list[dict[str, Any]] = []

    def fetch() -> None:
        try:
            router.handle("tasks/result", {"taskId": record.task_id}, alice)
        except TaskCancelledError as exc:
            errors.append(error_object(exc))

    thread = threading.Thread(target=fetch)
    thread.start()
    assert backend_waits.entered.wait(10), "tasks/result never waited"
    assert errors == []
    router.handle("tasks/cancel", {"taskId": record.task_id}, alice)
    thread.join(10)
    assert not thread.is_alive()
    assert errors == [
        {
            "code": -32602,
            "message": f"Task {record.task_id} was cancelled and has no result",
            "data": {"taskId": record.task_id, "status": "cancelled"},
        }
    ]


def test_result_timeout_is_internal_error(mstore: TaskStore, alice: Caller) -> None:
    """A router with result_timeout answers -32603 once that long has passed with the task
    still running, never sooner."""
    record = mstore.create("alice")
    router = TaskRouter(mstore, result_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ProtocolError) as caught:
        router.handle("tasks/result", {"taskId": record.task_id}, alice)
    elapsed = time.monotonic() - started
    assert caught.value.to_jsonrpc() == {
        "code": -32603,
        "message": "Timed out waiting for the task to finish; call tasks/result again",
    }
    assert elapsed >= 0.2 - 1e-3, f"gave up after {elapsed:.3f}s"


def test_list_pages_newest_first_with_exact_shapes(
    router: TaskRouter, mstore: TaskStore, mclock: ManualClock, alice: Caller, bob: Caller
) -> None:
    """tasks/list pages the caller's tasks newest first: {tasks, nextCursor} then {tasks}."""
    ids = []
    for _ in range(3):
        ids.append(mstore.create("alice").task_id)
        mclock.advance(1)
    bobs = mstore.create("bob").task_id
    first = router.handle("tasks/list", None, alice)
    assert set(first) == {"tasks", "nextCursor"}
    assert [t["taskId"] for t in first["tasks"]] == [ids[2], ids[1]]
    for task in first["tasks"]:
        assert_task_shape(task)
    second = router.handle("tasks/list", {"cursor": first["nextCursor"]}, alice)
    assert set(second) == {"tasks"}
    assert [t["taskId"] for t in second["tasks"]] == [ids[0]]
    assert [t["taskId"] for t in router.handle("tasks/list", {}, bob)["tasks"]] == [bobs]


@pytest.mark.parametrize("cursor", ["garbage", "", 12])
def test_list_bad_cursor_is_invalid_params(router: TaskRouter, alice: Caller, cursor: Any) -> None:
    """A malformed cursor answers -32602 (never a silent restart)."""
    with pytest.raises((InvalidCursorError, InvalidParamsError)) as caught:
        router.handle("tasks/list", {"cursor": cursor}, alice)
    assert error_object(caught.value)["code"] == -32602


def test_list_foreign_cursor_is_invalid_params(
    router: TaskRouter, mstore: TaskStore, alice: Caller, bob: Caller
) -> None:
    """Another owner's cursor answers -32602."""
    for _ in range(3):
        mstore.create("alice")
    cursor = router.handle("tasks/list", {}, alice)["nextCursor"]
    with pytest.raises(InvalidCursorError) as caught:
        router.handle("tasks/list", {"cursor": cursor}, bob)
    assert caught.value.code == -32602


def test_cancel_moves_to_cancelled_before_answering(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """tasks/cancel answers the flat Task already cancelled, and the store agrees."""
    record = mstore.create("alice")
    task = router.handle("tasks/cancel", {"taskId": record.task_id}, alice)
    assert_task_shape(task)
    assert task["status"] == "cancelled"
    assert task["statusMessage"] == "The task was cancelled by request."
    assert mstore.get(record.task_id, "alice").status.value == "cancelled"


@pytest.mark.parametrize("finish", ["complete", "fail", "cancel"])
def test_cancel_of_a_terminal_task_is_invalid_params(
    router: TaskRouter, mstore: TaskStore, alice: Caller, finish: str
) -> None:
    """Cancelling a completed, failed or cancelled task answers -32602 with its status."""
    record = mstore.create("alice")
    status = {"complete": "completed", "fail": "failed", "cancel": "cancelled"}[finish]
    if finish == "complete":
        mstore.complete(record.task_id, "alice", {})
    elif finish == "fail":
        mstore.fail(record.task_id, "alice")
    else:
        mstore.cancel(record.task_id, "alice")
    with pytest.raises(ProtocolError) as caught:
        router.handle("tasks/cancel", {"taskId": record.task_id}, alice)
    assert caught.value.to_jsonrpc() == {
        "code": -32602,
        "message": f"Cannot cancel task {record.task_id}: it is already {status}",
        "data": {"taskId": record.task_id, "status": status},
    }


@pytest.mark.parametrize("value", [{"content": [], "structuredContent": {"x": 1}}, None, 3])
def test_cancel_with_result_completes_the_task(
    router: TaskRouter, mstore: TaskStore, alice: Caller, value: Any
) -> None:
    """tasks/cancel with a result param completes the task with that result (null included)."""
    record = mstore.create("alice")
    task = router.handle("tasks/cancel", {"taskId": record.task_id, "result": value}, alice)
    assert task["status"] == "completed"
    outcome = mstore.get_result(record.task_id, "alice")
    assert (outcome.kind, outcome.result) == ("result", value)


def test_concurrent_cancels_have_exactly_one_winner(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """Eight threads cancelling one task: one gets the cancelled Task, seven get -32602."""
    record = mstore.create("alice")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def cancel() -> None:
        barrier.wait()
        try:
            router.handle("tasks/cancel", {"taskId": record.task_id}, alice)
            verdict = "ok"
        except ProtocolError as exc:
            verdict = str(exc.code)
        with lock:
            outcomes.append(verdict)

    threads = [threading.Thread(target=cancel) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["-32602"] * 7 + ["ok"]


def test_cancel_racing_completion_leaves_one_consistent_outcome(
    router: TaskRouter, mstore: TaskStore, alice: Caller
) -> None:
    """A cancel racing a completion: exactly one wins, the loser gets the error naming the
    winner's status, and the task's status matches the winner."""
    for _ in range(20):
        record = mstore.create("alice")
        barrier = threading.Barrier(2)
        wins: list[str] = []
        losses: list[Any] = []

        def cancel() -> None:
            barrier.wait()
            try:
                router.handle("tasks/cancel", {"taskId": record.task_id}, alice)
                wins.append("cancelled")
            except ProtocolError as exc:
                losses.append(exc.to_jsonrpc())

        def complete() -> None:
            barrier.wait()
            try:
                mstore.complete(record.task_id, "alice", {"content": []})
                wins.append("completed")
            except InvalidTransitionError as exc:
                losses.append(exc.from_status)

        threads = [threading.Thread(target=cancel), threading.Thread(target=complete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(wins) == 1 and len(losses) == 1, (wins, losses)
        if wins == ["cancelled"]:
            assert losses == ["cancelled"]  # complete() refused: the task was cancelled
        else:
            assert losses == [
                {
                    "code": -32602,
                    "message": f"Cannot cancel task {record.task_id}: it is already completed",
                    "data": {"taskId": record.task_id, "status": "completed"},
                }
            ]
        assert mstore.get(record.task_id, "alice").status.value == wins[0]


def test_audit_lines_name_the_owner(
    router: TaskRouter, mstore: TaskStore, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """Result retrieval and cancellation write audit lines with the owner."""
    done = mstore.create("alice")
    mstore.complete(done.task_id, "alice", {"content": []})
    other = mstore.create("alice")
    with caplog.at_level(logging.INFO, logger="taskstore.audit"):
        router.handle("tasks/result", {"taskId": done.task_id}, alice)
        router.handle("tasks/cancel", {"taskId": other.task_id}, alice)
    lines = [r.getMessage() for r in caplog.records if r.name == "taskstore.audit"]
    assert lines == [
        f"task.result task={done.task_id} owner='alice' status='completed'",
        f"task.cancelled task={other.task_id} owner='alice'",
    ]
