"""Where a workflow keeps its state: task variables under ``_workflow.`` (DESIGN §9b).

- ``_workflow.progress``: ``{"goal", "steps": [{"name", "tool", "status"}], "schemaVersion": 1}``
- ``_workflow.arguments``: the prompt arguments (so a resume needs none)
- ``_workflow.result.<step>``: each completed step's output, written before the next step runs
- ``_workflow.pause_reason``: why the run stopped (absent once nothing blocks)
- ``_workflow.skipped``: ``{step: pause reason}`` for steps skipped because a dependency failed
- ``_workflow.extras``: continuation calls of tools that are not workflow steps

Every change goes through :meth:`TaskStore.update_variables` (compare-and-set), so a prompt
run and parallel continuation calls never lose each other's writes. These helpers are pure
functions from the current variables to the changes to merge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from taskstore.types import WorkflowStepStatus

__all__ = [
    "ARGUMENTS",
    "EXTRAS",
    "PAUSE_REASON",
    "PROGRESS",
    "RESULT_PREFIX",
    "SCHEMA_VERSION",
    "SKIPPED",
    "step_output",
    "step_statuses",
    "summary_result",
    "with_statuses",
]

PROGRESS = "_workflow.progress"
ARGUMENTS = "_workflow.arguments"
RESULT_PREFIX = "_workflow.result."
PAUSE_REASON = "_workflow.pause_reason"
SKIPPED = "_workflow.skipped"
EXTRAS = "_workflow.extras"
SCHEMA_VERSION = 1


def step_statuses(variables: Mapping[str, Any]) -> dict[str, WorkflowStepStatus]:
    """Step name → status from ``_workflow.progress`` (empty when absent)."""
    progress = variables.get(PROGRESS)
    if not isinstance(progress, Mapping):
        return {}
    return {
        step["name"]: step["status"]
        for step in progress.get("steps", [])
        if isinstance(step, Mapping) and "name" in step and "status" in step
    }


def with_statuses(
    variables: Mapping[str, Any], changes: Mapping[str, WorkflowStepStatus]
) -> dict[str, Any]:
    """A copy of ``_workflow.progress`` with the given step statuses changed."""
    progress = dict(variables[PROGRESS])
    progress["steps"] = [
        {**step, "status": changes.get(step["name"], step["status"])} for step in progress["steps"]
    ]
    return progress


def step_output(result: Mapping[str, Any]) -> Any:
    """A step's output: the result's ``structuredContent``, else the parsed JSON of its single
    text block, else that text, else ``None``."""
    if "structuredContent" in result:
        return result["structuredContent"]
    content = result.get("content")
    if isinstance(content, list) and len(content) == 1:
        block = content[0]
        if isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str):
                try:
                    return json.loads(text)
                except ValueError:
                    return text
    return None


def summary_result(name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The ``CallToolResult``-shaped outcome of a finished workflow task."""
    progress = variables.get(PROGRESS) or {}
    names = [step["name"] for step in progress.get("steps", [])]
    outputs = {step: variables.get(RESULT_PREFIX + step) for step in names}
    text = f"Workflow {name} completed all {len(names)} steps: {', '.join(names)}."
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"steps": outputs},
        "isError": False,
    }
