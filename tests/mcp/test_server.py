"""McpServer.handle: JSON-RPC envelope rules, every method, error codes of DESIGN §10."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

import taskstore
from support.backends import count_reads
from support.mcp import INIT_PARAMS, ListSender
from taskstore import TaskStore
from taskstore.errors import BackendError
from taskstore.mcp import Caller, McpServer, PromptArgument, PromptContext
from taskstore.mcp.audit import audit
from taskstore.mcp.era import ERA_2026_07_28
from taskstore.mcp.request import RequestContext

RELATED = "io.modelcontextprotocol/related-task"


def rpc(server: McpServer, method: str, params: Any = None, *, caller: Caller, id: Any = 1) -> Any:  # noqa: A002
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return server.handle(message, caller=caller)


def test_initialize_declares_the_tasks_capability(server: McpServer, alice: Caller) -> None:
    """initialize answers the negotiated version and capabilities.tasks with list and cancel."""
    reply = rpc(server, "initialize", INIT_PARAMS, caller=alice, id=0)
    assert reply["id"] == 0
    result = reply["result"]
    assert set(result) == {"protocolVersion", "capabilities", "serverInfo"}
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"]["tasks"] == {
        "list": {},
        "cancel": {},
        "requests": {"tools": {"call": {}}},
    }
    assert result["serverInfo"] == {"name": "taskstore", "version": taskstore.__version__}


@pytest.mark.parametrize(
    ("requested", "answered"),
    [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("1999-01-01", "2025-11-25"),
    ],
)
def test_version_negotiation(
    server: McpServer, alice: Caller, requested: str, answered: str
) -> None:
    """Supported versions are echoed; unknown ones get the latest."""
    params = {**INIT_PARAMS, "protocolVersion": requested}
    assert rpc(server, "initialize", params, caller=alice)["result"]["protocolVersion"] == answered


def test_anonymous_callers_get_no_list_capability(server: McpServer) -> None:
    """A server that cannot identify the caller omits tasks.list."""
    reply = rpc(server, "initialize", INIT_PARAMS, caller=Caller(owner="local"))
    assert reply["result"]["capabilities"]["tasks"] == {
        "cancel": {},
        "requests": {"tools": {"call": {}}},
    }


def test_tools_list_declares_task_support(server: McpServer, alice: Caller) -> None:
    """tools/list shows execution.taskSupport on every tool."""
    tools = rpc(server, "tools/list", caller=alice)["result"]["tools"]
    support = {tool["name"]: tool["execution"] for tool in tools}
    assert support["echo"] == {"taskSupport": "optional"}
    assert support["echo_required"] == {"taskSupport": "required"}
    assert support["plain"] == {"taskSupport": "forbidden"}
    echo = next(tool for tool in tools if tool["name"] == "echo")
    assert set(echo) == {"name", "inputSchema", "execution"}


def test_ping_answers_an_empty_result(server: McpServer, alice: Caller) -> None:
    """ping answers {}."""
    assert rpc(server, "ping", caller=alice, id="p") == {"jsonrpc": "2.0", "id": "p", "result": {}}


@pytest.mark.parametrize(
    ("message", "code", "reply_id"),
    [
        ([], -32600, None),
        ("x", -32600, None),
        ({"id": 1, "method": "ping"}, -32600, 1),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32600, 1),
        ({"jsonrpc": "2.0", "id": 1}, -32600, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, -32602, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "nope"}, -32601, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, -32602, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "x"}}, -32602, 1),
    ],
)
def test_malformed_messages_get_the_right_code(
    server: McpServer, alice: Caller, message: Any, code: int, reply_id: Any
) -> None:
    """Malformed envelopes, params and unknown methods map to -32600/-32602/-32601."""
    reply = server.handle(message, caller=alice)
    assert reply is not None
    assert set(reply) == {"jsonrpc", "id", "error"}
    assert reply["id"] == reply_id
    assert reply["error"]["code"] == code


def test_request_id_zero_is_a_request(server: McpServer, alice: Caller) -> None:
    """id 0 is a request (answered), not a notification."""
    assert rpc(server, "ping", caller=alice, id=0) == {"jsonrpc": "2.0", "id": 0, "result": {}}


def test_notifications_and_responses_get_no_reply(server: McpServer, alice: Caller) -> None:
    """Notifications and client responses return None."""
    assert (
        server.handle({"jsonrpc": "2.0", "method": "notifications/initialized"}, caller=alice)
        is None
    )
    assert server.handle({"jsonrpc": "2.0", "method": "nope/unknown"}, caller=alice) is None
    assert server.handle({"jsonrpc": "2.0", "id": "x", "result": {}}, caller=alice) is None


def test_full_task_flow_through_handle(server: McpServer, mstore: TaskStore, alice: Caller) -> None:
    """tools/call with a task, then tasks/get, tasks/result and tasks/list through handle."""
    created = rpc(
        server,
        "tools/call",
        {"name": "echo", "arguments": {"text": "hi"}, "task": {"ttl": 5000}},
        caller=alice,
    )["result"]
    task_id = created["task"]["taskId"]
    result = rpc(server, "tasks/result", {"taskId": task_id}, caller=alice)["result"]
    assert result == {
        "content": [{"type": "text", "text": "hi"}],
        "isError": False,
        "_meta": {RELATED: {"taskId": task_id}},
    }
    got = rpc(server, "tasks/get", {"taskId": task_id}, caller=alice)["result"]
    assert (got["taskId"], got["status"], got["ttl"]) == (task_id, "completed", 5000)
    listed = rpc(server, "tasks/list", caller=alice)["result"]
    assert [t["taskId"] for t in listed["tasks"]] == [task_id]


def test_stored_error_travels_unchanged(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """tasks/result of a task failed with an error answers that error with the request id."""
    record = mstore.create("alice")
    mstore.fail(record.task_id, "alice", error={"code": -32001, "message": "m", "data": [1]})
    reply = rpc(server, "tasks/result", {"taskId": record.task_id}, caller=alice, id=9)
    assert reply == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32001, "message": "m", "data": [1]},
    }


def test_backend_failure_is_internal_error(alice: Caller) -> None:
    """A failing backend answers -32603 without the driver's details, never a traceback."""
    store = taskstore.open("memory://")
    server = McpServer(store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise BackendError("redis at 10.0.0.5:6379 refused the connection")

    store.get = broken  # type: ignore[method-assign]
    reply = rpc(server, "tasks/get", {"taskId": "x"}, caller=alice)
    assert reply["error"] == {
        "code": -32603,
        "message": "Internal error: the task storage failed",
    }
    server.close()


def test_unexpected_exception_is_a_generic_internal_error(
    server: McpServer, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a handler answers -32603 "Internal error" without details."""

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("secret detail")

    monkeypatch.setattr(server.router, "get", bug)
    monkeypatch.setitem(server._methods, "tasks/get", lambda p, c: bug())
    reply = rpc(server, "tasks/get", {"taskId": "x"}, caller=alice)
    assert reply["error"] == {"code": -32603, "message": "Internal error"}


def test_prompts_list_and_get(server: McpServer, alice: Caller) -> None:
    """A registered prompt is listed and rendered with its arguments and the caller."""

    @server.prompt(
        "greet", description="Say hello", arguments=[PromptArgument("name", required=True)]
    )
    def greet(arguments: dict[str, str], ctx: PromptContext) -> str:
        return f"Hello {arguments['name']} from {ctx.caller.owner}"

    assert rpc(server, "prompts/list", caller=alice)["result"] == {
        "prompts": [
            {
                "name": "greet",
                "description": "Say hello",
                "arguments": [{"name": "name", "required": True}],
            }
        ]
    }
    got = rpc(server, "prompts/get", {"name": "greet", "arguments": {"name": "Ann"}}, caller=alice)
    assert got["result"] == {
        "messages": [{"role": "user", "content": {"type": "text", "text": "Hello Ann from alice"}}]
    }
    missing = rpc(server, "prompts/get", {"name": "greet"}, caller=alice)
    assert missing["error"] == {
        "code": -32602,
        "message": "Missing required arguments for prompt greet: name",
    }


def test_cancelled_notification_cancels_an_inline_call(server: McpServer, alice: Caller) -> None:
    """notifications/cancelled with the request id signals the inline call's context."""
    import threading

    seen = threading.Event()
    entered = threading.Event()

    @server.tool("inline_wait")
    def inline_wait(arguments: dict[str, Any], ctx: Any) -> str:
        entered.set()
        if ctx.sleep(30):
            seen.set()
        return "ok"

    replies: list[Any] = []
    worker = threading.Thread(
        target=lambda: replies.append(
            rpc(server, "tools/call", {"name": "inline_wait"}, caller=alice, id=77)
        )
    )
    worker.start()
    assert entered.wait(5), "the tool never started"
    assert (
        server.handle(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77}},
            caller=alice,
        )
        is None
    )
    worker.join(10)  # the tool sleeps 30 s unless the cancel wakes it
    assert not worker.is_alive()
    assert seen.is_set()
    assert [reply["id"] for reply in replies] == [77]


def test_result_stream_delivers_input_requests_then_the_answer(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """result_stream yields the tool's elicitation request; the client's response resumes the
    tool; the stream ends with the tasks/result answer."""
    created = rpc(
        server,
        "tools/call",
        {"name": "confirm_action", "arguments": {"action": "x"}, "task": {}},
        caller=alice,
    )["result"]
    task_id = created["task"]["taskId"]
    events = server.result_stream({"taskId": task_id}, alice, "r1", keepalive_s=5)
    request = next(events)
    assert request is not None
    assert request["method"] == "elicitation/create"
    assert request["params"]["_meta"] == {RELATED: {"taskId": task_id}}
    assert mstore.get(task_id, "alice").status.value == "input_required"
    answer = {
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"action": "accept", "content": {"confirm": True}},
    }
    assert server.handle(answer, caller=alice) is None
    final = [event for event in events if event is not None]
    assert final == [
        {
            "jsonrpc": "2.0",
            "id": "r1",
            "result": {
                "content": [{"type": "text", "text": "Done: x"}],
                "isError": False,
                "_meta": {RELATED: {"taskId": task_id}},
            },
        }
    ]


@pytest.mark.parametrize(
    "finish", ["complete", "fail", "cancel"], ids=["completed", "failed", "cancelled"]
)
def test_result_stream_of_a_finished_task_reads_it_once(
    server: McpServer,
    mstore: TaskStore,
    alice: Caller,
    monkeypatch: pytest.MonkeyPatch,
    finish: str,
) -> None:
    """tasks/result streamed for a task already over: one read with its outcome answers it
    (the result, the stored error, or -32602 for a cancelled task), and the stream ends."""
    record = mstore.create("alice")
    if finish == "complete":
        mstore.complete(record.task_id, "alice", {"content": [], "isError": False})
    elif finish == "fail":
        mstore.fail(record.task_id, "alice", error={"code": -32000, "message": "boom"})
    else:
        mstore.cancel(record.task_id, "alice")
    reads = count_reads(mstore, monkeypatch)
    events = list(server.result_stream({"taskId": record.task_id}, alice, "r1"))
    assert reads == [True]
    assert len(events) == 1 and events[0] is not None and events[0]["id"] == "r1"
    if finish == "complete":
        assert events[0]["result"]["content"] == []
    elif finish == "fail":
        assert events[0]["error"] == {"code": -32000, "message": "boom"}
    else:
        assert events[0]["error"]["code"] == -32602
        assert events[0]["error"]["data"]["status"] == "cancelled"


def test_another_owner_cannot_answer_an_input_request(
    server: McpServer, mstore: TaskStore, alice: Caller, bob: Caller
) -> None:
    """A response carrying the request id but sent by another owner is ignored."""
    created = rpc(
        server,
        "tools/call",
        {"name": "confirm_action", "arguments": {"action": "x"}, "task": {}},
        caller=alice,
    )["result"]
    task_id = created["task"]["taskId"]
    events = server.result_stream({"taskId": task_id}, alice, "r1", keepalive_s=5)
    request = next(events)
    assert request is not None
    answer = {
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"action": "accept", "content": {"confirm": True}},
    }
    assert server.inputs.resolve(answer, bob.owner) is False
    assert server.inputs.outstanding(task_id, "alice") == 1
    rpc(server, "tasks/cancel", {"taskId": task_id}, caller=alice)
    final = [event for event in events if event is not None]
    assert final[0]["error"]["data"] == {"taskId": task_id, "status": "cancelled"}
    events.close()


def test_status_notifications_reach_the_sender(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """StatusNotifier sends notifications/tasks/status with the Task fields flat, per owner."""
    sender = ListSender()
    detach = server.notifier.attach("alice", sender)
    mine = mstore.create("alice")
    mstore.create("bob")
    mstore.cancel(mine.task_id, "alice", "stop")
    detach()
    other = mstore.create("alice")
    mstore.cancel(other.task_id, "alice")
    assert len(sender.messages) == 1
    message = sender.messages[0]
    assert message["method"] == "notifications/tasks/status"
    assert set(message) == {"jsonrpc", "method", "params"}
    assert message["params"] == mstore.get(mine.task_id, "alice").to_wire()
    assert message["params"]["status"] == "cancelled"


def test_request_context_copies_keep_every_field() -> None:
    """with_request_id and with_capabilities change their one field and keep every other,
    exactly as dataclasses.replace would (new fields included)."""
    ctx = RequestContext(
        caller=Caller.resolve(session_id="s"),
        request_id=1,
        sender=ListSender(),
        era=ERA_2026_07_28,
        headers={"mcp-method": "ping"},
        client_capabilities={"sampling": {}},
    )
    assert ctx.with_request_id("x") == dataclasses.replace(ctx, request_id="x")
    capabilities = {"roots": {}}
    moved = ctx.with_capabilities(capabilities)
    for field in dataclasses.fields(RequestContext):
        expected = dataclasses.replace(ctx, client_capabilities=capabilities)
        assert getattr(moved, field.name) is getattr(expected, field.name), field.name
    assert ctx.client_capabilities == {"sampling": {}}  # the original is unchanged


class _Unlabelled:
    """An audit owner whose label must not be computed."""

    @property
    def audit_owner(self) -> str:
        raise AssertionError("the label was computed for a line nobody writes")


def test_audit_labels_the_owner_only_for_lines_it_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """audit() takes the caller and computes its label (a hash for session owners) only when
    the audit logger writes the line."""
    caplog.set_level(logging.WARNING, logger="taskstore.audit")
    audit("task.created", owner=_Unlabelled(), task_id="t")
    caplog.set_level(logging.INFO, logger="taskstore.audit")
    session = Caller.resolve(session_id="secret-session")
    audit("task.created", owner=session, task_id="t", tool="echo")
    audit("task.created", owner="alice", task_id="u")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        f"task.created task=t owner={session.audit_owner!r} tool='echo'",
        "task.created task=u owner='alice'",
    ]
    assert "secret-session" not in lines[0]
