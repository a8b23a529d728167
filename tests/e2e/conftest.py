"""Fixtures of the end-to-end tests: the official MCP Python client's venv. Every test here
carries the ``e2e`` marker (real clients and server processes: the ``all`` tox env runs them,
the per-extra envs leave them out)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from support.servers import unavailable

SCENARIOS = Path(__file__).with_name("mcp_client_scenarios.py")
_E2E = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``e2e``."""
    for item in items:
        if _E2E in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
DEFAULT_VENV = Path.home() / ".cache" / "taskstore" / "mcp-client-venv"


def _missing(reason: str) -> None:
    unavailable(f"{reason}; run .ci/setup-mcp-client.sh")


@pytest.fixture(scope="session")
def mcp_client_python() -> Path:
    """The interpreter of the venv holding the official MCP client (``mcp<2``)."""
    venv = Path(os.environ.get("TASKSTORE_MCP_CLIENT_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        _missing(f"the official MCP client venv is missing at {venv}")
    probe = subprocess.run(
        [str(python), "-c", "import mcp.client.session, mcp.client.experimental"],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        _missing(f"the venv at {venv} has no usable mcp client")
    return python


@pytest.fixture
def run_client(mcp_client_python: Path) -> Callable[..., dict[str, Any]]:
    """``run_client(scenario, url, token=None, *extra)``: the scenario's observations."""

    def run(scenario: str, url: str, token: str | None = None, *extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(mcp_client_python), str(SCENARIOS), scenario, url, token or "", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"client failed:\n{done.stderr[-4000:]}"
        result: dict[str, Any] = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
        return result

    return run
