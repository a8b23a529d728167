"""End-to-end with FastMCP's client (``fastmcp==4.1.4`` on ``mcp==2.3.0``, in its own venv),
the MCP 2026-07-28 client, against ``examples/conformance_server.py`` and
``python -m taskstore serve`` run as real processes (DESIGN §9c, §12).

The client drives tests/e2e/modern_client_scenarios.py; the venv comes from
.ci/setup-modern-client.sh (``TASKSTORE_MODERN_CLIENT_VENV``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from support.examples import EXAMPLES
from support.servers import unavailable

SCENARIOS = Path(__file__).with_name("modern_client_scenarios.py")
DEFAULT_VENV = Path.home() / ".cache" / "taskstore" / "modern-client-venv"
MODERN = "2026-07-28"
URL_LINE = re.compile(r"http://127\.0\.0\.1:\d+/mcp")

#: The conformance fixture tools, in the order the server lists them (``greet`` first).
CONFORMANCE_TOOLS = [
    "greet",
    "slow_compute",
    "failing_job",
    "protocol_error_job",
    "confirm_delete",
    "multi_input",
    "test_tool_with_task",
    "test_missing_capability",
    "test_streaming_elicitation",
    "test_logging_tool",
]
#: The FastMCP client's declaration with an elicitation handler and no sampling handler.
DECLARED = {"elicitation": {"form": {}, "url": {}}}
#: What the wire shows of a stateless 2026-07-28 conversation: POSTs only, one version in
#: both the header and ``_meta``, routing headers equal to the body, no session.
STATELESS = {
    "httpMethods": ["POST"],
    "headerVersions": [MODERN],
    "metaVersions": [MODERN],
    "headerMismatches": [],
    "sessions": False,
}
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
#: ``tools/call`` POSTs of one tool call: the first carries no answers and no state; each retry
#: carries the answers to the previous ``InputRequiredResult`` and its ``requestState``.
FIRST_ROUND = {"inputResponses": 0, "requestState": False}
ONE_ANSWER = {"inputResponses": 1, "requestState": True}
TWO_ANSWERS = {"inputResponses": 2, "requestState": True}


@pytest.fixture(scope="session")
def modern_client_python() -> Path:
    """The interpreter of the venv holding FastMCP's client (skip, or fail in CI, if absent)."""
    venv = Path(os.environ.get("TASKSTORE_MODERN_CLIENT_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        unavailable(f"the FastMCP client venv is missing at {venv}; run .ci/setup-modern-client.sh")
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import httpx2, mcp, fastmcp.client.transports; from fastmcp import Client",
        ],
        capture_output=True,
        timeout=120,
    )
    if probe.returncode != 0:
        unavailable(
            f"the venv at {venv} has no usable FastMCP client; run .ci/setup-modern-client.sh"
        )
    return python


def run_scenario(python: Path, scenario: str, url: str) -> dict[str, Any]:
    """The observations ``modern_client_scenarios.py SCENARIO URL`` prints."""
    done = subprocess.run(
        [str(python), str(SCENARIOS), scenario, url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"client failed:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def launched(*argv: str) -> Iterator[str]:
    """Run ``python ARGV --port 0`` with this environment's interpreter; yield its URL line."""
    proc = subprocess.Popen(
        [sys.executable, *argv, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not URL_LINE.fullmatch(line):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"{argv} printed {line!r}, not its URL:\n{err[-4000:]}")
        yield line
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def core(modern_client_python: Path) -> dict[str, Any]:
    """The ``core`` scenario's observations against ``examples/conformance_server.py``."""
    with launched(str(EXAMPLES / "conformance_server.py")) as url:
        return run_scenario(modern_client_python, "core", url)


@pytest.fixture(scope="module")
def served(modern_client_python: Path) -> dict[str, Any]:
    """The ``serve`` scenario's observations against ``python -m taskstore serve``."""
    with launched("-m", "taskstore", "serve") as url:
        return run_scenario(modern_client_python, "serve", url)


def test_client_negotiates_2026_07_28_by_discover(core: dict[str, Any]) -> None:
    """FastMCP's auto mode adopts 2026-07-28 from ``server/discover`` and stays stateless on
    the wire."""
    assert core["protocolVersion"] == MODERN
    assert core["serverName"] == "taskstore-conformance"
    assert core["discover"] == {
        "supportedVersions": [MODERN],
        "cacheScope": "public",
        "capabilities": {"tools": {}, "prompts": {}, "extensions": {TASKS_EXTENSION: {}}},
    }
    assert core["rediscover"] == {"resultType": "complete", "supportedVersions": [MODERN]}
    assert core["wire"] == {
        **STATELESS,
        "methods": ["server/discover", "server/discover", "ping", "tools/list"]
        + ["tools/call"] * 7,
    }
    assert core["idsUnique"] is True


def test_client_ping_gets_method_not_found(core: dict[str, Any]) -> None:
    """``ping``, removed at 2026-07-28, answers -32601 with HTTP 404 to the modern client."""
    assert core["ping"] == {
        "code": -32601,
        "message": "Method not found: ping",
        "data": None,
        "status": 404,
    }


def test_client_lists_and_calls_conformance_tools(core: dict[str, Any]) -> None:
    """tools/list gives the fixture tools in order, each described, and ``greet`` answers in
    one round."""
    assert core["tools"] == CONFORMANCE_TOOLS
    assert core["undescribed"] == []
    assert core["greet"] == {
        "text": "Hello, Ada!",
        "isError": False,
        "asked": [],
        "rounds": [FIRST_ROUND],
    }


def test_client_surfaces_protocol_errors(core: dict[str, Any]) -> None:
    """An unknown tool surfaces -32602, and ``test_missing_capability`` without sampling -32021."""
    assert core["unknownTool"] == {
        "code": -32602,
        "message": "Unknown tool: no_such_tool",
        "data": None,
        "status": 400,
    }
    assert core["declaredCapabilities"] == DECLARED
    assert core["missingCapability"] == {
        "code": -32021,
        "message": "Missing required client capability: sampling",
        "data": {"requiredCapabilities": {"sampling": {}}},
        "status": 400,
    }


def test_client_answers_one_input_round(core: dict[str, Any]) -> None:
    """``confirm_delete`` goes input_required once; the client retries with the answer and
    the state."""
    assert core["confirmDelete"] == {
        "text": "Deleted a.txt",
        "isError": False,
        "asked": ["Delete a.txt?"],
        "rounds": [FIRST_ROUND, ONE_ANSWER],
    }


def test_client_answers_two_input_requests(core: dict[str, Any]) -> None:
    """``multi_input`` asks for a name and a confirmation in one input_required round; the
    client answers both in one retry, and the result uses both answers."""
    assert core["multiInput"] == {
        "text": "Ada confirmed",
        "isError": False,
        "asked": ["What is your name?", "Confirm?"],
        "rounds": [FIRST_ROUND, TWO_ANSWERS],
    }


def test_client_lists_and_calls_serve_demo_tools(served: dict[str, Any]) -> None:
    """Against ``python -m taskstore serve`` the client negotiates 2026-07-28, lists the demo
    tools, counts words inline, and gets -32021 for the task-required ``long_job``."""
    assert served == {
        "protocolVersion": MODERN,
        "serverName": "taskstore-demo",
        "tools": ["long_job", "word_count", "confirm_action"],
        "undescribed": [],
        "wordCount": {
            "structured": {"words": 3, "characters": 5},
            "isError": False,
            "asked": [],
        },
        # The client does not import fastmcp_tasks, so it does not declare the extension.
        "longJob": {
            "code": -32021,
            "message": f"This request needs the tasks extension ({TASKS_EXTENSION})",
            "data": {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
            "status": 400,
        },
        "wire": {
            **STATELESS,
            "methods": ["server/discover", "tools/list", "tools/call", "tools/call"],
        },
    }
