"""End-to-end with the OFFICIAL MCP Python client (``mcp<2``, in its own venv) against the
WSGI endpoint served over loopback HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import taskstore
from support.mcp import build_server, serving
from taskstore.mcp import McpServer
from taskstore.wsgi import McpWsgiApp, bearer_authenticator

Client = Callable[..., dict[str, Any]]


@pytest.fixture
def server() -> Iterator[McpServer]:
    """A server with the test tools on an in-memory store polled every 20 ms."""
    with taskstore.open("memory://", poll_interval_ms=20) as store:
        made = build_server(store)
        yield made
        made.close()


@pytest.fixture
def url(server: McpServer) -> Iterator[str]:
    """The endpoint URL of an anonymous (session-owned) loopback server."""
    with serving(McpWsgiApp(server, loopback_only=True, keepalive_s=1.0)) as endpoint:
        yield endpoint


def test_official_client_task_lifecycle(run_client: Client, url: str) -> None:
    """initialize, tools/list, task call polled to completion with its result, list, cancel,
    tool errors as failed, -32601/-32602 codes and status notifications, all as the official
    client sees them."""
    out = run_client("basic", url)
    assert out["protocolVersion"] == "2025-11-25"
    assert out["tasksCapability"] == {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    assert out["taskSupport"]["echo"] == "optional"
    assert out["taskSupport"]["echo_required"] == "required"
    assert out["taskSupport"]["plain"] == "forbidden"
    assert out["created"] == {"status": "working", "ttl": 60000}
    assert out["echoStatuses"][-1] == "completed"
    assert out["echoResult"] == {
        "text": "hi",
        "isError": False,
        "relatedTask": {"taskId": out["echoTaskId"]},
    }
    assert out["listedIds"] == [out["echoTaskId"]]
    assert out["cancelStatus"] == "cancelled"
    assert out["afterCancel"] == "cancelled"
    assert out["cancelledResult"]["code"] == -32602
    assert out["cancelledResult"]["data"]["status"] == "cancelled"
    assert out["cancelAgain"]["code"] == -32602
    assert out["errorStatuses"][-1] == "failed"
    assert out["errorResult"] == {"isError": True, "text": "the tool could not do it"}
    assert out["crashStatuses"][-1] == "failed"
    # The error-message policy: a generic message with an error id, the same on both surfaces.
    crash_message = out["crashStatusMessage"]
    assert re.fullmatch(r"Tool crash failed unexpectedly \(error id [0-9a-f]{16}\)", crash_message)
    assert out["crashResult"] == {"code": -32603, "message": crash_message, "data": None}
    assert out["requiredInline"]["code"] == -32601
    assert out["inline"] == "inline"
    assert out["unknownTask"]["code"] == -32602
    assert out["notified"] == ["completed"]


def test_official_client_answers_an_input_request(run_client: Client, url: str) -> None:
    """A task goes input_required; the client's tasks/result receives the elicitation, answers
    it, and gets the final result."""
    out = run_client("elicit", url)
    assert out == {
        "sawInputRequired": True,
        "asked": ["Proceed with: deploy?"],
        "text": "Done: deploy",
        "final": "completed",
    }


def test_owners_of_two_bearer_tokens_cannot_see_each_other(
    run_client: Client, server: McpServer
) -> None:
    """Alice's task is not listed for Bob, and get/result/cancel of its id answer -32602."""
    app = McpWsgiApp(
        server,
        loopback_only=True,
        authenticate=bearer_authenticator({"tok-a": "alice", "tok-b": "bob"}),
    )
    with serving(app) as endpoint:
        mine = run_client("create", endpoint, "tok-a")
        theirs = run_client("snoop", endpoint, "tok-b", mine["taskId"])
        again = run_client("snoop", endpoint, "tok-a", mine["taskId"])
    assert mine["statuses"][-1] == "completed"
    assert mine["listed"] == [mine["taskId"]]
    assert theirs["listed"] == []
    for method in ("get", "result", "cancel"):
        assert theirs[method]["code"] == -32602
        assert theirs[method]["message"] == f"Task not found: {mine['taskId']}"
    # The owner herself (in a new session) still sees it: owners are subjects, not sessions.
    assert again["listed"] == [mine["taskId"]]
    assert again["get"] is None and again["result"] is None
    assert again["cancel"]["code"] == -32602  # already completed
