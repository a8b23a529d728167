"""The prompt reply of a workflow run: the story so far, then a handoff (DESIGN §9b).

Messages narrate intent, plan, each call and result, and end with an ``assistant`` message that
says in plain language what blocked and which calls remain, with arguments resolved where
possible and readable placeholders (``<output from raw_data>``) where not. The reply's ``_meta``
carries the same facts for machines, under the anchor's snake_case keys: ``task_id``,
``task_status``, ``steps``, ``pause_reason``.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

from taskstore.types import to_builtins
from taskstore.workflow.definition import PromptArg, SequentialWorkflow, StepOutput, WorkflowStep
from taskstore.workflow.engine import WorkflowEngine, WorkflowRun

__all__ = ["TASK_ID_META", "plain_prompt_reply", "remaining_calls", "render_guidance", "reply"]

#: ``_meta`` key binding a continuation ``tools/call`` (or a resumed prompt) to its task.
TASK_ID_META = "_task_id"


class _KeepMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_guidance(guidance: str, arguments: Mapping[str, Any]) -> str:
    """Substitute ``{arg}`` placeholders with prompt arguments; unknown ones stay as written."""
    values = _KeepMissing(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
    )
    try:
        return string.Formatter().vformat(guidance, (), values)
    except (ValueError, IndexError):
        return guidance


def _call_arguments(
    step: WorkflowStep, arguments: Mapping[str, Any], outputs: Mapping[str, Any]
) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for name, source in step.sources().items():
        value = WorkflowEngine.resolve_source(source, arguments, outputs)
        if WorkflowEngine.is_missing(value):
            if isinstance(source, StepOutput):
                value = source.placeholder()
            elif isinstance(source, PromptArg):
                value = f"<prompt argument {source.name}>"
        rendered[name] = value
    return rendered


def remaining_calls(workflow: SequentialWorkflow, run: WorkflowRun) -> list[dict[str, Any]]:
    """The calls still to make, in order: ``{"step", "tool", "arguments", "guidance"?}``."""
    statuses = {state.name: state.status for state in run.steps}
    calls = []
    for step in workflow.steps:
        if statuses.get(step.name) == "completed":
            continue
        call: dict[str, Any] = {
            "step": step.name,
            "tool": step.tool,
            "arguments": _call_arguments(step, run.arguments, run.outputs),
        }
        if step.guidance:
            call["guidance"] = render_guidance(step.guidance, run.arguments)
        calls.append(call)
    return calls


def _text(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": {"type": "text", "text": text}}


def _intent(workflow: SequentialWorkflow, arguments: Mapping[str, Any]) -> str:
    given = ", ".join(f"{k}={json.dumps(v)}" for k, v in arguments.items())
    return f"Run the {workflow.name} workflow: {workflow.description}" + (
        f" (arguments: {given})" if given else ""
    )


def _plan(workflow: SequentialWorkflow) -> str:
    lines = [f"Plan ({len(workflow.steps)} steps):"]
    for index, step in enumerate(workflow.steps, 1):
        lines.append(f"{index}. {step.name}: call {step.tool}")
    return "\n".join(lines)


def _blocker(workflow: SequentialWorkflow, reason: Mapping[str, Any]) -> str:
    step = reason.get("blockedStep")
    tool = next((s.tool for s in workflow.steps if s.name == step), "?")
    kind = reason.get("type")
    if kind == "toolError":
        retry = " Retrying may help." if reason.get("retryable") else ""
        error = str(reason.get("error", "")).rstrip(". ")
        return f'Step "{step}" ({tool}) failed: {error}.{retry}'
    if kind == "unresolvableParams":
        return (
            f'Step "{step}" ({tool}) cannot run: no value for its parameter '
            f'"{reason.get("param")}".'
        )
    if kind == "schemaMismatch":
        fields = ", ".join(reason.get("missingFields") or [])
        return f'Step "{step}" ({tool}) cannot run: required input missing: {fields}.'
    return (
        f'Step "{step}" ({tool}) cannot run: it needs the output '
        f'"{reason.get("missingOutput")}"'
        f' of step "{reason.get("producingStep")}", which did not complete.'
    )


def _handoff(workflow: SequentialWorkflow, run: WorkflowRun) -> str:
    if run.status.value == "completed":
        return (
            f"All {len(workflow.steps)} steps of {workflow.name} are completed. Task "
            f"{run.task_id} is completed; tasks/result returns its summary."
        )
    if run.status.is_terminal:
        return f"Task {run.task_id} of workflow {workflow.name} is already {run.status.value}."
    lines = []
    if run.pause_reason is not None:
        lines.append(
            f"I could not finish the {workflow.name} workflow. "
            + _blocker(workflow, run.pause_reason)
        )
    lines.append(
        f"Task {run.task_id} is still {run.status.value}. To finish it, make these calls in "
        f'order, each with "_meta": {{"{TASK_ID_META}": "{run.task_id}"}}:'
    )
    for index, call in enumerate(remaining_calls(workflow, run), 1):
        line = f"{index}. {call['tool']} {json.dumps(call['arguments'], sort_keys=True)}"
        notes = []
        if call["step"] in run.skipped:
            notes.append(
                f'skipped: needs the output of step "{run.skipped[call["step"]]["producingStep"]}"'
            )
        if "guidance" in call:
            notes.append(call["guidance"])
        if notes:
            line += " (" + "; ".join(notes) + ")"
        lines.append(line)
    lines.append(
        f"Then call tasks/result with taskId {run.task_id} for the outcome (or tasks/cancel "
        "with a result to finish it yourself)."
    )
    return "\n".join(lines)


def reply(workflow: SequentialWorkflow, run: WorkflowRun) -> dict[str, Any]:
    """The ``GetPromptResult`` of a task-backed workflow run."""
    messages = [
        _text("user", _intent(workflow, run.arguments)),
        _text("assistant", _plan(workflow)),
    ]
    messages.extend(_text(role, text) for role, text in run.transcript)
    messages.append(_text("assistant", _handoff(workflow, run)))
    meta: dict[str, Any] = {
        "task_id": run.task_id,
        "task_status": run.status.value,
        "steps": [to_builtins(state) for state in run.steps],
    }
    if run.pause_reason is not None:
        meta["pause_reason"] = run.pause_reason
    return {"description": workflow.description, "messages": messages, "_meta": meta}


def plain_prompt_reply(
    workflow: SequentialWorkflow, arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``GetPromptResult`` of a workflow without task backing: intent, plan and the calls
    to make, with no task and no ``_meta``."""
    lines = ["Make these calls in order:"]
    for index, step in enumerate(workflow.steps, 1):
        args = _call_arguments(step, arguments, {})
        line = f"{index}. {step.tool} {json.dumps(args, sort_keys=True)}"
        if step.guidance:
            line += f" ({render_guidance(step.guidance, arguments)})"
        lines.append(line)
    return {
        "description": workflow.description,
        "messages": [
            _text("user", _intent(workflow, arguments)),
            _text("assistant", _plan(workflow)),
            _text("assistant", "\n".join(lines)),
        ],
    }
