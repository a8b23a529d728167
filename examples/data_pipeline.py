"""A data pipeline as a task-backed workflow prompt (DESIGN §9b).

Run it like ``python -m taskstore serve``::

    python examples/data_pipeline.py [--store URL] [--host 127.0.0.1] [--port 8000]

It prints one line, the endpoint URL ``http://HOST:PORT/mcp``, and serves three tools (each
``taskSupport: "optional"``) and the prompt ``data_pipeline`` (required argument ``source``):

- ``fetch_data(source)`` → ``{"rows": [{"region", "amount"}, ...]}`` for the built-in sources
  ``sales`` and ``returns``; any other source is a tool error.
- ``transform_data(rows)`` → ``{"rows": [...], "total": number}``: amounts summed per region.
- ``store_data(rows, destination="memory")`` → ``{"stored": int, "destination": str}``.

``prompts/get data_pipeline {"source": "sales"}`` runs all three steps and completes its task in
one call. With ``{"source": "nowhere"}`` the fetch fails; the reply hands the remaining calls to
the client, which makes them with ``_meta: {"_task_id": id}`` until the task completes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from taskstore.mcp import McpServer, ToolContext, ToolError
from taskstore.store import TaskStore
from taskstore.workflow import (
    PromptArgument,
    SequentialWorkflow,
    WorkflowStep,
    from_step,
    prompt_arg,
    register_workflow,
)
from taskstore.wsgi import run_cli

SOURCES: dict[str, list[dict[str, Any]]] = {
    "sales": [
        {"region": "north", "amount": 120.0},
        {"region": "south", "amount": 80.5},
        {"region": "north", "amount": 42.25},
        {"region": "east", "amount": 10.0},
    ],
    "returns": [
        {"region": "north", "amount": -12.0},
        {"region": "west", "amount": -3.5},
    ],
}

_ROWS_SCHEMA = {"type": "array", "items": {"type": "object"}}

PIPELINE = SequentialWorkflow(
    "data_pipeline",
    "Fetch rows from a source, total them per region, and store the result",
    arguments=[PromptArgument("source", "the data source: sales or returns", required=True)],
    steps=[
        WorkflowStep(
            "fetch",
            "fetch_data",
            {"source": prompt_arg("source")},
            binding="raw_data",
            guidance="Fetch the rows of the {source} source (known sources: sales, returns)",
            retryable=True,
        ),
        WorkflowStep(
            "transform",
            "transform_data",
            {"rows": from_step("raw_data", "rows")},
            binding="clean",
            guidance="Total the fetched rows per region",
        ),
        WorkflowStep(
            "store",
            "store_data",
            {"rows": from_step("clean", "rows")},
            guidance="Store the per-region totals",
        ),
    ],
)


def fetch_data(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Fetch the rows of a built-in data source (sales or returns)."""
    source = arguments["source"]
    if source not in SOURCES:
        raise ToolError(f"Unknown source {source!r}: the known sources are sales and returns")
    return {"rows": [dict(row) for row in SOURCES[source]]}


def transform_data(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Sum the amounts of the rows per region: one row per region, and the grand total."""
    totals: dict[str, float] = {}
    for row in arguments["rows"]:
        if not isinstance(row, dict) or not isinstance(row.get("region"), str):
            raise ToolError("Each row needs a string 'region' and a numeric 'amount'")
        amount = row.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ToolError("Each row needs a string 'region' and a numeric 'amount'")
        totals[row["region"]] = totals.get(row["region"], 0) + amount
    rows = [{"region": region, "amount": amount} for region, amount in totals.items()]
    return {"rows": rows, "total": sum(totals.values())}


def store_data(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Store rows at a destination (this demo keeps them in memory) and count them."""
    destination = arguments.get("destination", "memory")
    return {"stored": len(arguments["rows"]), "destination": destination}


def build_server(store: TaskStore) -> McpServer:
    """The example's MCP server over ``store``."""
    server = McpServer(
        store,
        name="taskstore-data-pipeline",
        instructions="Get the data_pipeline prompt with a source (sales or returns).",
    )
    server.add_tool(
        fetch_data,
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"source": {"type": "string"}},
            "required": ["source"],
        },
    )
    server.add_tool(
        transform_data,
        task_support="optional",
        input_schema={"type": "object", "properties": {"rows": _ROWS_SCHEMA}, "required": ["rows"]},
    )
    server.add_tool(
        store_data,
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"rows": _ROWS_SCHEMA, "destination": {"type": "string"}},
            "required": ["rows"],
        },
    )
    register_workflow(server, PIPELINE)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the example until Ctrl-C or SIGTERM."""
    return run_cli(build_server, argv, prog="data_pipeline.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
