"""Fixtures of the MCP layer tests: an in-memory store on a manual clock and a server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import taskstore
from support.mcp import build_server
from taskstore import ManualClock, TaskStore
from taskstore.mcp import Caller, McpServer


@pytest.fixture
def mclock() -> ManualClock:
    """A manual clock (TTL tests move it instead of sleeping)."""
    return ManualClock()


@pytest.fixture
def mstore(mclock: ManualClock) -> Iterator[TaskStore]:
    """An in-memory store with a short poll interval and small list pages."""
    store = taskstore.open("memory://", clock=mclock, poll_interval_ms=20, list_page_size=2)
    yield store
    store.close()


@pytest.fixture
def alice() -> Caller:
    """An authenticated caller."""
    return Caller(owner="alice")


@pytest.fixture
def bob() -> Caller:
    """Another authenticated caller."""
    return Caller(owner="bob")


@pytest.fixture
def server(mstore: TaskStore) -> Iterator[McpServer]:
    """A server with the test tools over ``mstore``."""
    made = build_server(mstore)
    yield made
    made.release.set()  # type: ignore[attr-defined]
    made.close()
