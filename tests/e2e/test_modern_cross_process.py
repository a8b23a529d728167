"""The tasks extension (SEP-2663, DESIGN §9c) across two server processes sharing one store:
real Redis (pub/sub wakes the waiting tool) and DynamoDB Local (the tool polls).

A task is created through server A; server B serves its ``tasks/get``, ``tasks/update`` and
``tasks/cancel``; the tool keeps running in A and resumes (or stops) there, which A reports
on its stdout (tests/e2e/tasks_store_server.py). Requests are raw HTTP with the modern
``_meta`` envelope and routing headers (``support.tasks_e2e.rpc``).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from support.modern import META_SERVER_INFO
from support.servers import fresh_name, need_modules
from support.tasks_e2e import TIMESTAMP, ServerProcess, rpc

if TYPE_CHECKING:
    from support.dynamodb_support import DynamoDbLocal
    from support.redis_support import RedisServer

SERVER = Path(__file__).with_name("tasks_store_server.py")
#: How long a tool in A may take to notice what B did (DynamoDB: a 0.5 s poll, plus slack for
#: a loaded 2-core machine). A deadline, never a sleep: the polls end as soon as it happened.
DEADLINE_S = 15.0
SERVER_META = {META_SERVER_INFO: {"name": "taskstore-conformance", "version": "0.1.0"}}
ACK = {"resultType": "complete", "_meta": SERVER_META}
#: The fields of every ``tasks/get`` of these servers (``poll_interval_ms=100`` in the URL).
BASE = {"resultType": "complete", "ttlMs": 3_600_000, "pollIntervalMs": 100, "_meta": SERVER_META}
CONFIRM_REQUEST = {
    "method": "elicitation/create",
    "params": {
        "message": "Delete shared.txt?",
        "mode": "form",
        "requestedSchema": {
            "type": "object",
            "properties": {"confirm": {"type": "boolean", "description": "Delete the file?"}},
            "required": ["confirm"],
        },
    },
}
#: The dummy region of every DynamoDB test (support.dynamodb_support.REGION).
REGION = "us-east-1"
#: What the servers must find in their environment for DynamoDB Local: dummy credentials only.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_REGION")


def result_of(url: str, method: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The result of a request by alice (``tok-a``) that must succeed with HTTP 200."""
    status, reply = rpc(url, method, extra, "tok-a")
    assert status == 200 and "result" in reply, (method, status, reply)
    result: dict[str, Any] = reply["result"]
    return result


def get(url: str, task_id: str) -> dict[str, Any]:
    """``tasks/get`` of ``task_id`` without its timestamps (their form checked)."""
    task = result_of(url, "tasks/get", {"taskId": task_id})
    assert TIMESTAMP.match(task.pop("createdAt")), task
    assert TIMESTAMP.match(task.pop("lastUpdatedAt")), task
    return task


def poll(url: str, task_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """``tasks/get`` through ``url`` until ``done`` (at most :data:`DEADLINE_S`)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        task = get(url, task_id)
        if done(task):
            return task
        assert time.monotonic() < deadline, f"still {task['status']} after {DEADLINE_S} s"
        time.sleep(0.05)


def create(url: str, name: str, arguments: dict[str, Any]) -> str:
    """Call ``name`` as a task through ``url``; the new task's id."""
    created = result_of(url, "tools/call", {"name": name, "arguments": arguments})
    assert (created["resultType"], created["status"]) == ("task", "working"), created
    task_id: str = created["taskId"]
    return task_id


# -- the shared stores ---------------------------------------------------------------------------
# Each row needs only its own driver (imported here, not at module level): the tox ``redis`` env
# has no boto3 and the ``dynamodb`` env no redis-py, and each must still run its own row.


def _redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    need_modules("redis")
    server: RedisServer = request.getfixturevalue("redis_server")  # support.redis_support
    yield f"{server.url}?prefix={fresh_name()}&poll_interval_ms=100"


def _dynamodb_url(request: pytest.FixtureRequest) -> Iterator[str]:
    need_modules("boto3")
    from support.dynamodb_support import make_client
    from taskstore.backends.dynamodb import DynamoDbBackend

    local: DynamoDbLocal = request.getfixturevalue("dynamodb_local")
    client = make_client(local.endpoint_url)
    table = fresh_name()
    DynamoDbBackend.create_table(table, client=client)
    try:
        yield (
            f"dynamodb://{table}?region={REGION}&endpoint_url={local.endpoint_url}"
            "&poll_interval_ms=100"
        )
    finally:
        client.delete_table(TableName=table)
        client.close()


@pytest.fixture(
    params=[
        pytest.param(_redis_url, marks=[pytest.mark.redis, pytest.mark.redis_server], id="redis"),
        pytest.param(
            _dynamodb_url,
            marks=[pytest.mark.dynamodb, pytest.mark.dynamodb_local],
            id="dynamodb-local",
        ),
    ]
)
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Servers A and B over one fresh namespace of the shared store, with one request-state
    key and (for DynamoDB) dummy AWS credentials."""
    env = {k: v for k, v in os.environ.items() if k not in AWS_CLEARED and k != "PYTHONPATH"}
    env.update(AWS_ENV)
    env["TASKSTORE_REQUEST_STATE_KEY"] = secrets.token_hex(32)
    urls = request.param(request)
    store_url = next(urls)
    started: list[ServerProcess] = []
    try:
        started.append(ServerProcess([str(SERVER), store_url, "--auth"], env))
        started.append(ServerProcess([str(SERVER), store_url, "--auth"], env))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        urls.close()
    for server in started:
        assert server.proc.returncode == 0, server.stderr[-4000:]


def test_input_answered_through_b_resumes_the_tool_in_a(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    """``confirm_delete`` created through A goes ``input_required`` as B sees it; B's
    ``tasks/update`` resumes the tool waiting in A, and B sees the task complete."""
    a, b = servers
    task_id = create(a.url, "confirm_delete", {"filename": "shared.txt"})
    parked = poll(b.url, task_id, lambda t: t["status"] != "working")
    assert parked == {
        **BASE,
        "taskId": task_id,
        "status": "input_required",
        "statusMessage": "Delete shared.txt?",
        "inputRequests": {"input-1": CONFIRM_REQUEST},
    }
    answered = {"input-1": {"action": "accept", "content": {"confirm": True}}}
    assert result_of(b.url, "tasks/update", {"taskId": task_id, "inputResponses": answered}) == ACK
    finished = poll(b.url, task_id, lambda t: t["status"] not in ("working", "input_required"))
    done = {
        **BASE,
        "taskId": task_id,
        "status": "completed",
        "result": {"content": [{"type": "text", "text": "Deleted shared.txt"}], "isError": False},
    }
    assert finished == done
    assert get(a.url, task_id) == done
    assert a.event(lambda e: e.get("taskId") == task_id, DEADLINE_S) == {
        "event": "returned",
        "tool": "confirm_delete",
        "taskId": task_id,
        "text": "Deleted shared.txt",
    }
    assert b.events == []


def test_cancel_through_b_stops_the_tool_in_a(servers: tuple[ServerProcess, ServerProcess]) -> None:
    """``slow_compute {seconds: 60}`` created through A and cancelled through B: acked, seen
    ``cancelled`` through both, and the tool in A stops early; bob cannot touch it."""
    a, b = servers
    task_id = create(a.url, "slow_compute", {"seconds": 60, "label": "shared"})
    working = {**BASE, "taskId": task_id, "status": "working"}
    assert get(b.url, task_id) == working
    refused = rpc(b.url, "tasks/cancel", {"taskId": task_id}, token="tok-b")
    assert refused == (
        400,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {
                "code": -32602,
                "message": f"Task not found: {task_id}",
                "data": {"taskId": task_id},
            },
        },
    )
    started = time.monotonic()
    assert result_of(b.url, "tasks/cancel", {"taskId": task_id}) == ACK
    cancelled = {
        **working,
        "status": "cancelled",
        "statusMessage": "The task was cancelled by request.",
    }
    assert get(b.url, task_id) == cancelled
    assert get(a.url, task_id) == cancelled
    assert a.event(lambda e: e.get("taskId") == task_id, DEADLINE_S) == {
        "event": "returned",
        "tool": "slow_compute",
        "taskId": task_id,
        "text": "shared: cancelled",
    }
    assert time.monotonic() - started < DEADLINE_S
    # A second cancel of the finished task is acked and changes nothing.
    assert result_of(b.url, "tasks/cancel", {"taskId": task_id}) == ACK
    assert get(a.url, task_id) == cancelled
    assert b.events == []
