"""The demo tools of ``python -m taskstore serve``.

- ``long_job`` (task required): counts through ``steps`` steps, reporting progress and stopping
  promptly when the task is cancelled.
- ``word_count`` (task optional): counts words; answers inline or as a task.
- ``confirm_action`` (task required): asks the client to confirm (the task goes
  ``input_required`` until the answer arrives), then finishes.
"""

from __future__ import annotations

from typing import Any

from taskstore.mcp.context import ToolContext
from taskstore.mcp.server import McpServer

__all__ = ["register_demo_tools"]


def long_job(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Count through ``steps`` steps of ``interval`` seconds each, with progress; stops
    cooperatively when cancelled."""
    steps = int(arguments.get("steps", 10))
    interval = float(arguments.get("interval", 0.5))
    for step in range(1, steps + 1):
        if ctx.sleep(interval):
            return {"completedSteps": step - 1, "cancelled": True}
        ctx.progress(step, steps, f"step {step} of {steps}")
    return {"completedSteps": steps, "cancelled": False}


def word_count(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Count the words and characters of ``text``."""
    text = str(arguments["text"])
    return {"words": len(text.split()), "characters": len(text)}


def confirm_action(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Ask the user to confirm ``action`` (the task waits in ``input_required``), then report
    what was decided."""
    action = str(arguments["action"])
    answer = ctx.elicit(
        f"Proceed with: {action}?",
        {
            "type": "object",
            "properties": {"confirm": {"type": "boolean", "description": "Go ahead?"}},
            "required": ["confirm"],
        },
    )
    content = answer.get("content") or {}
    if answer.get("action") == "accept" and content.get("confirm") is True:
        return f"Done: {action}"
    return f"Not done: {action} (the user said no)"


def register_demo_tools(server: McpServer) -> None:
    """Register the three demo tools on ``server``."""
    server.add_tool(
        long_job,
        task_support="required",
        input_schema={
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 1, "default": 10},
                "interval": {"type": "number", "minimum": 0, "default": 0.5},
            },
        },
        immediate_response="The job is running; poll the task for progress.",
    )
    server.add_tool(
        word_count,
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    )
    server.add_tool(
        confirm_action,
        task_support="required",
        input_schema={
            "type": "object",
            "properties": {"action": {"type": "string"}},
            "required": ["action"],
        },
    )
