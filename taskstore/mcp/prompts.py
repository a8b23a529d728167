"""A small prompt registry: ``prompts/list`` and ``prompts/get``.

A prompt handler is ``handler(arguments, ctx) -> value`` where ``ctx`` is a
:class:`PromptContext`; the value is a ``GetPromptResult`` dict (``{"messages": [...]}``), a
list of messages, or a string (one user text message). The workflow bridge plugs task-backed
prompts in through the same registry (:meth:`PromptRegistry.add`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import INTERNAL_ERROR, INVALID_PARAMS, ProtocolError
from taskstore.mcp.auth import Caller
from taskstore.mcp.host import Host

__all__ = ["PromptArgument", "PromptContext", "PromptHandler", "PromptRegistry", "PromptSpec"]


@dataclass(frozen=True)
class PromptArgument:
    """One declared prompt argument."""

    name: str
    description: str | None = None
    required: bool = False

    def declaration(self) -> JsonDict:
        """The argument as ``prompts/list`` shows it."""
        item: JsonDict = {"name": self.name}
        if self.description is not None:
            item["description"] = self.description
        item["required"] = self.required
        return item


@dataclass(frozen=True)
class PromptContext:
    """What a prompt handler gets besides its arguments.

    :ivar caller: who asked (``caller.owner`` owns any task the prompt creates).
    :ivar host: the server's store and tools (:class:`~taskstore.mcp.host.Host`).
    :ivar meta: the request's ``_meta`` (e.g. a workflow continuation's ``_task_id``).
    """

    caller: Caller
    host: Host
    meta: Mapping[str, Any] = field(default_factory=dict)


#: A prompt's implementation.
PromptHandler = Callable[[dict[str, str], PromptContext], Any]


@dataclass(frozen=True)
class PromptSpec:
    """One prompt: its ``prompts/list`` declaration and its handler."""

    name: str
    handler: PromptHandler
    description: str | None = None
    arguments: Sequence[PromptArgument] = ()
    title: str | None = None

    def declaration(self) -> JsonDict:
        """The prompt as ``prompts/list`` shows it."""
        prompt: JsonDict = {"name": self.name}
        if self.title is not None:
            prompt["title"] = self.title
        if self.description is not None:
            prompt["description"] = self.description
        if self.arguments:
            prompt["arguments"] = [argument.declaration() for argument in self.arguments]
        return prompt

    def render(self, arguments: object, ctx: PromptContext) -> JsonDict:
        """Run the handler and shape its value as a ``GetPromptResult``.

        :raises ProtocolError: ``-32602`` for bad or missing arguments.
        """
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict) or not all(
            isinstance(v, str) for v in arguments.values()
        ):
            raise ProtocolError(
                INVALID_PARAMS, "Invalid params: prompt arguments must be an object of strings"
            )
        missing = [a.name for a in self.arguments if a.required and a.name not in arguments]
        if missing:
            raise ProtocolError(
                INVALID_PARAMS,
                f"Missing required arguments for prompt {self.name}: {', '.join(missing)}",
            )
        value = self.handler(arguments, ctx)
        if isinstance(value, str):
            return {"messages": [{"role": "user", "content": {"type": "text", "text": value}}]}
        if isinstance(value, list):
            return {"messages": value}
        if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
            result = dict(value)
            if self.description is not None:
                result.setdefault("description", self.description)
            return result
        raise ProtocolError(INTERNAL_ERROR, f"Prompt {self.name} returned no messages")


class PromptRegistry:
    """Named prompts, in registration order. Thread-safe."""

    def __init__(self) -> None:
        self._prompts: dict[str, PromptSpec] = {}
        self._lock = threading.Lock()

    def add(self, spec: PromptSpec) -> PromptSpec:
        """Register ``spec``.

        :raises ValueError: a prompt of that name is already registered.
        """
        with self._lock:
            if spec.name in self._prompts:
                raise ValueError(f"prompt {spec.name!r} is already registered")
            self._prompts[spec.name] = spec
        return spec

    def prompt(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        arguments: Sequence[PromptArgument] = (),
        title: str | None = None,
    ) -> Callable[[PromptHandler], PromptHandler]:
        """Decorator registering a prompt handler; returns the function unchanged."""

        def decorate(handler: PromptHandler) -> PromptHandler:
            doc = handler.__doc__.strip().split("\n\n", 1)[0] if handler.__doc__ else None
            self.add(
                PromptSpec(
                    name=name if name is not None else getattr(handler, "__name__", ""),
                    handler=handler,
                    description=description if description is not None else doc,
                    arguments=tuple(arguments),
                    title=title,
                )
            )
            return handler

        return decorate

    def get(self, name: str) -> PromptSpec | None:
        """The prompt called ``name``, or ``None``."""
        return self._prompts.get(name)

    def __iter__(self) -> Iterator[PromptSpec]:
        with self._lock:
            return iter(list(self._prompts.values()))

    def __len__(self) -> int:
        return len(self._prompts)

    def declarations(self) -> list[JsonDict]:
        """Every prompt's ``prompts/list`` declaration."""
        return [spec.declaration() for spec in self]
