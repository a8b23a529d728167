"""Wiring workflows into an :class:`~taskstore.mcp.server.McpServer` (``prompts/list``,
``prompts/get``, continuations on ``tools/call``).

:func:`register_workflow` validates the definition against the server's tools (definition
errors surface here, at registration), registers the workflow as a prompt, and, once per server,
installs the ``tools/call`` hook that records continuations carrying
``_meta: {"_task_id": id}``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from taskstore.mcp.auth import Caller
from taskstore.mcp.jsonrpc import JsonDict
from taskstore.mcp.prompts import PromptContext, PromptSpec
from taskstore.mcp.server import McpServer
from taskstore.workflow.continuation import record_continuation
from taskstore.workflow.definition import SequentialWorkflow
from taskstore.workflow.engine import WorkflowEngine
from taskstore.workflow.handoff import TASK_ID_META, plain_prompt_reply, reply

__all__ = ["WorkflowPromptSpec", "register_workflow"]

_hooked: weakref.WeakSet[McpServer] = weakref.WeakSet()
_hooked_lock = threading.Lock()


class _ServerTools:
    """The engine's :class:`~taskstore.workflow.engine.ToolInvoker` over a server's tools, on
    behalf of one caller."""

    def __init__(self, server: McpServer, caller: Caller) -> None:
        self._server = server
        self._caller = caller

    def required_fields(self, tool: str) -> list[str]:
        spec = self._server.tools.get(tool)
        required = spec.input_schema.get("required") if spec is not None else None
        return [f for f in required if isinstance(f, str)] if isinstance(required, list) else []

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self._server.runner.run_inline(tool, arguments, self._caller)


class WorkflowPromptSpec(PromptSpec):
    """A prompt backed by a workflow. Unlike a plain prompt, a resumption (``_meta`` carrying
    ``_task_id``) needs no arguments: the task stored them."""

    def render(self, arguments: object, ctx: PromptContext) -> JsonDict:
        """See :meth:`PromptSpec.render`; required arguments are not checked on a resume."""
        if isinstance(ctx.meta.get(TASK_ID_META), str):
            relaxed = PromptSpec(self.name, self.handler, self.description, (), self.title)
            return relaxed.render(arguments, ctx)
        return super().render(arguments, ctx)


def register_workflow(server: McpServer, workflow: SequentialWorkflow) -> PromptSpec:
    """Offer ``workflow`` as a prompt of ``server``.

    A task-backed workflow's ``prompts/get`` creates a task owned by the caller, runs what it
    can and answers with the handoff reply; with ``_meta: {"_task_id": id}`` it resumes that
    task instead. Without task backing the prompt is a plain prompt (no task, no ``_meta``).

    :raises WorkflowDefinitionError: unknown tool, binding used before it is produced,
        duplicate step names, ... (see :meth:`SequentialWorkflow.validate`).
    :raises ValueError: a prompt of that name is already registered.
    """
    workflow.validate(lambda name: server.tools.get(name) is not None)

    def handler(arguments: dict[str, str], ctx: PromptContext) -> JsonDict:
        if not workflow.task_backed:
            return plain_prompt_reply(workflow, arguments)
        engine = WorkflowEngine(workflow, server.store, _ServerTools(server, ctx.caller))
        task_id = ctx.meta.get(TASK_ID_META)
        if isinstance(task_id, str):
            run = engine.resume(ctx.caller.owner, task_id, arguments)
        else:
            run = engine.start(ctx.caller.owner, arguments)
        return reply(workflow, run)

    spec = server.prompts.add(
        WorkflowPromptSpec(
            name=workflow.name,
            handler=handler,
            description=workflow.description,
            arguments=workflow.arguments,
        )
    )
    if workflow.task_backed:
        _install_hook(server)
    return spec


def _install_hook(server: McpServer) -> None:
    with _hooked_lock:
        if server in _hooked:
            return
        _hooked.add(server)

    def record(params: Mapping[str, Any], result: JsonDict, caller: Caller) -> None:
        meta = params.get("_meta")
        task_id = meta.get(TASK_ID_META) if isinstance(meta, Mapping) else None
        name = params.get("name")
        # A task-augmented continuation answers CreateTaskResult: there is no result yet.
        if not isinstance(task_id, str) or not isinstance(name, str) or "task" in result:
            return
        arguments = params.get("arguments")
        record_continuation(
            server.store,
            caller.owner,
            task_id,
            name,
            arguments if isinstance(arguments, Mapping) else {},
            result,
        )

    server.add_tool_call_hook(record)
