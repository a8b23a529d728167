"""Wiring workflows into a server (``prompts/list``, ``prompts/get``, continuations on
``tools/call``) through its narrow :class:`~taskstore.mcp.host.Host` interface plus its prompt
registry (:class:`WorkflowHost`; :class:`~taskstore.mcp.server.McpServer` is one).

:func:`register_workflow` validates the definition against the server's tools (definition
errors surface here, at registration), registers the workflow as a prompt, and, once per server,
installs the ``tools/call`` hook that records continuations carrying
``_meta: {"_task_id": id}``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from taskstore.aliases import JsonDict
from taskstore.errors import TaskStoreError
from taskstore.mcp.auth import Caller
from taskstore.mcp.host import Host
from taskstore.mcp.prompts import PromptContext, PromptRegistry, PromptSpec
from taskstore.mcp.tools import error_result
from taskstore.record import TaskRecord
from taskstore.workflow.continuation import record_continuation
from taskstore.workflow.definition import SequentialWorkflow
from taskstore.workflow.engine import WorkflowEngine
from taskstore.workflow.handoff import TASK_ID_META, plain_prompt_reply, reply

__all__ = ["WorkflowHost", "WorkflowPromptSpec", "register_workflow"]


class WorkflowHost(Host, Protocol):
    """What :func:`register_workflow` needs of a server: the :class:`Host` interface and the
    registry its prompts are offered from."""

    @property
    def prompts(self) -> PromptRegistry:
        """The server's prompts."""
        ...


_hooked: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked_lock = threading.Lock()


class _HostTools:
    """The engine's :class:`~taskstore.workflow.engine.ToolInvoker` over a host's tools, on
    behalf of one caller."""

    def __init__(self, host: Host, caller: Caller) -> None:
        self._host = host
        self._caller = caller

    def required_fields(self, tool: str) -> list[str]:
        spec = self._host.get_tool(tool)
        required = spec.input_schema.get("required") if spec is not None else None
        return [f for f in required if isinstance(f, str)] if isinstance(required, list) else []

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self._host.run_tool(tool, arguments, self._caller)


class WorkflowPromptSpec(PromptSpec):
    """A prompt backed by a workflow. Unlike a plain prompt, a resumption (``_meta`` carrying
    ``_task_id``) needs no arguments: the task stored them."""

    def render(self, arguments: object, ctx: PromptContext) -> JsonDict:
        """See :meth:`PromptSpec.render`; required arguments are not checked on a resume."""
        if isinstance(ctx.meta.get(TASK_ID_META), str):
            relaxed = PromptSpec(self.name, self.handler, self.description, (), self.title)
            return relaxed.render(arguments, ctx)
        return super().render(arguments, ctx)


def register_workflow(server: WorkflowHost, workflow: SequentialWorkflow) -> PromptSpec:
    """Offer ``workflow`` as a prompt of ``server``.

    A task-backed workflow's ``prompts/get`` creates a task owned by the caller, runs what it
    can and answers with the handoff reply; with ``_meta: {"_task_id": id}`` it resumes that
    task instead. Without task backing the prompt is a plain prompt (no task, no ``_meta``).

    :raises WorkflowDefinitionError: unknown tool, binding used before it is produced,
        duplicate step names, ... (see :meth:`SequentialWorkflow.validate`).
    :raises ValueError: a prompt of that name is already registered.
    """
    workflow.validate(lambda name: server.get_tool(name) is not None)

    def handler(arguments: dict[str, str], ctx: PromptContext) -> JsonDict:
        if not workflow.task_backed:
            return plain_prompt_reply(workflow, arguments)
        engine = WorkflowEngine(workflow, ctx.host.store, _HostTools(ctx.host, ctx.caller))
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


def _install_hook(host: Host) -> None:
    with _hooked_lock:
        if host in _hooked:
            return
        _hooked.add(host)

    def record(
        params: Mapping[str, Any], result: JsonDict, caller: Caller, call_task_id: str | None
    ) -> None:
        meta = params.get("_meta")
        task_id = meta.get(TASK_ID_META) if isinstance(meta, Mapping) else None
        name = params.get("name")
        if not isinstance(task_id, str) or not isinstance(name, str):
            return
        raw_arguments = params.get("arguments")
        arguments = raw_arguments if isinstance(raw_arguments, Mapping) else {}
        if call_task_id is not None:
            # A task-augmented continuation: its outcome is recorded once its own task ends.
            _record_when_done(host, caller.owner, call_task_id, task_id, name, arguments)
            return
        record_continuation(host.store, caller.owner, task_id, name, arguments, result)

    host.add_tool_call_hook(record)


def _record_when_done(
    host: Host,
    owner: str,
    call_task_id: str,
    workflow_task_id: str,
    tool: str,
    arguments: Mapping[str, Any],
) -> None:
    """Record the outcome of the continuation's own task against the workflow once it ends."""
    store = host.store
    done = threading.Lock()
    recorded = False
    subscription: list[Callable[[], None]] = []

    def stop_listening() -> None:
        with done:
            unsubscribers = list(subscription)
        for unsubscribe in unsubscribers:
            unsubscribe()

    def finish() -> None:
        nonlocal recorded
        with done:  # the event and the check below may both see the task finished
            if recorded:
                return
            recorded = True
        stop_listening()
        try:
            outcome = store.get_result(call_task_id, owner)
        except TaskStoreError:
            return  # cancelled or gone: nothing ran to completion, nothing to record
        if outcome.kind == "result" and isinstance(outcome.result, Mapping):
            result: Mapping[str, Any] = outcome.result
        else:
            message = (outcome.error or {}).get("message", "the tool failed")
            result = error_result(str(message))
        record_continuation(store, owner, workflow_task_id, tool, arguments, result)

    def on_status(changed: TaskRecord) -> None:
        if changed.task_id == call_task_id and changed.is_terminal:
            finish()

    unsubscribe = store.watch(on_status, owner=owner)
    with done:
        subscription.append(unsubscribe)
        already = recorded
    if already:  # finished (and recorded) before the subscription was stored
        unsubscribe()
        return
    try:
        finished = store.get(call_task_id, owner).is_terminal
    except TaskStoreError:
        finished = True
    if finished:
        finish()

