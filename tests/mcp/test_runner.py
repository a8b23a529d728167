"""ToolRunner: taskSupport checks, task creation, outcomes, late results, progress, cancel."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

import taskstore
from support.mcp import ListSender, wait_until
from taskstore import TaskStore
from taskstore.errors import AnonymousAccessError, InvalidParamsError
from taskstore.mcp import Caller, McpServer, ProtocolError, ToolContext
from taskstore.mcp.runner import SHUTDOWN_MESSAGE

RELATED = "io.modelcontextprotocol/related-task"
#: What a client sees of the "crash" tool's RuntimeError (the error-message policy).
GENERIC_CRASH = r"Tool crash failed unexpectedly \(error id [0-9a-f]{16}\)"


def call(server: McpServer, caller: Caller, name: str, arguments: Any = None, **extra: Any) -> Any:
    params: dict[str, Any] = {"name": name, **extra}
    if arguments is not None:
        params["arguments"] = arguments
    return server.runner.call(params, caller)


def finished(server: McpServer, store: TaskStore, task_id: str, owner: str = "alice") -> Any:
    record = store.wait(task_id, owner, timeout=5)
    return record


def test_forbidden_tool_called_as_task_is_method_not_found(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A forbidden tool with a task param answers -32601 and creates no task."""
    with pytest.raises(ProtocolError) as caught:
        call(server, alice, "plain", {}, task={})
    assert caught.value.to_jsonrpc() == {
        "code": -32601,
        "message": "Tool plain does not support task execution",
    }
    assert mstore.list("alice").tasks == []


def test_required_tool_called_without_task_is_method_not_found(
    server: McpServer, alice: Caller
) -> None:
    """A required tool without a task param answers -32601."""
    with pytest.raises(ProtocolError) as caught:
        call(server, alice, "echo_required", {"text": "x"})
    assert caught.value.code == -32601


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "nope"}, "Unknown tool: nope"),
        ({"name": 3}, "Invalid params: name must be a string"),
        ({"name": "echo", "arguments": {}}, "Invalid arguments for tool echo: missing text"),
        (
            {"name": "echo", "arguments": {"text": 1}},
            "Invalid arguments for tool echo: text must be string",
        ),
        ({"name": "echo", "arguments": [1]}, "Invalid params: arguments must be a JSON object"),
        (
            {"name": "echo", "arguments": {"text": "x"}, "task": 5},
            "Invalid params: task must be an object",
        ),
    ],
)
def test_bad_calls_are_invalid_params(
    server: McpServer, alice: Caller, params: dict[str, Any], message: str
) -> None:
    """Unknown tools and malformed arguments answer -32602 naming the problem."""
    with pytest.raises(ProtocolError) as caught:
        server.runner.call(params, alice)
    assert caught.value.to_jsonrpc() == {"code": -32602, "message": message}


@pytest.mark.parametrize("ttl", [-1, 1.5, "60000", True])
def test_bad_ttl_is_invalid_params_and_creates_nothing(
    server: McpServer, mstore: TaskStore, alice: Caller, ttl: Any
) -> None:
    """A negative, fractional, string or boolean ttl answers -32602 and creates no task."""
    with pytest.raises(InvalidParamsError) as caught:
        call(server, alice, "echo", {"text": "x"}, task={"ttl": ttl})
    assert caught.value.code == -32602
    assert mstore.list("alice").tasks == []


def test_task_call_returns_create_task_result_at_once(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A task-augmented call answers {task} at once (working, integer ttl) and completes later."""
    created = call(server, alice, "gated", {}, task={"ttl": 60_000})
    assert set(created) == {"task"}
    task = created["task"]
    assert task["status"] == "working"
    assert task["ttl"] == 60_000 and type(task["ttl"]) is int
    assert type(task["pollInterval"]) is int
    server.release.set()  # type: ignore[attr-defined]
    record = finished(server, mstore, task["taskId"])
    assert record.status.value == "completed"
    outcome = mstore.get_result(task["taskId"], "alice")
    assert outcome.result == {"content": [{"type": "text", "text": "released"}], "isError": False}


def test_ttl_is_clamped_to_the_maximum(server: McpServer, alice: Caller) -> None:
    """A ttl above the store's maximum is clamped, and the task reports the clamped value."""
    created = call(server, alice, "echo", {"text": "x"}, task={"ttl": 10**12})
    assert created["task"]["ttl"] == 86_400_000


def test_default_ttl_when_task_has_none(server: McpServer, alice: Caller) -> None:
    """A task param without ttl gets the store's default ttl."""
    created = call(server, alice, "echo", {"text": "x"}, task={})
    assert created["task"]["ttl"] == 3_600_000


def test_structured_value_becomes_structured_content(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A dict return value becomes structuredContent plus its JSON as text."""
    server.add_tool(lambda a, c: {"n": 1}, name="structured", task_support="optional")
    created = call(server, alice, "structured", {}, task={})
    finished(server, mstore, created["task"]["taskId"])
    assert mstore.get_result(created["task"]["taskId"], "alice").result == {
        "content": [{"type": "text", "text": '{"n":1}'}],
        "isError": False,
        "structuredContent": {"n": 1},
    }


def test_is_error_result_fails_the_task_and_keeps_the_result(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A ToolError (isError result) ends the task failed with that result for tasks/result."""
    created = call(server, alice, "tool_error", {}, task={})
    task_id = created["task"]["taskId"]
    record = finished(server, mstore, task_id)
    assert record.status.value == "failed"
    assert record.task.status_message == "the tool could not do it"
    outcome = mstore.get_result(task_id, "alice")
    assert (outcome.kind, outcome.result) == (
        "result",
        {"content": [{"type": "text", "text": "the tool could not do it"}], "isError": True},
    )


def test_exception_fails_the_task_with_a_jsonrpc_error(
    server: McpServer, mstore: TaskStore, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """A tool exception ends the task failed with {-32603, generic message with an error id}
    and that statusMessage."""
    with caplog.at_level(logging.ERROR, logger="taskstore.mcp"):
        created = call(server, alice, "crash", {}, task={})
        record = finished(server, mstore, created["task"]["taskId"])
    assert record.status.value == "failed"
    message = record.task.status_message
    assert message is not None
    assert re.fullmatch(GENERIC_CRASH, message)
    outcome = mstore.get_result(created["task"]["taskId"], "alice")
    assert (outcome.kind, outcome.error) == ("error", {"code": -32603, "message": message})


def test_tool_finishing_after_cancel_changes_nothing(
    server: McpServer, mstore: TaskStore, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """A tool returning after its task was cancelled leaves it cancelled and raises nothing."""
    created = call(server, alice, "gated", {}, task={})
    task_id = created["task"]["taskId"]
    server.router.handle("tasks/cancel", {"taskId": task_id}, alice)
    with caplog.at_level(logging.DEBUG, logger="taskstore.mcp"):
        server.release.set()  # type: ignore[attr-defined]
        assert wait_until(lambda: server.runner.running() == 0)
    assert mstore.get(task_id, "alice").status.value == "cancelled"
    assert f"discarding the late result of task {task_id}" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_cancel_wakes_a_cooperative_tool(server: McpServer, alice: Caller) -> None:
    """tasks/cancel wakes ctx.sleep at once: the tool ends long before its 30 s sleep."""
    created = call(server, alice, "wait_for_cancel", {}, task={})
    server.router.handle("tasks/cancel", {"taskId": created["task"]["taskId"]}, alice)
    assert wait_until(lambda: server.runner.running() == 0, timeout=5)


def test_inline_calls_run_on_the_caller_thread(server: McpServer, alice: Caller) -> None:
    """Optional and forbidden tools called without a task answer their CallToolResult."""
    assert call(server, alice, "echo", {"text": "hi"}) == {
        "content": [{"type": "text", "text": "hi"}],
        "isError": False,
    }
    assert call(server, alice, "plain")["structuredContent"] == {"ok": True}


def test_inline_crash_is_internal_error(server: McpServer, alice: Caller) -> None:
    """An inline tool exception answers -32603 with the generic message and an error id, as
    its task would store."""
    with pytest.raises(ProtocolError) as caught:
        call(server, alice, "crash", {})
    error = caught.value.to_jsonrpc()
    assert error["code"] == -32603
    assert re.fullmatch(GENERIC_CRASH, error["message"])


def test_progress_token_stays_valid_for_the_task(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """ctx.progress sends notifications/progress on the request's token with related-task meta
    and sets the task's statusMessage."""

    def stepper(arguments: dict[str, Any], ctx: ToolContext) -> str:
        ctx.progress(1, 2, "half")
        ctx.progress(2, 2)
        return "done"

    server.add_tool(stepper, task_support="required")
    sender = ListSender()
    created = server.runner.call(
        {"name": "stepper", "task": {}, "_meta": {"progressToken": "tok"}}, alice, sender=sender
    )
    task_id = created["task"]["taskId"]
    finished(server, mstore, task_id)
    meta = {RELATED: {"taskId": task_id}}
    assert sender.messages == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {
                "progressToken": "tok",
                "progress": 1,
                "total": 2,
                "message": "half",
                "_meta": meta,
            },
        },
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "tok", "progress": 2, "total": 2, "_meta": meta},
        },
    ]


def test_variables_are_reachable_from_the_tool(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """ctx.set_variables writes the task's variables (the shared scratchpad)."""
    server.add_tool(
        lambda a, ctx: ctx.set_variables({"seen": a["x"]}) and "ok",
        name="writer",
        task_support="required",
    )
    created = call(server, alice, "writer", {"x": [1, 2]}, task={})
    record = finished(server, mstore, created["task"]["taskId"])
    assert record.variables == {"seen": [1, 2]}


def test_close_fails_running_tasks(mstore: TaskStore, alice: Caller) -> None:
    """Closing the server fails its running tasks with the shutdown message."""
    from support.mcp import build_server

    server = build_server(mstore)
    created = call(server, alice, "wait_for_cancel", {}, task={})
    server.close()
    record = mstore.get(created["task"]["taskId"], "alice")
    assert record.status.value == "failed"
    assert record.task.status_message == SHUTDOWN_MESSAGE
    with pytest.raises(ProtocolError) as caught:
        call(server, alice, "echo", {"text": "x"}, task={})
    assert caught.value.code == -32603


def test_anonymous_owner_cannot_create_tasks_by_default(server: McpServer) -> None:
    """The literal anonymous owner gets -32600 unless allow_anonymous is on."""
    with pytest.raises(AnonymousAccessError) as caught:
        call(server, Caller(owner="local"), "echo", {"text": "x"}, task={})
    assert caught.value.code == -32600


def test_anonymous_owner_may_create_tasks_when_allowed(alice: Caller) -> None:
    """With allow_anonymous=True the anonymous owner creates tasks."""
    from support.mcp import build_server

    with taskstore.open("memory://", allow_anonymous=True) as store:
        server = build_server(store)
        created = call(server, Caller(owner="local"), "echo", {"text": "x"}, task={})
        assert created["task"]["status"] == "working"
        server.close()
