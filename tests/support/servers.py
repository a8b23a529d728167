"""What every server-backed fixture needs: skip-or-fail, free ports, fresh names, drivers.

Kept free of driver imports, so any test module may use it whatever is installed.

A missing server or driver skips the tests that need it locally, and fails them when
``TASKSTORE_REQUIRE_SERVERS=1`` (CI): nothing a selected test needs may vanish silently. Test
modules that import a driver at module level call :func:`require_modules` first; it fails the
module's collection under ``TASKSTORE_REQUIRE_SERVERS=1`` unless the run's ``-m`` expression
deselects every marker the module carries (the ``core`` tox env deselects ``redis``, say).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import uuid
from collections.abc import Iterable
from typing import NoReturn

import pytest
from _pytest.mark.expression import Expression

__all__ = [
    "configure",
    "free_port",
    "fresh_name",
    "missing_modules",
    "need_modules",
    "require_modules",
    "servers_required",
    "unavailable",
]

#: What to run for each driver a test may need.
INSTALL_HINTS = {
    "redis": "pip install redis",
    "fakeredis": "pip install 'fakeredis[lua]'",
    "boto3": "pip install boto3",
    "botocore": "pip install boto3",
    "moto": "pip install 'moto[dynamodb]'",
    "psycopg": "pip install 'psycopg[binary,pool]'",
    "psycopg_pool": "pip install 'psycopg[binary,pool]'",
}

_markexpr = ""


def configure(config: pytest.Config) -> None:
    """Remember the run's ``-m`` expression (called from ``conftest.pytest_configure``)."""
    global _markexpr
    _markexpr = str(config.option.markexpr or "")


def _selected(markers: Iterable[str]) -> bool:
    """Whether a test carrying exactly ``markers`` is selected by the run's ``-m`` expression."""
    if not _markexpr:
        return True
    names = set(markers)
    return Expression.compile(_markexpr).evaluate(lambda name, **_: name in names)


def missing_modules(*names: str) -> list[str]:
    """The names among ``names`` that cannot be imported."""
    return [name for name in names if not _importable(name)]


def _importable(name: str) -> bool:
    # find_spec("a.b") imports "a" first, and raises instead of answering None when "a" is
    # missing itself.
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _missing_reason(missing: list[str]) -> str:
    hints = "; ".join(INSTALL_HINTS.get(name, f"pip install {name}") for name in missing)
    return f"{', '.join(missing)} not installed ({hints})"


def need_modules(*names: str) -> None:
    """Skip the running test (fail it under ``TASKSTORE_REQUIRE_SERVERS=1``) unless every
    module in ``names`` is importable. For fixtures and test bodies."""
    missing = missing_modules(*names)
    if missing:
        unavailable(_missing_reason(missing))


def require_modules(*names: str, markers: Iterable[str]) -> None:
    """At module level, before a test module imports a driver: skip the module when a driver
    is missing, or fail its collection under ``TASKSTORE_REQUIRE_SERVERS=1`` when the run
    selects tests with the module's ``markers``."""
    missing = missing_modules(*names)
    if not missing:
        return
    reason = _missing_reason(missing)
    if servers_required() and _selected(markers):
        pytest.fail(f"{reason} (TASKSTORE_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def servers_required() -> bool:
    """True when CI demands real servers (``TASKSTORE_REQUIRE_SERVERS=1``)."""
    return os.environ.get("TASKSTORE_REQUIRE_SERVERS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when servers are required."""
    if servers_required():
        pytest.fail(f"{reason} (TASKSTORE_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def fresh_name() -> str:
    """A key prefix or table name no other test uses."""
    return f"ts-test-{uuid.uuid4().hex[:12]}"


def free_port(*, bus: bool = False) -> int:
    """A currently free loopback TCP port (and, with ``bus``, its cluster bus port +10000)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not bus:
            return port
        if port + 10000 < 65536:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair found")
