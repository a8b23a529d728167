"""A tiny MCP server for ``bench_server.py``: the tools ``python -m taskstore serve`` lacks.

- ``big {size}`` (task optional): returns ``"x" * size`` as its text result, to measure
  ``tasks/get`` of a completed task holding a large result (inline in MCP 2026-07-28).
- ``ask {}`` (task optional): asks the client a yes/no question (``ctx.elicit``; the task goes
  ``input_required``), then returns ``{"resumedAt": time.time()}`` as its structured content:
  the wall time at which the tool got the answer, wherever the answer arrived.

Same command line and stdout contract as ``python -m taskstore serve`` (``taskstore.cli.run_cli``:
``[--store URL] [--host] [--port]``, the endpoint URL alone on the first stdout line); anonymous
MCP 2026-07-28 callers may create tasks, as with ``serve``::

    python benchmarks/_big_result_server.py --port 0 --store redis://127.0.0.1:6379/0?prefix=x
"""

from __future__ import annotations

import sys
import time
from typing import Any

from taskstore.cli import run_cli
from taskstore.mcp import McpServer, ToolContext
from taskstore.store import TaskStore

_GO_ON = {
    "type": "object",
    "properties": {"ok": {"type": "boolean", "description": "Go on?"}},
    "required": ["ok"],
}


def big(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Return ``size`` characters (default 300 000)."""
    return "x" * int(arguments.get("size", 300_000))


def ask(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Ask whether to go on; return when the answer reached the tool (``time.time()``)."""
    answer = ctx.elicit("Go on?", _GO_ON)
    resumed = time.time()
    return {"resumedAt": resumed, "action": answer.get("action")}


def build(store: TaskStore) -> McpServer:
    """The benchmark's server over ``store``."""
    server = McpServer(store, name="taskstore-bench")
    server.add_tool(
        big,
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"size": {"type": "integer", "minimum": 0}},
        },
    )
    server.add_tool(ask, task_support="optional", input_schema={"type": "object", "properties": {}})
    return server


if __name__ == "__main__":
    sys.exit(
        run_cli(
            build,
            prog="_big_result_server.py",
            description=__doc__,
            store_options={"allow_anonymous": True},
        )
    )
