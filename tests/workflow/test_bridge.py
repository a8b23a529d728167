"""The workflow bridge inside McpServer: prompts and continuations over JSON-RPC."""

from __future__ import annotations

from typing import Any

import pytest

from support.examples import load_example
from support.mcp import wait_until
from taskstore import TaskStore
from taskstore.mcp import Caller, McpServer
from taskstore.workflow import (
    SequentialWorkflow,
    WorkflowDefinitionError,
    WorkflowStep,
    register_workflow,
)
from taskstore.workflow.progress import PAUSE_REASON, step_statuses

ALICE = Caller(owner="alice")


def _rpc(server: McpServer, method: str, params: dict[str, Any]) -> dict[str, Any]:
    reply = server.handle(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, caller=ALICE
    )
    assert reply is not None and "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


@pytest.fixture
def server(store: TaskStore) -> Any:
    """The data_pipeline example's server over every backend."""
    made: McpServer = load_example().build_server(store)
    yield made
    made.close()


def test_task_augmented_continuation_is_recorded(server: McpServer, store: TaskStore) -> None:
    """A continuation called as a task is recorded against the workflow once its task ends,
    success and failure alike."""
    paused = _rpc(
        server, "prompts/get", {"name": "data_pipeline", "arguments": {"source": "nowhere"}}
    )
    workflow_id = paused["_meta"]["task_id"]
    meta = {"_task_id": workflow_id}
    failing = _rpc(
        server,
        "tools/call",
        {
            "name": "fetch_data",
            "arguments": {"source": "x"},
            "task": {"ttl": 60_000},
            "_meta": meta,
        },
    )
    store.wait(failing["task"]["taskId"], "alice", timeout=10)
    assert wait_until(
        lambda: (
            "'x'"
            in str(store.get(workflow_id, "alice").variables.get(PAUSE_REASON, {}).get("error", ""))
        )
    )
    created = _rpc(
        server,
        "tools/call",
        {
            "name": "fetch_data",
            "arguments": {"source": "sales"},
            "task": {"ttl": 60_000},
            "_meta": meta,
        },
    )
    store.wait(created["task"]["taskId"], "alice", timeout=10)
    assert wait_until(
        lambda: step_statuses(store.get(workflow_id, "alice").variables)["fetch"] == "completed"
    )
    assert PAUSE_REASON not in store.get(workflow_id, "alice").variables


def test_resume_needs_no_arguments(server: McpServer, store: TaskStore) -> None:
    """Re-invoking the prompt with _task_id resumes without repeating required arguments; a
    fresh run without them is refused with -32602 and starts nothing."""
    paused = _rpc(
        server, "prompts/get", {"name": "data_pipeline", "arguments": {"source": "nowhere"}}
    )
    workflow_id = paused["_meta"]["task_id"]
    again = _rpc(
        server, "prompts/get", {"name": "data_pipeline", "_meta": {"_task_id": workflow_id}}
    )
    assert again["_meta"]["task_id"] == workflow_id
    assert again["_meta"]["pause_reason"]["type"] == "toolError"
    before = [r.task_id for r in store.list("alice").tasks]
    fresh = server.handle(
        {"jsonrpc": "2.0", "id": 2, "method": "prompts/get", "params": {"name": "data_pipeline"}},
        caller=ALICE,
    )
    assert fresh == {  # a fresh run still needs `source`, and starts nothing without it
        "jsonrpc": "2.0",
        "id": 2,
        "error": {
            "code": -32602,
            "message": "Missing required arguments for prompt data_pipeline: source",
        },
    }
    assert [r.task_id for r in store.list("alice").tasks] == before


def test_registration_catches_definition_errors(server: McpServer) -> None:
    """register_workflow refuses a workflow calling an unregistered tool."""
    bad = SequentialWorkflow("bad", "d", [WorkflowStep("s", "no_such_tool")])
    with pytest.raises(WorkflowDefinitionError):
        register_workflow(server, bad)
    assert server.prompts.get("bad") is None
