"""The tool registry: :class:`ToolSpec` declarations, :class:`ToolRegistry`, and how a tool's
return value becomes a ``CallToolResult``.

A tool handler is a plain callable ``handler(arguments, ctx) -> value`` (``ctx`` is a
:class:`~taskstore.mcp.context.ToolContext`). The value becomes the ``CallToolResult``:

- a dict with a ``content`` list is taken as a ``CallToolResult`` already;
- a ``str`` becomes one text content block;
- any other JSON value becomes a text block holding its JSON, and a dict also becomes the
  result's ``structuredContent``.

Raise :class:`ToolError` for a *tool execution error* (``isError: true`` result, which a
task-augmented call turns into a ``failed`` task whose ``tasks/result`` is that result).
Any other exception is a protocol-level failure (JSON-RPC ``-32603``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec

from taskstore.aliases import JsonDict
from taskstore.errors import INTERNAL_ERROR, INVALID_PARAMS, ProtocolError, ToolError
from taskstore.mcp.context import ToolContext
from taskstore.types import TaskSupport, ToolExecution, to_builtins

__all__ = [
    "ToolError",
    "ToolHandler",
    "ToolRegistry",
    "ToolSpec",
    "error_result",
    "error_text",
    "is_error_result",
    "missing_capabilities",
    "to_call_tool_result",
    "validate_arguments",
]

#: A tool's implementation: ``handler(arguments, ctx)`` returns the tool's value.
ToolHandler = Callable[[dict[str, Any], ToolContext], Any]

_TASK_SUPPORT_VALUES: tuple[str, ...] = get_args(TaskSupport)
_EMPTY_SCHEMA: JsonDict = {"type": "object", "properties": {}}
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its ``tools/list`` declaration and its handler.

    :ivar name: unique tool name.
    :ivar handler: ``handler(arguments, ctx) -> value``.
    :ivar description: for the model.
    :ivar input_schema: JSON Schema of the arguments (an ``object`` schema).
    :ivar output_schema: optional JSON Schema of ``structuredContent``.
    :ivar task_support: ``"forbidden"``, ``"optional"`` or ``"required"`` (DESIGN §3).
    :ivar title: optional display name.
    :ivar annotations: optional tool annotations (``readOnlyHint``, ...).
    :ivar immediate_response: optional text for ``CreateTaskResult._meta``'s
        ``io.modelcontextprotocol/model-immediate-response``.
    :ivar required_capabilities: client capabilities a call needs (a ``ClientCapabilities``
        object, e.g. ``{"sampling": {}}``); an MCP 2026-07-28 request that does not declare
        them gets -32021 naming what is missing.
    :ivar pre_task_input: input requests a call must have answered before it becomes a task
        (MCP 2026-07-28, SEP-2663 composed with SEP-2322): a call made as a task answers
        ``InputRequiredResult`` until the client's retry brings them, then creates the task;
        keys are ``elicitation-<n>``, so the tool's ``n``-th :meth:`ToolContext.elicit` call
        returns the ``n``-th answer (see :func:`taskstore.mcp.context.elicitation_request`).
        In 2025-11-25, where calls cannot be retried with input, the tool asks inside its task.
    """

    name: str
    handler: ToolHandler
    description: str | None = None
    input_schema: Mapping[str, Any] = field(default_factory=lambda: dict(_EMPTY_SCHEMA))
    output_schema: Mapping[str, Any] | None = None
    task_support: TaskSupport = "forbidden"
    title: str | None = None
    annotations: Mapping[str, Any] | None = None
    immediate_response: str | None = None
    required_capabilities: Mapping[str, Any] | None = None
    pre_task_input: Mapping[str, Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a tool needs a non-empty string name")
        if self.task_support not in _TASK_SUPPORT_VALUES:
            raise ValueError(f"task_support must be one of {_TASK_SUPPORT_VALUES}")
        if not callable(self.handler):
            raise TypeError("a tool handler must be callable")
        if self.input_schema.get("type") != "object":
            raise ValueError("input_schema must be a JSON Schema with type 'object'")

    def declaration(self, *, execution: bool = True) -> JsonDict:
        """The tool as ``tools/list`` shows it.

        :param execution: include ``execution.taskSupport`` (MCP 2025-11-25; the 2026-07-28
            tasks extension has no per-tool task support on the wire).
        """
        tool: JsonDict = {"name": self.name}
        if self.title is not None:
            tool["title"] = self.title
        if self.description is not None:
            tool["description"] = self.description
        tool["inputSchema"] = dict(self.input_schema)
        if self.output_schema is not None:
            tool["outputSchema"] = dict(self.output_schema)
        if self.annotations is not None:
            tool["annotations"] = dict(self.annotations)
        if execution:
            tool["execution"] = to_builtins(ToolExecution(task_support=self.task_support))
        return tool


class ToolRegistry:
    """Named tools, in registration order. Thread-safe."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._lock = threading.Lock()

    def add(self, spec: ToolSpec) -> ToolSpec:
        """Register ``spec``.

        :raises ValueError: a tool of that name is already registered.
        """
        with self._lock:
            if spec.name in self._tools:
                raise ValueError(f"tool {spec.name!r} is already registered")
            self._tools[spec.name] = spec
        return spec

    def register(
        self,
        handler: ToolHandler,
        *,
        name: str | None = None,
        task_support: TaskSupport = "forbidden",
        input_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
        **options: Any,
    ) -> ToolSpec:
        """Register a plain callable; ``name`` defaults to the function's name and
        ``description`` to its docstring's first paragraph. ``options`` are further
        :class:`ToolSpec` fields."""
        if description is None and handler.__doc__:
            description = handler.__doc__.strip().split("\n\n", 1)[0].strip()
        spec = ToolSpec(
            name=name if name is not None else getattr(handler, "__name__", ""),
            handler=handler,
            description=description,
            input_schema=dict(input_schema) if input_schema is not None else dict(_EMPTY_SCHEMA),
            task_support=task_support,
            **options,
        )
        return self.add(spec)

    def tool(
        self,
        name: str | None = None,
        *,
        task_support: TaskSupport = "forbidden",
        input_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
        **options: Any,
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator form of :meth:`register`; returns the function unchanged."""

        def decorate(handler: ToolHandler) -> ToolHandler:
            self.register(
                handler,
                name=name,
                task_support=task_support,
                input_schema=input_schema,
                description=description,
                **options,
            )
            return handler

        return decorate

    def get(self, name: str) -> ToolSpec | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __iter__(self) -> Iterator[ToolSpec]:
        with self._lock:
            return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def declarations(self, *, execution: bool = True) -> list[JsonDict]:
        """Every tool's ``tools/list`` declaration (see :meth:`ToolSpec.declaration`)."""
        return [spec.declaration(execution=execution) for spec in self]


def error_result(message: str, *, structured_content: Mapping[str, Any] | None = None) -> JsonDict:
    """A ``CallToolResult`` with ``isError: true`` and ``message`` as its text (the one
    builder of such results: :meth:`ToolError.to_result`)."""
    return ToolError(message, structured_content=structured_content).to_result()


def is_error_result(result: Mapping[str, Any]) -> bool:
    """``True`` when a ``CallToolResult`` reports a tool execution error."""
    return result.get("isError") is True


def error_text(result: Mapping[str, Any]) -> str | None:
    """The readable text of a ``CallToolResult`` (its text blocks joined by spaces), or
    ``None`` when it has none; used as a failed task's status message and a workflow's pause
    reason."""
    content = result.get("content")
    if not isinstance(content, list):
        return None
    texts = [
        block["text"]
        for block in content
        if isinstance(block, Mapping)
        and block.get("type", "text") == "text"
        and isinstance(block.get("text"), str)
    ]
    return " ".join(texts) or None


def to_call_tool_result(value: Any) -> JsonDict:
    """Turn a handler's return value into a ``CallToolResult`` (see the module docstring).

    :raises ProtocolError: ``-32603`` when the value cannot be expressed as JSON.
    """
    if isinstance(value, Mapping) and isinstance(value.get("content"), list):
        return dict(value)
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}], "isError": False}
    try:
        text = _json.encode(value).decode("utf-8")
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(
            INTERNAL_ERROR, f"The tool returned a {type(value).__name__}, which is not JSON"
        ) from None
    result: JsonDict = {"content": [{"type": "text", "text": text}], "isError": False}
    if isinstance(value, Mapping):
        result["structuredContent"] = dict(value)
    return result


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def validate_arguments(spec: ToolSpec, arguments: object) -> dict[str, Any]:
    """Check ``arguments`` against the top level of the tool's input schema.

    Checks what matters before a task is created: an object, every ``required`` property
    present, and each given property of the declared JSON type(s). Deeper JSON Schema rules
    are the handler's business (taskstore has no JSON Schema dependency).

    :raises ProtocolError: ``-32602`` naming the first problem.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ProtocolError(INVALID_PARAMS, "Invalid params: arguments must be a JSON object")
    schema = spec.input_schema
    required = schema.get("required")
    if isinstance(required, list):
        missing = [name for name in required if isinstance(name, str) and name not in arguments]
        if missing:
            raise ProtocolError(
                INVALID_PARAMS,
                f"Invalid arguments for tool {spec.name}: missing {', '.join(missing)}",
            )
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, value in arguments.items():
            declared = properties.get(key)
            if not isinstance(declared, Mapping):
                continue
            kinds = declared.get("type")
            names = [kinds] if isinstance(kinds, str) else kinds
            if not isinstance(names, list):
                continue
            checks = [_JSON_TYPES[n] for n in names if isinstance(n, str) and n in _JSON_TYPES]
            if checks and not any(check(value) for check in checks):
                wanted = " or ".join(str(n) for n in names)
                raise ProtocolError(
                    INVALID_PARAMS,
                    f"Invalid arguments for tool {spec.name}: {key} must be {wanted}",
                )
    return arguments


def missing_capabilities(
    required: Mapping[str, Any] | None, declared: Mapping[str, Any] | None
) -> JsonDict:
    """The part of ``required`` (a ``ClientCapabilities`` object) that ``declared`` lacks.

    A capability whose requirement is an object counts as declared when the declared value is
    an object holding every nested requirement (e.g. ``{"extensions":
    {"io.modelcontextprotocol/tasks": {}}}``, checked key by key); any other requirement (e.g.
    ``{"roots": {"listChanged": True}}``'s ``True``) must be declared equal.
    """
    missing: JsonDict = {}
    declared = declared or {}
    for name, needed in (required or {}).items():
        have = declared.get(name)
        if isinstance(needed, Mapping):
            if not isinstance(have, Mapping):
                missing[name] = needed
            elif needed:
                inner = missing_capabilities(needed, have)
                if inner:
                    missing[name] = inner
        elif have != needed:
            missing[name] = needed
    return missing
