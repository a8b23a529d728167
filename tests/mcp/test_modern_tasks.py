"""The tasks extension (SEP-2663, MCP 2026-07-28; DESIGN §9c; modern-spec §6) through
``McpServer.handle`` with a 2026-07-28 ``RequestContext`` (no HTTP: ``headers`` None skips the
header rules), over an in-memory store shared with the 2025-11-25 era."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from support.modern import (
    ALL_CAPABILITIES,
    META_SERVER_INFO,
    TASKS_EXTENSION,
    message,
    params,
)
from taskstore import TaskStatus, TaskStore
from taskstore.mcp import Caller, McpServer, ToolContext, ToolError
from taskstore.mcp.context import elicitation_request
from taskstore.mcp.era import ERA_2026_07_28
from taskstore.mcp.request import RequestContext
from taskstore.testing import run_barrier_threads
from taskstore.testing._support import wait_until

#: A request's capabilities with the tasks extension declared.
WITH_TASKS: dict[str, Any] = {**ALL_CAPABILITIES, "extensions": {TASKS_EXTENSION: {}}}
#: The -32021 ``data`` of a request lacking the extension.
NEEDS_TASKS = {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
SERVER_INFO_KEYS = {"name", "version"}
NO_SUCH_TASK = "0123456789abcdef0123456789abcdef"
TASK_METHODS = ["tasks/get", "tasks/update", "tasks/cancel"]
DEFAULT_TTL = 3_600_000


@pytest.fixture
def tserver(mstore: TaskStore) -> Iterator[McpServer]:
    """A server over ``mstore`` with task-capable tools:

    - ``hold`` (optional): runs until ``server.release`` is set or the task is cancelled;
    - ``quick`` (optional): answers at once;
    - ``must_task`` (required): answers at once;
    - ``tool_error`` (optional): an ``isError`` result;
    - ``ask`` (optional): ``count`` elicitations outstanding at once → every answer as
      ``structuredContent``.
    """
    server = McpServer(mstore)
    release = threading.Event()
    server.release = release  # type: ignore[attr-defined]
    seen_cancel: list[str] = []
    server.seen_cancel = seen_cancel  # type: ignore[attr-defined]

    @server.tool("hold", task_support="optional")
    def hold(arguments: dict[str, Any], ctx: ToolContext) -> str:
        while not release.is_set():
            if ctx.sleep(0.01):
                seen_cancel.append(str(ctx.task_id))
                return "stopped"
        return "released"

    @server.tool("quick", task_support="optional")
    def quick(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return "quick result"

    @server.tool("must_task", task_support="required")
    def must_task(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return "ran as a task"

    @server.tool("tool_error", task_support="optional")
    def tool_error(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise ToolError("bad input")

    @server.tool(
        "ask",
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"count": {"type": "integer"}},
            "required": ["count"],
        },
    )
    def ask(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        names = [f"q{i}" for i in range(arguments["count"])]
        answers = ctx.request_input(
            {
                name: elicitation_request(
                    f"Question {name}?",
                    {"type": "object", "properties": {"v": {"type": "integer"}}},
                )
                for name in names
            },
            message="Questions",
            timeout=30,
        )
        return {"content": [{"type": "text", "text": "answered"}], "structuredContent": answers}

    yield server
    release.set()
    server.close()


def modern(
    server: McpServer,
    caller: Caller,
    method: str,
    extra: dict[str, Any] | None = None,
    *,
    tasks: bool = True,
    capabilities: dict[str, Any] | None = None,
    id: int = 7,  # noqa: A002
) -> dict[str, Any]:
    """One 2026-07-28 request (declaring the tasks extension unless ``tasks`` is False)."""
    if capabilities is None:
        capabilities = WITH_TASKS if tasks else ALL_CAPABILITIES
    ctx = RequestContext(caller=caller, era=ERA_2026_07_28)
    reply = server.handle(message(method, params(extra, capabilities), id), ctx)
    assert reply is not None
    return reply


def legacy(server: McpServer, caller: Caller, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """One 2025-11-25 request of ``caller`` (the session is the transport's business)."""
    reply = server.handle(message(method, body, 7), RequestContext(caller=caller))
    assert reply is not None
    return reply


def error_of(reply: dict[str, Any], id: int = 7) -> dict[str, Any]:  # noqa: A002
    """The error object of an error reply (checking the echoed id)."""
    assert set(reply) == {"jsonrpc", "id", "error"}, reply
    assert reply["id"] == id
    error: dict[str, Any] = reply["error"]
    return error


def result_of(reply: dict[str, Any], id: int = 7) -> dict[str, Any]:  # noqa: A002
    """The result object of a success reply (checking the echoed id)."""
    assert set(reply) == {"jsonrpc", "id", "result"}, reply
    assert reply["id"] == id
    result: dict[str, Any] = reply["result"]
    return result


def assert_ack(result: dict[str, Any]) -> None:
    """An empty 2026-07-28 acknowledgement: ``resultType: "complete"`` and ``_meta`` only."""
    assert set(result) == {"resultType", "_meta"}, result
    assert result["resultType"] == "complete"
    assert set(result["_meta"]) == {META_SERVER_INFO}
    assert set(result["_meta"][META_SERVER_INFO]) == SERVER_INFO_KEYS


def start(server: McpServer, caller: Caller, tool: str, **arguments: Any) -> str:
    """Start ``tool`` as a task through a modern ``tools/call``; its task id."""
    created = result_of(
        modern(server, caller, "tools/call", {"name": tool, "arguments": arguments})
    )
    assert created["resultType"] == "task", created
    task_id: str = created["taskId"]
    return task_id


def task_params(task_id: str, **more: Any) -> dict[str, Any]:
    """``{"taskId": ...}`` plus ``more``."""
    return {"taskId": task_id, **more}


def update_params(task_id: str, responses: Any) -> dict[str, Any]:
    """The params of a ``tasks/update``."""
    return {"taskId": task_id, "inputResponses": responses}


def waiting_for(store: TaskStore, task_id: str, owner: str, count: int) -> dict[str, Any]:
    """Wait until the task has ``count`` outstanding requests; return them."""
    assert wait_until(lambda: len(store.get(task_id, owner).input_requests) == count, timeout=10), (
        store.get(task_id, owner)
    )
    return dict(store.get(task_id, owner).input_requests)


# -- the extension gate ----------------------------------------------------------------------


def _gate_params(method: str, task_id: str) -> dict[str, Any]:
    if method == "tasks/update":
        return update_params(task_id, {"input-1": {"action": "accept"}})
    return task_params(task_id)


@pytest.mark.parametrize("method", TASK_METHODS)
def test_the_extension_gate_comes_before_the_task_lookup(
    tserver: McpServer, alice: Caller, method: str
) -> None:
    """Without the extension a non-existent task id is -32021 with the extension named in
    requiredCapabilities (the id is never looked up); with it the same id is -32602."""
    without = error_of(
        modern(tserver, alice, method, _gate_params(method, NO_SUCH_TASK), tasks=False)
    )
    assert without["code"] == -32021
    assert without["data"] == NEEDS_TASKS
    with_ext = error_of(modern(tserver, alice, method, _gate_params(method, NO_SUCH_TASK)))
    assert with_ext["code"] == -32602


@pytest.mark.parametrize("method", TASK_METHODS)
def test_a_request_without_the_extension_touches_no_task(
    tserver: McpServer, alice: Caller, mstore: TaskStore, method: str
) -> None:
    """A tasks/* request lacking the extension (or declaring only the legacy tasks
    capability) gets -32021 for an existing task too, and the task is left unchanged."""
    task_id = start(tserver, alice, "hold")
    before = mstore.get(task_id, "alice")
    legacy_only = {**ALL_CAPABILITIES, "tasks": {"requests": {"tools": {"call": {}}}}}
    for capabilities in (ALL_CAPABILITIES, legacy_only, {"extensions": {}}):
        reply = modern(
            tserver, alice, method, _gate_params(method, task_id), capabilities=capabilities
        )
        error = error_of(reply)
        assert (error["code"], error["data"]) == (-32021, NEEDS_TASKS)
    after = mstore.get(task_id, "alice")
    assert (after.status, after.version) == (TaskStatus.WORKING, before.version)


@pytest.mark.parametrize("method", ["tasks/result", "tasks/list"])
@pytest.mark.parametrize("tasks", [True, False])
def test_tasks_result_and_list_do_not_exist(
    tserver: McpServer, alice: Caller, method: str, tasks: bool
) -> None:
    """tasks/result and tasks/list are -32601 in this era, with or without the extension."""
    task_id = start(tserver, alice, "quick")
    extra = task_params(task_id) if method == "tasks/result" else {}
    error = error_of(modern(tserver, alice, method, extra, tasks=tasks))
    assert error["code"] == -32601


# -- tools/call ------------------------------------------------------------------------------


def test_a_task_required_tool_needs_the_extension(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """A task-required tool called without the extension is -32021 with the extension named,
    a legacy ``task`` param does not help, and no task is created."""
    for extra in (
        {"name": "must_task", "arguments": {}},
        {"name": "must_task", "arguments": {}, "task": {"ttl": 60_000}},
    ):
        error = error_of(modern(tserver, alice, "tools/call", extra, tasks=False))
        assert (error["code"], error["data"]) == (-32021, NEEDS_TASKS)
    assert mstore.list("alice").tasks == []
    task_id = start(tserver, alice, "must_task")
    assert mstore.wait(task_id, "alice", timeout=10).status is TaskStatus.COMPLETED


def test_the_legacy_task_param_is_ignored(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """A ``task`` param neither makes a task of a call without the extension (inline
    CallToolResult, no task stored) nor sets the ttl of one with it (the default applies)."""
    inline = result_of(
        modern(
            tserver,
            alice,
            "tools/call",
            {"name": "quick", "arguments": {}, "task": {"ttl": 5_000}},
            tasks=False,
        )
    )
    assert inline["resultType"] == "complete"
    assert inline["content"] == [{"type": "text", "text": "quick result"}]
    assert mstore.list("alice").tasks == []
    created = result_of(
        modern(
            tserver, alice, "tools/call", {"name": "quick", "arguments": {}, "task": {"ttl": 5_000}}
        )
    )
    assert created["resultType"] == "task"
    assert created["ttlMs"] == DEFAULT_TTL
    assert mstore.get(created["taskId"], "alice").task.ttl == DEFAULT_TTL


def test_a_task_optional_tool_with_the_extension_answers_a_findable_task(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """A task-optional tool called with the extension answers a flat CreateTaskResult
    (``resultType: "task"``, no nested task, no 2025 keys) that tasks/get finds at once."""
    created = result_of(modern(tserver, alice, "tools/call", {"name": "hold", "arguments": {}}))
    assert set(created) == {
        "resultType",
        "taskId",
        "status",
        "createdAt",
        "lastUpdatedAt",
        "ttlMs",
        "pollIntervalMs",
        "_meta",
    }
    assert created["resultType"] == "task"
    assert created["status"] == "working"
    assert created["ttlMs"] == DEFAULT_TTL
    assert created["pollIntervalMs"] == 20
    assert set(created["_meta"]) == {META_SERVER_INFO}
    got = result_of(modern(tserver, alice, "tasks/get", task_params(created["taskId"])))
    assert got == {
        **{k: v for k, v in created.items() if k != "resultType"},
        "resultType": "complete",
    }
    tserver.release.set()  # type: ignore[attr-defined]
    assert mstore.wait(created["taskId"], "alice", timeout=10).status is TaskStatus.COMPLETED
    done = result_of(modern(tserver, alice, "tasks/get", task_params(created["taskId"])))
    assert done["status"] == "completed"
    assert done["result"] == {"content": [{"type": "text", "text": "released"}], "isError": False}
    assert not {"error", "inputRequests", "ttl", "pollInterval"} & set(done)


# -- tasks/update ----------------------------------------------------------------------------


def test_update_acks_unknown_keys_and_rejects_malformed_answers(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """tasks/update with unknown keys, even with values no request accepts, is a bare ack
    that writes nothing; a malformed answer to an outstanding key is -32602 and writes
    nothing; a good answer's key is gone from the very next tasks/get."""
    task_id = start(tserver, alice, "ask", count=2)
    outstanding = waiting_for(mstore, task_id, "alice", 2)
    assert sorted(outstanding) == ["input-1", "input-2"]
    version = mstore.get(task_id, "alice").version
    ack = modern(
        tserver,
        alice,
        "tasks/update",
        update_params(task_id, {"unknown-key": {"ignored": True}, "input-9": "not an answer"}),
    )
    assert_ack(result_of(ack))
    assert mstore.get(task_id, "alice").version == version
    for bad in ({"action": "maybe"}, "yes", {"action": "accept", "content": "x"}):
        error = error_of(
            modern(tserver, alice, "tasks/update", update_params(task_id, {"input-1": bad}))
        )
        assert error["code"] == -32602
    for malformed in ({"taskId": task_id}, update_params(task_id, ["input-1"])):
        assert error_of(modern(tserver, alice, "tasks/update", malformed))["code"] == -32602
    assert mstore.get(task_id, "alice").version == version
    ack = modern(
        tserver,
        alice,
        "tasks/update",
        update_params(task_id, {"input-1": {"action": "accept", "content": {"v": 1}}}),
    )
    assert_ack(result_of(ack))
    got = result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))
    assert got["status"] == "input_required"
    assert got["statusMessage"] == "Questions"
    assert got["inputRequests"] == {"input-2": outstanding["input-2"]}
    assert not {"result", "error"} & set(got)
    assert_ack(
        result_of(
            modern(
                tserver,
                alice,
                "tasks/update",
                update_params(task_id, {"input-2": {"action": "decline"}}),
            )
        )
    )
    assert mstore.wait(task_id, "alice", timeout=10).status is TaskStatus.COMPLETED
    done = result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))
    assert done["result"]["structuredContent"] == {
        "q0": {"action": "accept", "content": {"v": 1}},
        "q1": {"action": "decline"},
    }


def test_concurrent_updates_of_different_keys_lose_nothing(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """Six tasks/update requests answering six different keys of one request_input, released
    together by a barrier, are all acked and the tool completes with every answer."""
    count = 6
    task_id = start(tserver, alice, "ask", count=count)
    keys = sorted(waiting_for(mstore, task_id, "alice", count), key=lambda k: int(k[6:]))
    assert keys == [f"input-{n}" for n in range(1, count + 1)]

    def answer(i: int) -> dict[str, Any]:
        responses = {keys[i]: {"action": "accept", "content": {"v": i}}}
        return modern(tserver, alice, "tasks/update", update_params(task_id, responses), id=i)

    replies = run_barrier_threads(count, answer)
    for i, reply in enumerate(replies):
        assert isinstance(reply, dict), reply
        assert_ack(result_of(reply, id=i))
    assert mstore.wait(task_id, "alice", timeout=10).status is TaskStatus.COMPLETED
    done = result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))
    assert done["status"] == "completed"
    assert done["result"] == {
        "content": [{"type": "text", "text": "answered"}],
        "structuredContent": {
            f"q{i}": {"action": "accept", "content": {"v": i}} for i in range(count)
        },
    }


# -- tasks/cancel ----------------------------------------------------------------------------


def test_cancel_of_a_running_task_cancels_it(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """tasks/cancel of a running task is a bare ack; the task is cancelled (tasks/get shows
    it, no result or error) and the tool sees the cancellation."""
    task_id = start(tserver, alice, "hold")
    assert_ack(result_of(modern(tserver, alice, "tasks/cancel", task_params(task_id))))
    got = result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))
    assert got["status"] == "cancelled"
    assert not {"result", "error", "inputRequests"} & set(got)
    assert wait_until(lambda: task_id in tserver.seen_cancel, timeout=10)  # type: ignore[attr-defined]
    assert mstore.get(task_id, "alice").status is TaskStatus.CANCELLED


def test_cancel_of_a_terminal_task_acks_and_changes_nothing(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """tasks/cancel of a completed task is the same bare ack and leaves the task, its version
    and its result unchanged."""
    task_id = start(tserver, alice, "quick")
    done = mstore.wait(task_id, "alice", timeout=10)
    assert done.status is TaskStatus.COMPLETED
    before = result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))
    assert_ack(result_of(modern(tserver, alice, "tasks/cancel", task_params(task_id))))
    assert mstore.get(task_id, "alice").version == done.version
    assert result_of(modern(tserver, alice, "tasks/get", task_params(task_id))) == before


# -- one record, two eras --------------------------------------------------------------------


def test_a_legacy_created_task_is_readable_and_cancellable_through_the_extension(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """A task created by a 2025-11-25 task-augmented tools/call is found by the same caller's
    modern tasks/get, cancelled by its modern tasks/cancel (the legacy tasks/get then reads
    cancelled), and stays invisible to another caller in both eras."""
    created = result_of(
        legacy(tserver, alice, "tools/call", {"name": "hold", "arguments": {}, "task": {}})
    )
    task = created["task"]
    assert task["status"] == "working"
    task_id = task["taskId"]
    got = result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))
    assert got == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "working",
        "createdAt": task["createdAt"],
        "lastUpdatedAt": task["lastUpdatedAt"],
        "ttlMs": task["ttl"],
        "pollIntervalMs": task["pollInterval"],
        "_meta": got["_meta"],
    }
    bob = Caller(owner="bob")
    assert error_of(modern(tserver, bob, "tasks/get", task_params(task_id)))["code"] == -32602
    assert error_of(modern(tserver, bob, "tasks/cancel", task_params(task_id)))["code"] == -32602
    assert mstore.get(task_id, "alice").status is TaskStatus.WORKING
    assert_ack(result_of(modern(tserver, alice, "tasks/cancel", task_params(task_id))))
    assert result_of(modern(tserver, alice, "tasks/get", task_params(task_id)))["status"] == (
        "cancelled"
    )
    legacy_view = result_of(legacy(tserver, alice, "tasks/get", task_params(task_id)))
    assert legacy_view["status"] == "cancelled"
    assert "ttl" in legacy_view and "ttlMs" not in legacy_view


_IS_ERROR = {"content": [{"type": "text", "text": "bad input"}], "isError": True}


def test_the_creating_era_fixes_the_status_of_an_is_error_result(
    tserver: McpServer, alice: Caller, mstore: TaskStore
) -> None:
    """An isError result fails a task created by a 2025-11-25 call and completes one created
    by a 2026-07-28 call; each era reads both records in its own shape."""
    legacy_id = result_of(
        legacy(tserver, alice, "tools/call", {"name": "tool_error", "arguments": {}, "task": {}})
    )["task"]["taskId"]
    modern_id = start(tserver, alice, "tool_error")
    assert mstore.wait(legacy_id, "alice", timeout=10).status is TaskStatus.FAILED
    assert mstore.wait(modern_id, "alice", timeout=10).status is TaskStatus.COMPLETED

    legacy_modern = result_of(modern(tserver, alice, "tasks/get", task_params(legacy_id)))
    assert legacy_modern["status"] == "failed"
    assert legacy_modern["statusMessage"] == "bad input"
    assert legacy_modern["error"] == {"code": -32603, "message": "bad input"}
    assert "result" not in legacy_modern
    modern_modern = result_of(modern(tserver, alice, "tasks/get", task_params(modern_id)))
    assert modern_modern["status"] == "completed"
    assert modern_modern["result"] == _IS_ERROR
    assert not {"error", "statusMessage"} & set(modern_modern)

    related = "io.modelcontextprotocol/related-task"
    for task_id, status in ((legacy_id, "failed"), (modern_id, "completed")):
        view = result_of(legacy(tserver, alice, "tasks/get", task_params(task_id)))
        assert view["status"] == status
        payload = result_of(legacy(tserver, alice, "tasks/result", task_params(task_id)))
        assert payload == {**_IS_ERROR, "_meta": {related: {"taskId": task_id}}}
