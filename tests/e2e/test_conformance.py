"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``) against
``examples/conformance_server.py`` on the memory store.

Two pinned CLIs (``.ci/setup-conformance.sh`` installs them and Node 22): 0.1.16 for the legacy
era (``initialize`` and a session), 0.2.0-alpha.12 at ``--spec-version 2026-07-28`` for the
stateless era. The tasks extension's scenarios run without ``--spec-version`` (with it the CLI
skips them silently, writing no checks) and only once the server advertises the extension in
``server/discover``. A scenario passes when its ``checks.json`` has a SUCCESS and no FAILURE.

To try the harness itself, ``TASKSTORE_CONFORMANCE_SERVER`` picks another server: ``serve``
for ``python -m taskstore serve`` (legacy era only), or the path of a script taking the same
arguments as the example.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from support.conformance import cli_entry, failure_message, node_binary, run_scenario
from support.examples import EXAMPLES

LEGACY = "0.1.16"
MODERN = "0.2.0-alpha.12"
SPEC_VERSION = "2026-07-28"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

#: 0.1.16, legacy era (the CLI ignores --spec-version with --scenario, so none is passed).
LEGACY_SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "prompts-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
]
#: 0.2.0-alpha.12 at --spec-version 2026-07-28, stateless era.
MODERN_SCENARIOS = [
    "server-stateless",
    "http-header-validation",
    "tools-list",
    "prompts-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
]
#: 0.2.0-alpha.12's tasks extension (SEP-2663) scenarios, run WITHOUT --spec-version.
TASKS_SCENARIOS = [
    "tasks-lifecycle",
    "tasks-capability-negotiation",
    "tasks-wire-fields",
    "tasks-request-state-removal",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-dispatch-and-envelope",
    "tasks-required-task-error",
    "tasks-mrtr-composition",
]

START_TIMEOUT_S = 30.0


def _server_command() -> list[str]:
    """How to start the server under test: the example, unless the environment says otherwise."""
    chosen = os.environ.get("TASKSTORE_CONFORMANCE_SERVER", "")
    if chosen == "serve":
        return [sys.executable, "-m", "taskstore", "serve", "--store", "memory://"]
    script = Path(chosen) if chosen else EXAMPLES / "conformance_server.py"
    if not script.is_file():
        pytest.fail(f"{script} is missing", pytrace=False)
    return [sys.executable, str(script), "--store", "memory://"]


class Server:
    """A running server process, its URL and its stderr (kept in a file, never a full pipe)."""

    def __init__(self, proc: subprocess.Popen[str], url: str, stderr: IO[str]) -> None:
        self.proc = proc
        self.url = url
        self._stderr = stderr

    def stderr_tail(self, chars: int = 3000) -> str:
        self._stderr.flush()
        text = Path(self._stderr.name).read_text(errors="replace")
        return text[-chars:]

    def health(self) -> str:
        """Empty while the process runs, else its exit code and the end of its stderr."""
        code = self.proc.poll()
        if code is None:
            return ""
        return f"\nthe server exited with code {code}; its stderr ends:\n{self.stderr_tail()}"


@pytest.fixture(scope="module")
def installed() -> None:
    """Node 22 and both pinned CLIs are installed (else skip, or fail in CI)."""
    node_binary()
    for version in (LEGACY, MODERN):
        cli_entry(version)


@pytest.fixture(scope="module")
def server(installed: None) -> Iterator[Server]:
    """The conformance server on a free loopback port (memory store), stopped at the end."""
    command = [*_server_command(), "--host", "127.0.0.1", "--port", "0"]
    with tempfile.NamedTemporaryFile("w+", prefix="conformance-server-", suffix=".log") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            stdout = proc.stdout
            assert stdout is not None
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
            reader.start()
            reader.join(START_TIMEOUT_S)
            url = lines[0].strip() if lines else ""
            if not url.startswith("http://"):
                code = proc.poll()
                why = f"exited with code {code}" if code is not None else "hangs"
                log.flush()
                stderr = Path(log.name).read_text(errors="replace")[-3000:]
                pytest.fail(
                    f"{' '.join(command)} printed no URL line (got {url!r}; it {why}, waited "
                    f"{START_TIMEOUT_S:.0f} s at most); stderr:\n{stderr}",
                    pytrace=False,
                )
            yield Server(proc, url, log)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.communicate(timeout=15)  # reaps it and closes the stdout pipe


def _discover(url: str) -> dict[str, Any] | None:
    """The result of one 2026-07-28 ``server/discover`` POST, or None if there is none."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": SPEC_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "taskstore-tests", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}
    request = urllib.request.Request(
        url,
        json.dumps(body).encode(),
        {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": SPEC_VERSION,
            "Mcp-Method": "server/discover",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            kind = response.headers.get("Content-Type", "")
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None  # an HTTPError (a legacy-only server's 400, say) included
    if kind.startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1] if data else ""
    try:
        reply = json.loads(text)
    except ValueError:
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    return result if isinstance(result, dict) else None


@pytest.fixture(scope="module")
def tasks_served(server: Server) -> bool:
    """Whether the server's ``server/discover`` advertises the tasks extension."""
    result = _discover(server.url) or {}
    extensions = (result.get("capabilities") or {}).get("extensions") or {}
    return isinstance(extensions, dict) and TASKS_EXTENSION in extensions


def check(server: Server, version: str, scenario: str, spec_version: str | None = None) -> None:
    """Run one scenario against ``server``; fail with every FAILURE check if it did not pass."""
    result = run_scenario(version, scenario, server.url, spec_version)
    message = failure_message(result)
    if message is not None:
        pytest.fail(message + server.health(), pytrace=False)


@pytest.mark.parametrize("scenario", LEGACY_SCENARIOS)
def test_legacy_scenario(server: Server, scenario: str) -> None:
    """The legacy-era (2025-11-25) scenario passes under conformance 0.1.16."""
    check(server, LEGACY, scenario)


@pytest.mark.parametrize("scenario", MODERN_SCENARIOS)
def test_modern_scenario(server: Server, scenario: str) -> None:
    """The stateless-era scenario passes under conformance 0.2.0-alpha.12 at 2026-07-28."""
    check(server, MODERN, scenario, SPEC_VERSION)


@pytest.mark.parametrize("scenario", TASKS_SCENARIOS)
def test_tasks_scenario(server: Server, tasks_served: bool, scenario: str) -> None:
    """The tasks-extension scenario passes under conformance 0.2.0-alpha.12 once advertised."""
    if not tasks_served:
        pytest.skip("SEP-2663 tasks extension not served yet (issue 13)")
    check(server, MODERN, scenario)
