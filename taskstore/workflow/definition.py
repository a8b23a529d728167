"""Declaring a sequential workflow prompt (DESIGN §9b).

A :class:`SequentialWorkflow` names prompt arguments and an ordered list of
:class:`WorkflowStep`\\ s. Each step calls one tool with arguments taken from a constant
(:func:`const`), a prompt argument (:func:`prompt_arg`) or an earlier step's output, whole or one
field of it (:func:`from_step`). :meth:`SequentialWorkflow.validate` catches definition errors
(unknown tool, a binding used before it is produced, duplicate names, unknown placeholders) when
the workflow is registered, never at call time.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskstore.errors import ConfigurationError
from taskstore.mcp.prompts import PromptArgument

__all__ = [
    "ArgumentSource",
    "Const",
    "PromptArg",
    "PromptArgument",
    "SequentialWorkflow",
    "StepOutput",
    "WorkflowDefinitionError",
    "WorkflowStep",
    "const",
    "from_step",
    "prompt_arg",
]


class WorkflowDefinitionError(ConfigurationError):
    """A workflow definition is inconsistent (raised at registration, not at call time)."""


@dataclass(frozen=True)
class Const:
    """A constant argument value."""

    value: Any


@dataclass(frozen=True)
class PromptArg:
    """The value of the prompt argument ``name``."""

    name: str


@dataclass(frozen=True)
class StepOutput:
    """The output of the earlier step bound to ``binding``, or its dotted ``field`` path."""

    binding: str
    field: str | None = None

    def placeholder(self) -> str:
        """Readable stand-in for a value that is not available yet."""
        suffix = f".{self.field}" if self.field else ""
        return f"<output from {self.binding}>{suffix}"


ArgumentSource = Const | PromptArg | StepOutput


def const(value: Any) -> Const:
    """A constant argument."""
    return Const(value)


def prompt_arg(name: str) -> PromptArg:
    """The prompt argument ``name``."""
    return PromptArg(name)


def from_step(binding: str, field: str | None = None) -> StepOutput:
    """The output bound to ``binding`` by an earlier step, or its (dotted) ``field``."""
    return StepOutput(binding, field)


@dataclass(frozen=True)
class WorkflowStep:
    """One step: call ``tool`` with ``arguments``; its output is bound to ``binding``.

    :ivar name: unique step name.
    :ivar tool: registered tool to call.
    :ivar arguments: argument name → :class:`Const` | :class:`PromptArg` | :class:`StepOutput`
        (plain values are taken as constants).
    :ivar binding: name later steps use to refer to this step's output.
    :ivar guidance: a note for the client, with ``{arg}`` placeholders of prompt arguments.
    :ivar retryable: whether retrying the call after a tool error may succeed.
    """

    name: str
    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    binding: str | None = None
    guidance: str | None = None
    retryable: bool = False

    def sources(self) -> dict[str, ArgumentSource]:
        """The arguments with plain values wrapped as :class:`Const`."""
        return {
            name: value if isinstance(value, (Const, PromptArg, StepOutput)) else Const(value)
            for name, value in self.arguments.items()
        }

    def dependencies(self) -> set[str]:
        """The bindings this step reads."""
        return {s.binding for s in self.sources().values() if isinstance(s, StepOutput)}


@dataclass(frozen=True)
class SequentialWorkflow:
    """A named, ordered list of steps offered as an MCP prompt.

    :ivar name: the prompt name.
    :ivar description: what the workflow achieves (its goal).
    :ivar arguments: the prompt's arguments.
    :ivar steps: the steps, run in order.
    :ivar task_backed: create a task per invocation, run what the server can and hand off
        the rest (DESIGN §9b); ``False`` makes it a plain prompt.
    """

    name: str
    description: str
    steps: tuple[WorkflowStep, ...]
    arguments: tuple[PromptArgument, ...] = ()
    task_backed: bool = True

    def __init__(
        self,
        name: str,
        description: str,
        steps: Iterable[WorkflowStep],
        arguments: Iterable[PromptArgument] = (),
        *,
        task_backed: bool = True,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "arguments", tuple(arguments))
        object.__setattr__(self, "task_backed", task_backed)

    def step_producing(self, binding: str) -> WorkflowStep | None:
        """The step whose output is bound to ``binding``."""
        return next((s for s in self.steps if s.binding == binding), None)

    def validate(self, tool_exists: Callable[[str], bool]) -> None:
        """Check the definition against the registered tools.

        :raises WorkflowDefinitionError: naming every problem found.
        """
        problems: list[str] = []
        if not self.name:
            problems.append("the workflow needs a name")
        if not self.steps:
            problems.append("the workflow has no steps")
        argument_names = [a.name for a in self.arguments]
        if len(set(argument_names)) != len(argument_names):
            problems.append("duplicate prompt argument names")
        seen_steps: set[str] = set()
        produced: set[str] = set()
        for step in self.steps:
            if step.name in seen_steps:
                problems.append(f"duplicate step name {step.name!r}")
            seen_steps.add(step.name)
            if not tool_exists(step.tool):
                problems.append(f"step {step.name!r} calls unknown tool {step.tool!r}")
            for argument, source in step.sources().items():
                if isinstance(source, PromptArg) and source.name not in argument_names:
                    problems.append(
                        f"step {step.name!r} argument {argument!r} uses undeclared prompt "
                        f"argument {source.name!r}"
                    )
                if isinstance(source, StepOutput) and source.binding not in produced:
                    problems.append(
                        f"step {step.name!r} argument {argument!r} uses binding "
                        f"{source.binding!r} before any earlier step produces it"
                    )
            if step.guidance:
                for _, placeholder, _, _ in string.Formatter().parse(step.guidance):
                    if placeholder is not None and placeholder not in argument_names:
                        problems.append(
                            f"step {step.name!r} guidance uses unknown placeholder "
                            f"{{{placeholder}}}"
                        )
            if step.binding is not None:
                if step.binding in produced:
                    problems.append(f"binding {step.binding!r} is produced twice")
                produced.add(step.binding)
        if problems:
            raise WorkflowDefinitionError(f"Invalid workflow {self.name!r}: " + "; ".join(problems))
