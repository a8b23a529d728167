"""The data_pipeline example end to end with the OFFICIAL MCP Python client (DESIGN §9b)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import taskstore
from support.examples import load_example
from support.mcp import serving
from taskstore.mcp import McpServer
from taskstore.wsgi import McpWsgiApp

Client = Callable[..., dict[str, Any]]


@pytest.fixture
def url() -> Iterator[str]:
    """The example's server on a loopback port, in-memory store."""
    example = load_example()
    with taskstore.open("memory://", poll_interval_ms=20) as store:
        server: McpServer = example.build_server(store)
        with serving(McpWsgiApp(server, loopback_only=True, keepalive_s=1.0)) as endpoint:
            yield endpoint
        server.close()


def test_workflow_lifecycle_with_official_client(run_client: Client, url: str) -> None:
    """Happy path in one prompt call; failing source → handoff with the task id → the client's
    remaining calls with _task_id → tasks/result returns the summary."""
    out = run_client("workflow", url)
    assert out["prompts"] == [{"name": "data_pipeline", "arguments": [["source", True]]}]
    happy = out["happyMeta"]
    assert happy["task_status"] == "completed"
    assert [s["status"] for s in happy["steps"]] == ["completed"] * 3
    assert set(out["happySummary"]["steps"]) == {"fetch", "transform", "store"}
    assert out["happySummary"]["steps"]["store"] == {"stored": 3, "destination": "memory"}
    failing = out["failingMeta"]
    assert set(failing) == {"task_id", "task_status", "steps", "pause_reason"}
    assert failing["task_status"] == "working"
    assert failing["steps"] == [
        {"name": "fetch", "tool": "fetch_data", "status": "failed"},
        {"name": "transform", "tool": "transform_data", "status": "skipped"},
        {"name": "store", "tool": "store_data", "status": "skipped"},
    ]
    assert failing["pause_reason"]["type"] == "toolError"
    assert out["handoff"]["role"] == "assistant"
    for call in ("fetch_data", "transform_data", "store_data", failing["task_id"]):
        assert call in out["handoff"]["text"]
    assert out["afterFetch"] == "working"
    assert out["stored"] == {"stored": 3, "destination": "memory"}
    assert out["final"] == "completed"
    transform = out["summary"]["steps"]["transform"]
    assert transform["total"] == pytest.approx(252.75)
    assert sorted(row["region"] for row in transform["rows"]) == ["east", "north", "south"]
    assert out["relatedTask"] == {"taskId": failing["task_id"]}
