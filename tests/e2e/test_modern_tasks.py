"""End-to-end of the tasks extension (SEP-2663, DESIGN §9c) with real clients and real server
processes: FastMCP's SEP-2663 client (``fastmcp-tasks==4.1.4``) through every task outcome
against examples/conformance_server.py, and a 2025-11-25 client (``mcp<2``) next to it on one
authenticated server, whose tasks the modern era reads and cancels under the same owner rules.

The clients drive tests/e2e/modern_tasks_scenarios.py in their own venvs
(.ci/setup-modern-client.sh, .ci/setup-mcp-client.sh); the servers run with this
environment's interpreter (tests/e2e/tasks_store_server.py reports its tools' returns).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.examples import EXAMPLES
from support.modern import META_SERVER_INFO
from support.servers import unavailable
from support.tasks_e2e import TIMESTAMP, ServerProcess, rpc

HERE = Path(__file__).parent
SCENARIOS = HERE / "modern_tasks_scenarios.py"
TASKS_SERVER = HERE / "tasks_store_server.py"
MODERN_VENV = Path.home() / ".cache" / "taskstore" / "modern-client-venv"
LEGACY_VENV = Path.home() / ".cache" / "taskstore" / "mcp-client-venv"
TASK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

CONFORMANCE_META = {META_SERVER_INFO: {"name": "taskstore-conformance", "version": "0.1.0"}}
#: The task fields every ``tasks/get`` of the fixture server shows (store defaults).
LIFETIME = {"ttlMs": 3_600_000, "pollIntervalMs": 1000}
ACK = {"resultType": "complete", "_meta": CONFORMANCE_META}
CANCELLED = "The task was cancelled by request."
CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean", "description": "Delete the file?"}},
    "required": ["confirm"],
}


def _elicitation(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {"message": text, "mode": "form", "requestedSchema": schema},
    }


def not_found(task_id: str) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON-RPC error of a ``tasks/*`` on an unknown or foreign task."""
    error = {"code": -32602, "message": f"Task not found: {task_id}", "data": {"taskId": task_id}}
    return 400, error


def _text_result(text: str, is_error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


# -- processes -------------------------------------------------------------------------------


def client_python(venv: Path, probe: str, setup: str) -> Path:
    """The interpreter of a client venv (skip, or fail under TASKSTORE_REQUIRE_SERVERS=1)."""
    python = venv / "bin" / "python"
    if not python.exists():
        unavailable(f"the client venv is missing at {venv}; run {setup}")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, timeout=120)
    if done.returncode != 0:
        unavailable(f"the venv at {venv} cannot import its client; run {setup}")
    return python


@pytest.fixture(scope="module")
def modern_python() -> Path:
    """FastMCP's venv with the SEP-2663 client (``fastmcp_tasks``)."""
    venv = Path(os.environ.get("TASKSTORE_MODERN_CLIENT_VENV", MODERN_VENV))
    return client_python(
        venv, "import httpx2, fastmcp, fastmcp_tasks", ".ci/setup-modern-client.sh"
    )


@pytest.fixture(scope="module")
def legacy_python() -> Path:
    """The official ``mcp<2`` client's venv."""
    venv = Path(os.environ.get("TASKSTORE_MCP_CLIENT_VENV", LEGACY_VENV))
    return client_python(
        venv, "import mcp.client.session, mcp.client.experimental", ".ci/setup-mcp-client.sh"
    )


def start_client(
    python: Path, scenario: str, url: str, token: str = "", *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(python), str(SCENARIOS), scenario, url, token, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_client(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The observations the scenario printed (fails with its stderr if it failed)."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"client failed:\n{err[-4000:]}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def conformance_url() -> Iterator[str]:
    """examples/conformance_server.py on a free port (memory store)."""
    server = ServerProcess([str(EXAMPLES / "conformance_server.py"), "--port", "0"])
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[ServerProcess]:
    """tests/e2e/tasks_store_server.py (memory store) with tokens tok-a → alice and tok-b →
    bob; requests without a token stay anonymous."""
    server = ServerProcess([str(TASKS_SERVER), "memory://", "--auth"])
    yield server
    server.stop()
    assert server.proc.returncode == 0, server.stderr[-4000:]


def strip_times(task: dict[str, Any], task_id: str | None = None) -> dict[str, Any]:
    """``task`` without its timestamps, after checking their ISO-8601 form (and the id)."""
    assert TIMESTAMP.match(task["createdAt"]), task
    assert TIMESTAMP.match(task["lastUpdatedAt"]), task
    assert task["lastUpdatedAt"] >= task["createdAt"]
    if task_id is not None:
        assert task["taskId"] == task_id
    return {k: v for k, v in task.items() if k not in ("createdAt", "lastUpdatedAt")}


# -- 1. FastMCP's SEP-2663 client against the conformance fixtures ------------------------------


@pytest.fixture(scope="module")
def lifecycle(modern_python: Path, conformance_url: str) -> dict[str, Any]:
    """The ``lifecycle`` scenario's observations."""
    return finish_client(start_client(modern_python, "lifecycle", conformance_url))


def test_task_created_polled_and_completed(lifecycle: dict[str, Any]) -> None:
    """``slow_compute`` as a task: a flat CreateTaskResult (working), ``status()`` working,
    ``wait()`` completed with the result inline, ``result()`` its text."""
    quick = lifecycle["quick"]
    task_id = quick["created"]["taskId"]
    assert TASK_ID.match(task_id)
    assert lifecycle["protocolVersion"] == "2026-07-28"
    assert strip_times(quick["created"], task_id) == {
        "resultType": "task",
        "taskId": task_id,
        "status": "working",
        **LIFETIME,
        "_meta": CONFORMANCE_META,
    }
    assert strip_times(quick["status"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "working",
        **LIFETIME,
        "_meta": CONFORMANCE_META,
    }
    assert strip_times(quick["final"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "completed",
        **LIFETIME,
        "result": _text_result("quick: computed after 3 s"),
        "_meta": CONFORMANCE_META,
    }
    assert quick["final"]["createdAt"] == quick["created"]["createdAt"]
    assert quick["result"] == {"text": "quick: computed after 3 s", "isError": False}


def test_is_error_result_completes_the_task(lifecycle: dict[str, Any]) -> None:
    """``failing_job``'s ``isError`` result ends the task ``completed`` with that result;
    ``result()`` raises it as a ToolError, or returns it with ``raise_on_error=False``."""
    failing = lifecycle["failing"]
    task_id = failing["created"]["taskId"]
    assert strip_times(failing["final"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "completed",
        **LIFETIME,
        "result": _text_result("The job failed: the input could not be processed", True),
        "_meta": CONFORMANCE_META,
    }
    assert failing["raised"] == {
        "type": "ToolError",
        "message": "The job failed: the input could not be processed",
    }
    assert failing["lenient"] == {
        "text": "The job failed: the input could not be processed",
        "isError": True,
    }


def test_jsonrpc_error_fails_the_task(lifecycle: dict[str, Any]) -> None:
    """``protocol_error_job``'s JSON-RPC error ends the task ``failed`` with the error and a
    status message, and no result; ``result()`` raises its message."""
    broken = lifecycle["protocolError"]
    task_id = broken["final"]["taskId"]
    assert strip_times(broken["final"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "failed",
        "statusMessage": "The job hit an internal protocol error",
        **LIFETIME,
        "error": {"code": -32603, "message": "The job hit an internal protocol error"},
        "_meta": CONFORMANCE_META,
    }
    assert broken["raised"] == {
        "type": "ToolError",
        "message": "The job hit an internal protocol error",
    }


def test_input_required_answered_through_the_elicitation_handler(
    lifecycle: dict[str, Any],
) -> None:
    """``confirm_delete`` parks ``input_required`` with its one elicitation; ``result()``
    answers it through the client's handler with ``tasks/update`` and the task completes."""
    confirm = lifecycle["confirm"]
    task_id = confirm["parked"]["taskId"]
    assert strip_times(confirm["parked"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "input_required",
        "statusMessage": "Delete a.txt?",
        **LIFETIME,
        "inputRequests": {"input-1": _elicitation("Delete a.txt?", CONFIRM_SCHEMA)},
        "_meta": CONFORMANCE_META,
    }
    assert confirm["asked"] == ["Delete a.txt?"]
    assert confirm["result"] == {"text": "Deleted a.txt", "isError": False}
    assert strip_times(confirm["final"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "completed",
        **LIFETIME,
        "result": _text_result("Deleted a.txt"),
        "_meta": CONFORMANCE_META,
    }
    [update] = confirm["update"]
    assert update["inputResponses"] == ["input-1"]
    assert update["status"] == 200
    assert update["reply"]["result"] == ACK
    assert confirm["methods"][:2] == ["tasks/get", "tasks/update"]
    assert set(confirm["methods"][2:]) == {"tasks/get"}


def test_two_input_requests_answered_one_key_at_a_time(lifecycle: dict[str, Any]) -> None:
    """``multi_input`` shows both requests; an unknown key is acked and ignored; after the
    first answer only the second is outstanding; after both the task completes."""
    multi = lifecycle["multi"]
    task_id = multi["parked"]["taskId"]
    name = _elicitation(
        "What is your name?",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
    confirm = _elicitation(
        "Confirm?",
        {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]},
    )
    waiting = {
        "resultType": "complete",
        "taskId": task_id,
        "status": "input_required",
        "statusMessage": "Waiting for a name and a confirmation",
        **LIFETIME,
        "_meta": CONFORMANCE_META,
    }
    both = {**waiting, "inputRequests": {"input-1": name, "input-2": confirm}}
    assert strip_times(multi["parked"], task_id) == both
    for ack in ("unknownAck", "firstAck", "secondAck"):
        assert multi[ack]["result"] == ACK, ack
    assert strip_times(multi["afterUnknown"], task_id) == both
    assert strip_times(multi["afterFirst"], task_id) == {
        **waiting,
        "inputRequests": {"input-2": confirm},
    }
    assert strip_times(multi["final"], task_id) == {
        "resultType": "complete",
        "taskId": task_id,
        "status": "completed",
        **LIFETIME,
        "result": _text_result("Ada confirmed"),
        "_meta": CONFORMANCE_META,
    }
    assert multi["result"] == {"text": "Ada confirmed", "isError": False}


def test_cancel_of_a_running_task(lifecycle: dict[str, Any]) -> None:
    """``slow_compute {seconds: 60}`` cancelled while working: acked empty, ``cancelled`` on the
    next ``tasks/get`` and for good, and ``result()`` raises that it was cancelled."""
    cancel = lifecycle["cancelRunning"]
    task_id = cancel["before"]["taskId"]
    working = {
        "resultType": "complete",
        "taskId": task_id,
        "status": "working",
        **LIFETIME,
        "_meta": CONFORMANCE_META,
    }
    cancelled = {**working, "status": "cancelled", "statusMessage": CANCELLED}
    assert strip_times(cancel["before"], task_id) == working
    assert [ack["result"] for ack in cancel["ack"]] == [ACK]
    assert strip_times(cancel["afterCancel"], task_id) == cancelled
    assert strip_times(cancel["final"], task_id) == cancelled
    assert cancel["final"]["lastUpdatedAt"] == cancel["afterCancel"]["lastUpdatedAt"]
    assert cancel["seconds"] < 30
    assert cancel["raised"] == {"type": "ToolError", "message": f"Task {task_id} was cancelled"}


def test_cancel_of_a_finished_task_is_acked_and_changes_nothing(
    lifecycle: dict[str, Any],
) -> None:
    """``tasks/cancel`` of the completed ``slow_compute`` task answers the empty ack, and the
    task stays completed with the same result and timestamps."""
    quick = lifecycle["quick"]
    assert [ack["result"] for ack in quick["cancelAck"]] == [ACK]
    assert quick["afterCancel"] == quick["final"]
    assert quick["afterCancel"]["status"] == "completed"


def test_call_tool_drives_tasks_transparently(lifecycle: dict[str, Any]) -> None:
    """``client.call_tool`` of ``confirm_delete`` polls the task, answers the elicitation with
    ``tasks/update`` and returns the result; a failed task raises its error message."""
    transparent = lifecycle["transparent"]
    assert transparent == {
        "text": "Deleted b.txt",
        "isError": False,
        "asked": ["Delete b.txt?"],
        "methods": ["tasks/get", "tasks/update", "tools/call"],
        "failed": {"type": "ToolError", "message": "The job hit an internal protocol error"},
    }


def test_input_round_before_the_task(lifecycle: dict[str, Any]) -> None:
    """``test_tool_with_task``: round 1 answers InputRequiredResult; the retry with the answer
    and the state becomes a task (no requestState or inputRequests on it) whose result greets
    the answered name."""
    with_task = lifecycle["withTask"]
    assert with_task["inputRequests"] == {
        "elicitation-1": _elicitation(
            "Who should be greeted?",
            {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        )
    }
    assert with_task["rounds"] == [
        {
            "inputResponses": [],
            "requestState": False,
            "resultType": "input_required",
            "resultKeys": ["_meta", "inputRequests", "requestState", "resultType"],
        },
        {
            "inputResponses": ["elicitation-1"],
            "requestState": True,
            "resultType": "task",
            "resultKeys": [
                "_meta",
                "createdAt",
                "lastUpdatedAt",
                "pollIntervalMs",
                "resultType",
                "status",
                "taskId",
                "ttlMs",
            ],
        },
    ]
    assert with_task["polled"] == ["tasks/get"]
    assert with_task["asked"] == ["Who should be greeted?"]
    assert with_task["text"] == "Hello, Ada!"
    assert with_task["isError"] is False


def test_wire_of_the_tasks_extension(lifecycle: dict[str, Any]) -> None:
    """Every request declared the extension and got HTTP 200; every ``tasks/get`` reply is
    ``resultType: complete`` with modern field names only; update/cancel acks are empty."""
    wire = lifecycle["wire"]
    legacy_keys = {"ttl", "pollInterval", "requestState", "task"}
    assert {x["status"] for x in wire} == {200}
    assert {x["declaresTasks"] for x in wire} == {True}
    for exchange in wire:
        result = exchange["reply"]["result"]
        assert "io.modelcontextprotocol/related-task" not in result["_meta"]
        if result["resultType"] == "input_required":  # the SEP-2322 round before a task
            assert set(result) == {"_meta", "inputRequests", "requestState", "resultType"}
            continue
        assert not legacy_keys & set(result), exchange
        assert "inputRequests" not in result or result["status"] == "input_required"
        if exchange["method"] == "tasks/get":
            assert result["resultType"] == "complete"
            assert result["taskId"] == exchange["taskId"]
            assert result["status"] in (
                "working",
                "input_required",
                "completed",
                "failed",
                "cancelled",
            )
        elif exchange["method"] in ("tasks/update", "tasks/cancel"):
            assert result == ACK
        # FastMCP 4.1.4 sends no Mcp-Name on tasks/* (the server tolerates it, DESIGN §9c).
        if exchange["method"].startswith("tasks/"):
            assert exchange["headerName"] is None
    methods = {x["method"] for x in wire}
    assert methods == {"tools/call", "tasks/get", "tasks/update", "tasks/cancel"}


# -- 3. both eras on one server, one store -------------------------------------------------------


@pytest.fixture(scope="module")
def both_eras(
    auth_server: ServerProcess,
    legacy_python: Path,
    modern_python: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    """The legacy and the modern client, both as alice (``tok-a``), run at the same time: each
    connects, then waits at a barrier (a directory) for the other before its first call."""
    meet = str(tmp_path_factory.mktemp("barrier"))
    legacy = start_client(legacy_python, "legacy_side", auth_server.url, "tok-a", meet)
    modern = start_client(modern_python, "modern_side", auth_server.url, "tok-a", meet)
    return {"legacy": finish_client(legacy), "modern": finish_client(modern)}


def test_legacy_and_modern_clients_on_one_server_at_once(
    both_eras: dict[str, dict[str, Any]],
) -> None:
    """Run side by side as alice, the 2025-11-25 client and the 2026-07-28 client each see
    their own era's task lifecycle: legacy ``isError`` → failed, modern ``isError`` →
    completed, input answered through tasks/result and through tasks/update."""
    legacy, modern = both_eras["legacy"], both_eras["modern"]
    # Both sessions were open, and working, at the same time.
    assert max(legacy["started"], modern["started"]) < min(legacy["ended"], modern["ended"])
    assert legacy["protocolVersion"] == "2025-11-25"
    assert legacy["quick"]["statuses"] == ["working", "completed"]
    assert legacy["quick"]["text"] == "legacy: computed after 0.5 s"
    assert legacy["failing"]["statuses"] == ["working", "failed"]
    assert legacy["failing"]["isError"] is True
    assert legacy["failing"]["text"] == "The job failed: the input could not be processed"
    assert legacy["protocolError"]["statuses"] == ["working", "failed"]
    assert legacy["protocolError"]["error"] == {
        "code": -32603,
        "message": "The job hit an internal protocol error",
    }
    assert legacy["confirm"] == {
        "taskId": legacy["confirm"]["taskId"],
        "sawInputRequired": True,
        "asked": ["Delete legacy.txt?"],
        "text": "Deleted legacy.txt",
        "final": "completed",
    }
    assert legacy["long"]["status"] == "working"

    assert modern["protocolVersion"] == "2026-07-28"
    assert modern["quick"] == {
        "final": "completed",
        "text": "modern: computed after 1 s",
        "isError": False,
    }
    assert modern["confirm"] == {
        "text": "Deleted modern.txt",
        "isError": False,
        "asked": ["Delete modern.txt?"],
    }
    assert modern["failing"] == {
        "final": "completed",
        "text": "The job failed: the input could not be processed",
        "isError": True,
    }


def test_legacy_tasks_through_modern_tasks_get_and_cancel(
    both_eras: dict[str, dict[str, Any]], auth_server: ServerProcess
) -> None:
    """Alice's legacy-created tasks read through modern ``tasks/get`` with their outcomes;
    bob gets -32602; alice's modern ``tasks/cancel`` stops the running one in the server."""
    legacy, url = both_eras["legacy"], auth_server.url
    # mcp<2's call_tool_as_task asks for a 60 s TTL.
    base = {
        "resultType": "complete",
        "ttlMs": 60_000,
        "pollIntervalMs": 1000,
        "_meta": CONFORMANCE_META,
    }

    quick_id = legacy["quick"]["taskId"]
    status, got = rpc(url, "tasks/get", {"taskId": quick_id}, "tok-a")
    assert status == 200
    assert strip_times(got["result"], quick_id) == {
        **base,
        "taskId": quick_id,
        "status": "completed",
        "result": _text_result("legacy: computed after 0.5 s"),
    }
    confirm_id = legacy["confirm"]["taskId"]
    _, got = rpc(url, "tasks/get", {"taskId": confirm_id}, "tok-a")
    assert strip_times(got["result"], confirm_id) == {
        **base,
        "taskId": confirm_id,
        "status": "completed",
        "result": _text_result("Deleted legacy.txt"),
    }
    # The legacy era failed the isError task: modern tasks/get shows it failed, with an error.
    failing_id = legacy["failing"]["taskId"]
    _, got = rpc(url, "tasks/get", {"taskId": failing_id}, "tok-a")
    assert strip_times(got["result"], failing_id) == {
        **base,
        "taskId": failing_id,
        "status": "failed",
        "statusMessage": "The job failed: the input could not be processed",
        "error": {"code": -32603, "message": "The job failed: the input could not be processed"},
    }
    broken_id = legacy["protocolError"]["taskId"]
    _, got = rpc(url, "tasks/get", {"taskId": broken_id}, "tok-a")
    assert strip_times(got["result"], broken_id) == {
        **base,
        "taskId": broken_id,
        "status": "failed",
        "statusMessage": "The job hit an internal protocol error",
        "error": {"code": -32603, "message": "The job hit an internal protocol error"},
    }

    long_id = legacy["long"]["taskId"]
    for method in ("tasks/get", "tasks/cancel"):
        status, refused = rpc(url, method, {"taskId": long_id}, "tok-b")
        assert (status, refused["error"]) == not_found(long_id), method
    _, got = rpc(url, "tasks/get", {"taskId": long_id}, "tok-a")
    assert strip_times(got["result"], long_id) == {**base, "taskId": long_id, "status": "working"}
    status, ack = rpc(url, "tasks/cancel", {"taskId": long_id}, "tok-a")
    assert (status, ack["result"]) == (200, ACK)
    _, got = rpc(url, "tasks/get", {"taskId": long_id}, "tok-a")
    assert strip_times(got["result"], long_id) == {
        **base,
        "taskId": long_id,
        "status": "cancelled",
        "statusMessage": CANCELLED,
    }
    returned = auth_server.event(lambda e: e.get("taskId") == long_id, timeout=15)
    assert returned == {
        "event": "returned",
        "tool": "slow_compute",
        "taskId": long_id,
        "text": "legacy-long: cancelled",
    }


def test_anonymous_legacy_task_is_invisible_to_anonymous_modern_callers(
    auth_server: ServerProcess, legacy_python: Path
) -> None:
    """A task of an unauthenticated 2025-11-25 session belongs to that session: an anonymous
    modern ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` of its id answer -32602."""
    started = finish_client(start_client(legacy_python, "legacy_start", auth_server.url))
    task_id = started["taskId"]
    assert started["protocolVersion"] == "2025-11-25"
    assert started["status"] == "working"
    for method, extra in (
        ("tasks/get", {}),
        ("tasks/update", {"inputResponses": {}}),
        ("tasks/cancel", {}),
    ):
        status, refused = rpc(auth_server.url, method, {"taskId": task_id, **extra})
        assert (status, refused["error"]) == not_found(task_id), method
    # Alice (authenticated) does not see it either.
    status, refused = rpc(auth_server.url, "tasks/get", {"taskId": task_id}, "tok-a")
    assert (status, refused["error"]) == not_found(task_id)
