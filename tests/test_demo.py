"""`python -m taskstore demo` runs the whole lifecycle and exits 0."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from taskstore.demo import run_demo


def test_demo_shows_every_step() -> None:
    """The demo prints each lifecycle step with parseable wire JSON and returns 0."""
    out = io.StringIO()
    assert run_demo("memory://", out=out) == 0
    text = out.getvalue()
    for marker in (
        "input_required",
        "completed",
        "failed",
        "cancelled",
        "tasks/list",
        "wait() returned",
        "upstream API returned 503",
    ):
        assert marker in text
    results = [line for line in text.splitlines() if "won" in line and "lost" not in line]
    assert len(results) == 1
    created = next(line for line in text.splitlines() if "CreateTaskResult:" in line)
    payload = json.loads(created.split("CreateTaskResult: ", 1)[1])
    assert set(payload["task"]) == {
        "taskId",
        "status",
        "createdAt",
        "lastUpdatedAt",
        "ttl",
        "pollInterval",
    }


def test_demo_command_exits_zero() -> None:
    """`python -m taskstore demo` exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "taskstore", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "== done" in result.stdout
