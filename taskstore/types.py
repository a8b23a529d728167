"""Wire types of the MCP 2025-11-25 ``tasks`` utility, as frozen msgspec Structs.

Attributes are snake_case in Python and camelCase on the wire (``meta`` ↔ ``_meta``). Optional
fields are omitted when ``None``, except :attr:`Task.ttl`, which is always present and ``null``
when the task lives forever (DESIGN §3). Unknown keys on input are ignored.

Use :func:`to_builtins` / :func:`encode` for the wire form and :func:`decode` (or the typed
decoders) for inbound JSON: a Struct's ``__init__`` does not type-check, ``decode`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

from taskstore.errors import InvalidParamsError
from taskstore.states import TaskStatus

__all__ = [
    "META_CLIENT_CAPABILITIES",
    "META_CLIENT_INFO",
    "META_MODEL_IMMEDIATE_RESPONSE",
    "META_PROTOCOL_VERSION",
    "META_RELATED_TASK",
    "META_SERVER_INFO",
    "MODERN_PROTOCOL_VERSION",
    "TASKS_EXTENSION",
    "CacheScope",
    "CancelTaskParams",
    "CreateTaskResult",
    "DiscoverResult",
    "GetTaskParams",
    "GetTaskPayloadParams",
    "InputRequiredResult",
    "ListTasksParams",
    "ListTasksResult",
    "ModernCreateTaskResult",
    "ModernGetTaskResult",
    "ModernTask",
    "RelatedTaskMetadata",
    "ResultType",
    "Task",
    "TaskMetadata",
    "TaskSupport",
    "ToolExecution",
    "UpdateTaskParams",
    "WireStruct",
    "WorkflowPauseReason",
    "WorkflowProgress",
    "WorkflowStepState",
    "WorkflowStepStatus",
    "decode",
    "encode",
    "server_tasks_capability",
    "task_wire",
    "to_builtins",
]

#: ``_meta`` key linking a message to its task: ``{"taskId": id}``.
META_RELATED_TASK = "io.modelcontextprotocol/related-task"

# -- MCP 2026-07-28 (DESIGN §9c) -------------------------------------------------------------

#: The protocol revision of the stateless era.
MODERN_PROTOCOL_VERSION = "2026-07-28"
#: Per-request ``params._meta`` key: the request's protocol version (required).
META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
#: Per-request ``params._meta`` key: the client's capabilities for this request (required).
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
#: Per-request ``params._meta`` key: the client's name and version (optional).
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
#: Result ``_meta`` key: the server's name and version.
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
#: The tasks extension (SEP-2663): its id in ``capabilities.extensions``.
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
#: ``_meta`` key of ``CreateTaskResult`` carrying an optional immediate answer for the model.
META_MODEL_IMMEDIATE_RESPONSE = "io.modelcontextprotocol/model-immediate-response"

#: ``execution.taskSupport`` of a tool declaration; absent means ``"forbidden"``.
TaskSupport = Literal["forbidden", "optional", "required"]


class WireStruct(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """Base of every wire type: frozen, keyword-only, camelCase keys, ``None`` fields omitted."""


class Task(WireStruct, frozen=True):
    """The ``Task`` object: the flat result of ``tasks/get``/``tasks/cancel`` and the params of
    ``notifications/tasks/status``.

    ``ttl`` is required and always encoded (``null`` = unlimited); every other optional field is
    omitted when ``None``.
    """

    task_id: str
    status: TaskStatus
    created_at: str
    last_updated_at: str
    ttl: int | None
    status_message: str | None = None
    poll_interval: int | None = None
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class CreateTaskResult(WireStruct, frozen=True):
    """Result of a task-augmented request: ``{"task": Task, "_meta"?: {...}}`` (wrapped)."""

    task: Task
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class ListTasksResult(WireStruct, frozen=True):
    """Result of ``tasks/list``: ``{"tasks": [...], "nextCursor"?: str}``."""

    tasks: list[Task]
    next_cursor: str | None = None
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class TaskMetadata(WireStruct, frozen=True):
    """The ``task`` member of a task-augmented request's params: ``{"ttl"?: int}``."""

    ttl: int | None = None


class RelatedTaskMetadata(WireStruct, frozen=True):
    """Value of ``_meta["io.modelcontextprotocol/related-task"]``."""

    task_id: str


class GetTaskParams(WireStruct, frozen=True):
    """Params of ``tasks/get``."""

    task_id: str
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class GetTaskPayloadParams(WireStruct, frozen=True):
    """Params of ``tasks/result``."""

    task_id: str
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class ListTasksParams(WireStruct, frozen=True):
    """Params of ``tasks/list``."""

    cursor: str | None = None
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class CancelTaskParams(WireStruct, frozen=True):
    """Params of ``tasks/cancel``.

    ``result`` is taskstore's (and ``pmcp-tasks``') cancel-as-completion extension: when the
    key is present, the task is *completed* with that value instead of cancelled.
    ``has_result`` tells a present ``null`` apart from an absent key.
    """

    task_id: str
    result: Any = msgspec.UNSET
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")

    @property
    def has_result(self) -> bool:
        """``True`` when the request carried a ``result`` key (even ``null``)."""
        return self.result is not msgspec.UNSET


class UpdateTaskParams(WireStruct, frozen=True):
    """Params of the tasks extension's ``tasks/update``: answers to input requests by key."""

    task_id: str
    input_responses: dict[str, Any]
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class ToolExecution(WireStruct, frozen=True, omit_defaults=False):
    """``execution`` member of a tool declaration in ``tools/list`` (``taskSupport`` always
    present, ``"forbidden"`` included)."""

    task_support: TaskSupport = "forbidden"


def server_tasks_capability(*, list_supported: bool = True) -> dict[str, Any]:
    """Return the server's ``capabilities.tasks`` object (DESIGN §3).

    :param list_supported: ``False`` for servers that cannot identify requestors (anonymous
        mode): ``list`` is then omitted.
    """
    capability: dict[str, Any] = {}
    if list_supported:
        capability["list"] = {}
    capability["cancel"] = {}
    capability["requests"] = {"tools": {"call": {}}}
    return capability


# -- MCP 2026-07-28 shapes (DESIGN §9c) ------------------------------------------------------

#: ``resultType`` of every 2026-07-28 result.
ResultType = Literal["complete", "task", "input_required"]
#: ``cacheScope`` of a cacheable 2026-07-28 result.
CacheScope = Literal["public", "private"]


class ModernTask(WireStruct, frozen=True):
    """The tasks extension's ``Task`` (SEP-2663): ``ttlMs`` always present (``null`` =
    unlimited), ``pollIntervalMs``/``statusMessage`` omitted when ``None``; never the 2025
    ``ttl``/``pollInterval`` keys."""

    task_id: str
    status: TaskStatus
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    status_message: str | None = None
    poll_interval_ms: int | None = None


class ModernCreateTaskResult(ModernTask, frozen=True, tag_field="resultType", tag="task"):
    """``CreateTaskResult`` of the tasks extension: the task, flat, ``resultType: "task"``."""


class ModernGetTaskResult(ModernTask, frozen=True, tag_field="resultType", tag="complete"):
    """``tasks/get`` of the tasks extension: the task flat, ``resultType: "complete"``, plus by
    status the ``result`` (completed), the JSON-RPC ``error`` (failed) or every outstanding
    ``inputRequests`` (input_required)."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


class InputRequiredResult(
    WireStruct, frozen=True, tag_field="resultType", tag="input_required"
):
    """SEP-2322: the call needs the client's input; retry it with ``inputResponses`` (and the
    ``requestState`` echoed)."""

    input_requests: dict[str, Any] | None = None
    request_state: str | None = None


class DiscoverResult(WireStruct, frozen=True, tag_field="resultType", tag="complete"):
    """``server/discover``: versions, capabilities, caching hints, server info in ``_meta``."""

    supported_versions: list[str]
    capabilities: dict[str, Any]
    ttl_ms: int
    cache_scope: CacheScope
    instructions: str | None = None
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


#: Status of one workflow step in ``_workflow.progress``.
WorkflowStepStatus = Literal["pending", "completed", "failed", "skipped"]


class WorkflowStepState(WireStruct, frozen=True):
    """One step of a workflow's progress: ``{"name", "tool", "status"}``."""

    name: str
    tool: str
    status: WorkflowStepStatus


class WorkflowProgress(WireStruct, frozen=True):
    """The ``_workflow.progress`` task variable (schema version 1)."""

    goal: str
    steps: list[WorkflowStepState]
    schema_version: int


class WorkflowPauseReason(WireStruct, frozen=True):
    """Why a workflow stopped (``_workflow.pause_reason``), tagged by ``type``.

    - ``unresolvableParams``: ``param`` of ``blockedStep`` has no value (a missing prompt
      argument, or a field absent from an earlier step's output).
    - ``schemaMismatch``: the tool's required input ``missingFields`` are absent.
    - ``toolError``: the tool failed with ``error``; ``retryable`` says whether trying again
      may help.
    - ``unresolvedDependency``: ``blockedStep`` needs ``missingOutput`` (a binding) that
      ``producingStep`` did not produce because it failed or was skipped.

    ``suggestedTool`` is the tool the client should call to get past the blocker.
    """

    type: Literal["unresolvableParams", "schemaMismatch", "toolError", "unresolvedDependency"]
    blocked_step: str
    suggested_tool: str | None = None
    param: str | None = None
    missing_fields: list[str] | None = None
    error: str | None = None
    retryable: bool | None = None
    missing_output: str | None = None
    producing_step: str | None = None


_encoder = msgspec.json.Encoder()
_T = TypeVar("_T")


def task_wire(task: Task, extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat 2025-11-25 wire dict of ``task``, with ``extra_meta`` merged under ``_meta``
    (keys already in the task's own ``_meta`` win: reserved ``io.modelcontextprotocol/`` keys
    are never overridden)."""
    wire: dict[str, Any] = msgspec.to_builtins(task)
    if extra_meta:
        meta = dict(extra_meta)
        meta.update(wire.get("_meta") or {})
        wire["_meta"] = meta
    return wire


def encode(value: Any) -> bytes:
    """Encode a wire Struct (or builtins holding them) as compact JSON bytes."""
    return _encoder.encode(value)


def to_builtins(value: Any) -> Any:
    """Convert a wire Struct to plain dicts/lists with wire key names."""
    return msgspec.to_builtins(value)


def decode(data: Any, type: type[_T]) -> _T:  # noqa: A002
    """Decode JSON text (``bytes``/``str``) or already-parsed JSON (any other value) into
    ``type``, validating it.

    :raises InvalidParamsError: (-32602) when the input does not match the type.
    """
    try:
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            return msgspec.json.decode(data, type=type)
        return msgspec.convert(data, type)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidParamsError(f"Invalid params: {exc}") from exc
