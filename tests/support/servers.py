"""What every server-backed fixture needs: skip-or-fail, free ports, fresh names.

Kept free of driver imports, so any test module may use it whatever is installed.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import NoReturn

import pytest

__all__ = ["free_port", "fresh_name", "servers_required", "unavailable"]


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
