"""The partial execution engine: run what the server can, stop at the first blocker.

:class:`WorkflowEngine` creates (or resumes) the workflow's task, then walks the steps in order.
A step runs when its arguments resolve and the tool's required input fields are present; its
output is written to the task *before* the next step starts, so a crash loses nothing already
done. The first step that cannot run stops the walk with one of four pause reasons
(:class:`~taskstore.types.WorkflowPauseReason`); steps depending on a failed step are marked
``skipped``. When every step is completed the task completes with a summary result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskstore.errors import InvalidTransitionError, TaskStoreError
from taskstore.mcp.failures import unexpected_failure
from taskstore.mcp.tools import error_result, error_text, is_error_result
from taskstore.record import TaskRecord
from taskstore.states import TaskStatus
from taskstore.store import TaskStore
from taskstore.types import (
    WorkflowPauseReason,
    WorkflowProgress,
    WorkflowStepState,
    WorkflowStepStatus,
    to_builtins,
)
from taskstore.workflow.definition import (
    Const,
    PromptArg,
    SequentialWorkflow,
    StepOutput,
    WorkflowStep,
)
from taskstore.workflow.progress import (
    ARGUMENTS,
    PAUSE_REASON,
    PROGRESS,
    RESULT_PREFIX,
    SCHEMA_VERSION,
    SKIPPED,
    step_output,
    step_statuses,
    summary_result,
    with_statuses,
)

__all__ = ["ToolInvoker", "WorkflowEngine", "WorkflowRun", "error_text"]

_log = logging.getLogger("taskstore.workflow")
_MISSING = object()


class ToolInvoker(Protocol):
    """How the engine reaches the server's tools."""

    def required_fields(self, tool: str) -> list[str]:
        """The ``required`` input fields of ``tool``'s input schema."""
        ...

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run ``tool`` inline for the prompt's caller and return its ``CallToolResult``; a
        tool error is a result with ``isError: true``. May raise for protocol-level failures."""
        ...


@dataclass
class WorkflowRun:
    """What one prompt invocation did.

    :ivar task_id: the workflow's task.
    :ivar status: the task's status after the run.
    :ivar steps: every step's state, in workflow order.
    :ivar pause_reason: why the run stopped, or ``None`` when nothing blocks.
    :ivar arguments: the prompt arguments in force.
    :ivar outputs: binding → output of completed steps.
    :ivar transcript: ``(role, text)`` narration of the calls made in this run.
    :ivar skipped: step → pause reason of steps skipped for a failed dependency.
    """

    task_id: str
    status: TaskStatus
    steps: list[WorkflowStepState]
    pause_reason: dict[str, Any] | None
    arguments: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    transcript: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Blocked(Exception):
    def __init__(self, reason: WorkflowPauseReason) -> None:
        super().__init__(reason.type)
        self.reason = reason


class WorkflowEngine:
    """Runs a :class:`SequentialWorkflow` against a store and the server's tools.

    :param workflow: the (validated) definition.
    :param store: where the workflow's task lives.
    :param invoker: runs tools inline.
    """

    def __init__(
        self, workflow: SequentialWorkflow, store: TaskStore, invoker: ToolInvoker
    ) -> None:
        self.workflow = workflow
        self.store = store
        self.invoker = invoker

    def start(self, owner: str, arguments: Mapping[str, Any]) -> WorkflowRun:
        """Create the workflow's task for ``owner`` and run as many steps as possible."""
        record = self.store.create(
            owner,
            request_method=self.workflow.name,
            request={"name": self.workflow.name, "arguments": dict(arguments)},
        )
        progress = to_builtins(
            WorkflowProgress(
                goal=self.workflow.description,
                steps=[
                    WorkflowStepState(name=step.name, tool=step.tool, status="pending")
                    for step in self.workflow.steps
                ],
                schema_version=SCHEMA_VERSION,
            )
        )
        record = self.store.set_variables(
            record.task_id, owner, {PROGRESS: progress, ARGUMENTS: dict(arguments)}
        )
        return self._run(record, owner)

    def resume(
        self, owner: str, task_id: str, arguments: Mapping[str, Any] | None = None
    ) -> WorkflowRun:
        """Continue the workflow of ``task_id`` from its stored progress; ``arguments`` (if
        given) are merged over the stored prompt arguments.

        :raises TaskNotFoundError: unknown, expired or foreign task.
        """
        record = self.store.get(task_id, owner)
        if arguments:
            merged = {**record.variables.get(ARGUMENTS, {}), **arguments}
            record = self.store.set_variables(task_id, owner, {ARGUMENTS: merged})
        return self._run(record, owner)

    # -- the walk ------------------------------------------------------------------------

    def _run(self, record: TaskRecord, owner: str) -> WorkflowRun:
        task_id = record.task_id
        arguments: dict[str, Any] = dict(record.variables.get(ARGUMENTS, {}))
        statuses = step_statuses(record.variables)
        outputs = {
            step.binding: record.variables.get(RESULT_PREFIX + step.name)
            for step in self.workflow.steps
            if step.binding and statuses.get(step.name) == "completed"
        }
        run = WorkflowRun(task_id, record.status, [], None, arguments, outputs)
        if record.is_terminal:
            run.steps = self._states(statuses)
            return run
        pause: WorkflowPauseReason | None = None
        for step in self.workflow.steps:
            if statuses.get(step.name) == "completed":
                continue
            try:
                self._run_step(step, owner, run, statuses)
            except _Blocked as blocked:
                pause = blocked.reason
                break
        if pause is None:
            return self._finish(run, owner, statuses)
        return self._pause(run, owner, statuses, pause)

    def _run_step(
        self,
        step: WorkflowStep,
        owner: str,
        run: WorkflowRun,
        statuses: dict[str, WorkflowStepStatus],
    ) -> None:
        for binding in sorted(step.dependencies()):
            producer = self.workflow.step_producing(binding)
            if producer is not None and statuses.get(producer.name) != "completed":
                raise _Blocked(
                    WorkflowPauseReason(
                        type="unresolvedDependency",
                        blocked_step=step.name,
                        suggested_tool=producer.tool,
                        missing_output=binding,
                        producing_step=producer.name,
                    )
                )
        arguments = self._resolve(step, run)
        missing = [f for f in self.invoker.required_fields(step.tool) if f not in arguments]
        if missing:
            raise _Blocked(
                WorkflowPauseReason(
                    type="schemaMismatch",
                    blocked_step=step.name,
                    suggested_tool=step.tool,
                    missing_fields=missing,
                )
            )
        run.transcript.append(
            ("assistant", f"Calling {step.tool} with {json.dumps(arguments, sort_keys=True)}")
        )
        try:
            result = self.invoker.call(step.tool, arguments)
        except TaskStoreError as exc:
            # The wire form: a BackendError's driver details stay out of the pause reason.
            result = error_result(str(exc.to_jsonrpc()["message"]))
        except Exception as exc:  # noqa: BLE001 - any tool failure pauses the workflow
            # Safe by default, as the tool runner: the pause reason reaches the client, so it
            # gets a generic message with an error id, and the log gets the exception.
            message = unexpected_failure(_log, f"Tool {step.tool}", exc, task_id=run.task_id)
            result = error_result(message)
        if is_error_result(result):
            error = error_text(result) or "the tool reported an error"
            run.transcript.append(("user", f"{step.tool} failed: {error}"))
            statuses[step.name] = "failed"
            self.store.update_variables(
                run.task_id,
                owner,
                lambda r: {PROGRESS: with_statuses(r.variables, {step.name: "failed"})},
            )
            raise _Blocked(
                WorkflowPauseReason(
                    type="toolError",
                    blocked_step=step.name,
                    suggested_tool=step.tool,
                    error=error,
                    retryable=step.retryable,
                )
            )
        output = step_output(result)
        # Durable before the next step: a crash after this point loses nothing done so far.
        self.store.update_variables(
            run.task_id,
            owner,
            lambda r: {
                RESULT_PREFIX + step.name: output,
                PROGRESS: with_statuses(r.variables, {step.name: "completed"}),
            },
        )
        statuses[step.name] = "completed"
        if step.binding:
            run.outputs[step.binding] = output
        run.transcript.append(
            ("user", f"{step.tool} returned {json.dumps(output, sort_keys=True)}")
        )

    def _resolve(self, step: WorkflowStep, run: WorkflowRun) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, source in step.sources().items():
            value = self.resolve_source(source, run.arguments, run.outputs)
            if value is _MISSING:
                raise _Blocked(
                    WorkflowPauseReason(
                        type="unresolvableParams",
                        blocked_step=step.name,
                        suggested_tool=self._suggested_tool(source, step),
                        param=name,
                    )
                )
            resolved[name] = value
        return resolved

    def _suggested_tool(self, source: object, step: WorkflowStep) -> str:
        if isinstance(source, StepOutput):
            producer = self.workflow.step_producing(source.binding)
            if producer is not None:
                return producer.tool
        return step.tool

    @staticmethod
    def resolve_source(
        source: object, arguments: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> Any:
        """The value of an argument source, or a private "missing" marker."""
        if isinstance(source, Const):
            return source.value
        if isinstance(source, PromptArg):
            return arguments.get(source.name, _MISSING)
        if isinstance(source, StepOutput):
            value = outputs.get(source.binding, _MISSING)
            for part in (source.field or "").split(".") if source.field else []:
                if isinstance(value, Mapping) and part in value:
                    value = value[part]
                else:
                    return _MISSING
            return value
        return source

    @staticmethod
    def is_missing(value: object) -> bool:
        """Whether :meth:`resolve_source` found nothing."""
        return value is _MISSING

    # -- ends of a run ---------------------------------------------------------------------

    def _states(self, statuses: Mapping[str, WorkflowStepStatus]) -> list[WorkflowStepState]:
        return [
            WorkflowStepState(name=s.name, tool=s.tool, status=statuses.get(s.name, "pending"))
            for s in self.workflow.steps
        ]

    def _finish(
        self, run: WorkflowRun, owner: str, statuses: dict[str, WorkflowStepStatus]
    ) -> WorkflowRun:
        record = self.store.update_variables(
            run.task_id, owner, lambda r: {PAUSE_REASON: None, SKIPPED: None}
        )
        try:
            record = self.store.complete(
                run.task_id,
                owner,
                summary_result(self.workflow.name, record.variables),
                message=f"Workflow {self.workflow.name} completed",
            )
        except InvalidTransitionError:
            record = self.store.get(run.task_id, owner)  # a continuation finished it first
        run.status = record.status
        run.steps = self._states(statuses)
        return run

    def _pause(
        self,
        run: WorkflowRun,
        owner: str,
        statuses: dict[str, WorkflowStepStatus],
        pause: WorkflowPauseReason,
    ) -> WorkflowRun:
        unavailable: dict[str, str] = {}  # binding → the failed or skipped step that owed it
        by_name = {step.name: step for step in self.workflow.steps}
        blocked = by_name[pause.blocked_step]
        if statuses.get(blocked.name) == "failed" and blocked.binding:
            unavailable[blocked.binding] = blocked.name
        skipped: dict[str, dict[str, Any]] = {}
        seen_blocked = False
        for step in self.workflow.steps:
            if step.name == blocked.name:
                seen_blocked = True
                continue
            if not seen_blocked or statuses.get(step.name) == "completed":
                continue
            missing = sorted(step.dependencies() & unavailable.keys())
            if missing:
                producer = unavailable[missing[0]]
                statuses[step.name] = "skipped"
                skipped[step.name] = to_builtins(
                    WorkflowPauseReason(
                        type="unresolvedDependency",
                        blocked_step=step.name,
                        suggested_tool=by_name[producer].tool,
                        missing_output=missing[0],
                        producing_step=producer,
                    )
                )
                if step.binding:
                    unavailable[step.binding] = step.name
        reason = to_builtins(pause)
        # Only this run's own verdicts: a parallel continuation may have completed other steps.
        changes: dict[str, WorkflowStepStatus] = dict.fromkeys(skipped, "skipped")
        record = self.store.update_variables(
            run.task_id,
            owner,
            lambda r: {
                PROGRESS: with_statuses(r.variables, changes),
                PAUSE_REASON: reason,
                SKIPPED: skipped or None,
            },
        )
        run.status = record.status
        run.pause_reason = reason
        run.skipped = skipped
        run.steps = self._states(statuses)
        return run
