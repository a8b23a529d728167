"""A workflow task survives a server restart on a shared Redis store (DESIGN §9b step 7)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from support.servers import require_modules

require_modules("redis", markers=["redis", "redis_server"])

import taskstore
from support.examples import load_example
from support.mcp import serving
from taskstore.wsgi import McpWsgiApp, bearer_authenticator

pytestmark = [pytest.mark.redis, pytest.mark.redis_server]
Client = Callable[..., dict[str, Any]]


def _serve_once(store_url: str, run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Start the example server on ``store_url``, run one client scenario, stop everything."""
    example = load_example()
    with taskstore.open(store_url, poll_interval_ms=20) as store:
        server = example.build_server(store)
        app = McpWsgiApp(server, authenticate=bearer_authenticator({"alice-token": "alice"}))
        try:
            with serving(app) as endpoint:
                return run(endpoint)
        finally:
            server.close()


def test_workflow_resumes_after_restart(run_client: Client, redis_server: Any) -> None:
    """A paused workflow started on one server is resumed by re-invoking the prompt with its
    task id on a fresh server process state over the same Redis store, and completes."""
    store_url = f"{redis_server.url}?prefix=wf-{uuid.uuid4().hex}"
    started = _serve_once(store_url, lambda url: run_client("workflow_start", url, "alice-token"))
    task_id = started["meta"]["task_id"]
    assert started["meta"]["task_status"] == "working"
    resumed = _serve_once(
        store_url, lambda url: run_client("workflow_resume", url, "alice-token", task_id)
    )
    assert resumed["meta"]["task_id"] == task_id
    assert resumed["meta"]["task_status"] == "completed"
    assert [s["status"] for s in resumed["meta"]["steps"]] == ["completed"] * 3
    assert resumed["summary"]["steps"]["store"] == {"stored": 3, "destination": "memory"}
