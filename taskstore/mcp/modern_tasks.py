"""``tasks/get``, ``tasks/update`` and ``tasks/cancel`` of the tasks extension (SEP-2663,
MCP 2026-07-28), over the same records as the 2025-11-25 ``tasks/*`` (DESIGN §9c).

Every method first checks that the request declares the extension (-32021 with
``data.requiredCapabilities``, before the task is looked up); an unknown, expired or foreign
task is -32602. ``tasks/get`` carries the outcome inline (read only for a terminal task) or the
outstanding input requests; ``tasks/update`` merges answers by compare-and-set (unknown keys
ignored, still acknowledged); ``tasks/cancel`` acknowledges, also for a task already finished.
``tasks/result`` and ``tasks/list`` do not exist in this era.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskstore.aliases import JsonDict
from taskstore.errors import InvalidTransitionError, MissingCapabilityError
from taskstore.mcp.audit import audit
from taskstore.mcp.projections.modern import MODERN, complete
from taskstore.mcp.request import RequestContext
from taskstore.mcp.router import CANCEL_MESSAGE
from taskstore.store import TaskStore
from taskstore.types import TASKS_EXTENSION, GetTaskParams, UpdateTaskParams, decode

__all__ = ["TASKS_CAPABILITY", "ExtensionTaskRouter", "declares_tasks", "require_tasks"]

#: The client capability the tasks extension needs, as ``requiredCapabilities`` names it.
TASKS_CAPABILITY: JsonDict = {"extensions": {TASKS_EXTENSION: {}}}

_Handler = Callable[[Mapping[str, Any] | None, RequestContext], JsonDict]


def declares_tasks(ctx: RequestContext) -> bool:
    """Whether the request declares the tasks extension in its client capabilities."""
    extensions = (ctx.client_capabilities or {}).get("extensions")
    # Decoded JSON objects are dicts: naming dict first spares them the Mapping ABC's check.
    if not isinstance(extensions, (dict, Mapping)):
        return False
    declared = extensions.get(TASKS_EXTENSION)
    return isinstance(declared, (dict, Mapping))


def require_tasks(ctx: RequestContext) -> None:
    """:raises MissingCapabilityError: the request does not declare the tasks extension."""
    if not declares_tasks(ctx):
        raise MissingCapabilityError(
            TASKS_CAPABILITY, f"This request needs the tasks extension ({TASKS_EXTENSION})"
        )


class ExtensionTaskRouter:
    """The extension's ``tasks/*`` over a :class:`TaskStore`. Thread-safe.

    :param store: where tasks live.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        #: The extension's ``tasks/*`` dispatch table.
        self.methods: dict[str, _Handler] = {
            "tasks/get": self.get,
            "tasks/update": self.update,
            "tasks/cancel": self.cancel,
        }

    def get(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        """The task with its outcome (terminal) or its outstanding input requests.

        :raises MissingCapabilityError: the request does not declare the extension.
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        """
        require_tasks(ctx)
        # Decoding never changes its input: a decoded request's dict needs no copy.
        decoded = decode(params if isinstance(params, dict) else dict(params or {}), GetTaskParams)
        record = self.store.get_with_outcome(decoded.task_id, ctx.caller.owner)
        return MODERN.detail(record, record.outcome, record.input_requests)

    def update(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        """Merge ``inputResponses`` into the task's outstanding input requests; acknowledge.

        :raises MissingCapabilityError: the request does not declare the extension.
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        :raises InvalidParamsError: malformed params (-32602).
        """
        require_tasks(ctx)
        decoded = decode(dict(params or {}), UpdateTaskParams)
        self.store.answer_input(decoded.task_id, ctx.caller.owner, decoded.input_responses)
        return complete()

    def cancel(self, params: Mapping[str, Any] | None, ctx: RequestContext) -> JsonDict:
        """Cancel a task that is still running; acknowledge (a finished task is unchanged).

        :raises MissingCapabilityError: the request does not declare the extension.
        :raises TaskNotFoundError: unknown, expired or another owner's task (-32602).
        """
        require_tasks(ctx)
        decoded = decode(dict(params or {}), GetTaskParams)
        owner = ctx.caller.owner
        record = self.store.get(decoded.task_id, owner)
        if not record.is_terminal:
            try:
                self.store.cancel(decoded.task_id, owner, CANCEL_MESSAGE)
            except InvalidTransitionError:
                pass  # it finished meanwhile: the acknowledgement stands, the task is final
            else:
                audit("task.cancelled", owner=ctx.caller, task_id=decoded.task_id)
        return complete()
