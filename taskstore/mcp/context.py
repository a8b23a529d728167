"""``ToolContext``: what a tool handler gets besides its arguments.

For a task-augmented call it wraps the task's :class:`~taskstore.context.TaskContext`
(``ctx.task``: variables, status message, ...) and adds what only the MCP layer can do:
progress notifications on the original ``progressToken`` (valid for the task's whole life),
cooperative cancellation (``ctx.cancelled``, ``ctx.sleep``) and input requests to the client
(``ctx.elicit``). For an ordinary (inline) call ``ctx.task`` is ``None``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskstore.context import TaskContext
from taskstore.errors import (
    InputRequired,
    InvalidTransitionError,
    MissingCapabilityError,
    TaskCancelled,
    TaskNotFoundError,
    ToolError,
)
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import JsonDict, notification
from taskstore.mcp.notifications import NotificationSender
from taskstore.record import TaskRecord
from taskstore.types import META_RELATED_TASK

__all__ = ["InputRound", "TaskCancelled", "ToolContext", "elicitation_request"]

_log = logging.getLogger("taskstore.mcp")

# Without store events from other processes (e.g. DynamoDB), a waiting tool re-reads its task
# this often to notice a cancel made elsewhere.
_CANCEL_POLL_S = 0.5


@dataclass
class InputRound:
    """What a stateless call (MCP 2026-07-28, SEP-2322) knows about the client's input: the
    answers its retries brought, by input request key, and the capabilities the request
    declared. A tool's ``n``-th input request in a run has the key ``elicitation-<n>``, so a
    re-run of the same call meets its earlier answers under the same keys.
    """

    answers: Mapping[str, Any] = field(default_factory=dict)
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    asked: int = 0

    def next_key(self) -> str:
        """The key of the run's next input request."""
        self.asked += 1
        return f"elicitation-{self.asked}"


class ToolContext:
    """Handler-side handle of one tool call. Thread-safe.

    :param tool: the tool's name.
    :param task: the task's context for a task-augmented call, else ``None``.
    :param progress_token: the request's ``_meta.progressToken``, if any.
    :param sender: where progress notifications go (the session's stream), if anywhere.
    :param inputs: the broker carrying input requests to the client (tasks only).
    :param input_round: the answers of a stateless (MCP 2026-07-28) inline call, if it is one.
    """

    def __init__(
        self,
        tool: str,
        *,
        task: TaskContext | None = None,
        progress_token: str | int | None = None,
        sender: NotificationSender | None = None,
        inputs: InputBroker | None = None,
        input_round: InputRound | None = None,
    ) -> None:
        self.tool = tool
        self.input_round = input_round
        self.task = task
        self.progress_token = progress_token
        self.sender = sender
        self.inputs = inputs
        self._cancel = threading.Event()

    def __repr__(self) -> str:
        return f"ToolContext(tool={self.tool!r}, task_id={self.task_id!r})"

    @property
    def task_id(self) -> str | None:
        """The task id of a task-augmented call, else ``None``."""
        return self.task.task_id if self.task is not None else None

    # -- cancellation --------------------------------------------------------------------

    def signal_cancel(self) -> None:
        """Mark the call cancelled (the runner calls this on ``tasks/cancel``, a client's
        ``notifications/cancelled``, when its task ended elsewhere, e.g. failed by a stale-task
        recovery pass, and on shutdown); wakes :meth:`sleep`."""
        self._cancel.set()

    @property
    def cancel_signalled(self) -> bool:
        """``True`` once :meth:`signal_cancel` was called; unlike :attr:`cancelled`, never
        asks the store."""
        return self._cancel.is_set()

    @property
    def cancelled(self) -> bool:
        """``True`` once the call was cancelled, or its task ended without it (failed by a
        recovery pass, the server shutting down); for a task also when the store says so (a
        cancel made by another process) or the task expired. Stop when you see it."""
        if self._cancel.is_set():
            return True
        if self.task is not None and self.task.cancelled:
            self._cancel.set()
            return True
        return False

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, waking early on cancellation; return ``True`` if cancelled.

        A cooperative tool sleeps with this instead of :func:`time.sleep`.
        """
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.cancelled:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._cancel.wait(min(remaining, _CANCEL_POLL_S)):
                return True

    # -- progress ------------------------------------------------------------------------

    def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress: a ``notifications/progress`` on the request's ``progressToken``
        (when the client sent one) and, for a task, ``message`` as its ``statusMessage`` (so
        clients that only poll ``tasks/get`` see it too). Never raises for delivery problems.
        """
        if self.task is not None and message is not None:
            try:
                self.task.set_message(message)
            except (InvalidTransitionError, TaskNotFoundError):
                pass  # the task ended (cancelled or expired): progress no longer matters
        if self.progress_token is None or self.sender is None:
            return
        params: JsonDict = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        if self.task is not None:
            params["_meta"] = {META_RELATED_TASK: {"taskId": self.task.task_id}}
        try:
            self.sender.send(notification("notifications/progress", params))
        except Exception:  # noqa: BLE001 - a dead stream must not fail the tool
            _log.debug("dropping a progress notification", exc_info=True)

    # -- the task ------------------------------------------------------------------------

    def _require_task(self) -> TaskContext:
        if self.task is None:
            raise RuntimeError(f"tool {self.tool!r} is not running as a task")
        return self.task

    @property
    def variables(self) -> dict[str, Any]:
        """The task's variables (a fresh read).

        :raises RuntimeError: not running as a task.
        """
        return self._require_task().variables

    def set_variables(self, variables: Mapping[str, Any]) -> TaskRecord:
        """Merge variables into the task (``None`` deletes); see
        :meth:`taskstore.TaskStore.set_variables`.

        :raises RuntimeError: not running as a task.
        """
        return self._require_task().set_variables(variables)

    def require_input(self, message: str | None = None) -> TaskRecord:
        """Move the task to ``input_required`` (see :meth:`elicit` for the full exchange).

        :raises RuntimeError: not running as a task.
        """
        return self._require_task().require_input(message)

    def elicit(
        self,
        message: str,
        requested_schema: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> JsonDict:
        """Ask the client for input and wait for the answer (MCP ``elicitation/create``).

        For a task, the request is filed in the task's record and the task goes
        ``input_required`` until the client answers, then back to ``working``; any server
        process can relay it (a 2025-11-25 client gets it on the stream of its ``tasks/result``
        call, a 2026-07-28 client sees it in ``tasks/get`` and answers with ``tasks/update``),
        and the answer reaches this tool wherever it arrives. For a stateless inline call (MCP
        2026-07-28) the answer comes from the call's retry: without it yet, the call answers
        ``InputRequiredResult`` and the tool runs again from the start when the client retries.

        :param requested_schema: the flat object schema of the wanted answer.
        :param timeout: seconds to wait at most (``None``: until answered or cancelled).
        :returns: the client's ``ElicitResult`` (``{"action": ..., "content"?: {...}}``).
        :raises RuntimeError: a 2025-11-25 inline call (it cannot ask for input).
        :raises InputRequired: a stateless call whose retry has not brought the answer yet.
        :raises MissingCapabilityError: the request did not declare ``elicitation``.
        :raises TaskCancelled: the task was cancelled while waiting.
        :raises TimeoutError: no answer within ``timeout``.
        :raises ToolError: the client answered with a JSON-RPC error.
        """
        request = elicitation_request(message, requested_schema)
        round_ = self.input_round
        if round_ is not None:
            key = round_.next_key()
            if key in round_.answers:
                return _elicit_result(round_.answers[key])
            if self.task is None:
                self.check_capability(round_, request)
                raise InputRequired({key: request})
        return self.request_input({"answer": request}, message=message, timeout=timeout)["answer"]

    def request_input(
        self,
        requests: Mapping[str, Mapping[str, Any]],
        *,
        message: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, JsonDict]:
        """Ask the client for several inputs at once (each ``{"method", "params"}``, e.g.
        :func:`elicitation_request`) and wait until every one is answered.

        For a task, the requests are filed together in the task's record, so the client sees
        all of them outstanding at once and may answer them one by one. For a stateless inline
        call (MCP 2026-07-28) they are asked together in one ``InputRequiredResult`` under the
        tool's names, and answered by the call's retry.

        :param requests: the tool's own name for each request → the request.
        :param message: the task's ``statusMessage`` while it waits.
        :returns: each request's answer, by the tool's name for it.
        :raises RuntimeError: a 2025-11-25 inline call (it cannot ask for input).
        :raises InputRequired: a stateless call whose retry has not brought every answer yet.
        :raises MissingCapabilityError: the request did not declare the capability a request
            needs (``elicitation``, ``sampling``, ``roots``).
        :raises TaskCancelled: the task was cancelled (or expired) while waiting.
        :raises TimeoutError: not every answer arrived within ``timeout``.
        :raises ToolError: the client answered with a JSON-RPC error.
        """
        names = list(requests)
        round_ = self.input_round
        if round_ is not None:
            if all(name in round_.answers for name in names):
                return {name: _elicit_result(round_.answers[name]) for name in names}
            for name in names:
                self.check_capability(round_, requests[name])
            if self.task is None:
                missing = {n: dict(requests[n]) for n in names if n not in round_.answers}
                raise InputRequired(missing)
        task = self._require_task()
        store = task.store
        try:
            _record, keys = store.request_input(
                task.task_id, task.owner, [requests[name] for name in names], message
            )
            answers = self._await_answers(keys, timeout)
        except (InvalidTransitionError, TaskNotFoundError):
            raise TaskCancelled(task.task_id) from None
        return {name: _elicit_result(answers[key]) for name, key in zip(names, keys, strict=True)}

    def _await_answers(self, keys: list[str], timeout: float | None) -> dict[str, Any]:
        task = self._require_task()
        store = task.store
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = store.get(task.task_id, task.owner)
            if all(key in record.input_answers for key in keys):
                taken = store.take_input(task.task_id, task.owner, keys)
                if taken is not None:
                    return taken
                continue
            if record.is_terminal or self.cancelled:
                raise TaskCancelled(task.task_id)
            # Backends without cross-process events (DynamoDB) are re-read at the task's poll
            # interval, so an answer written by another process is seen as clients see it.
            poll_s = (record.task.poll_interval or 1000) / 1000
            wait_s = min(_CANCEL_POLL_S, poll_s)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no answer to the input request within {timeout} s")
                wait_s = min(wait_s, remaining)
            store.wait_for_change(task.task_id, task.owner, record.version, wait_s)

    @staticmethod
    def check_capability(round_: InputRound, request: Mapping[str, Any]) -> None:
        """:raises MissingCapabilityError: ``round_``'s request did not declare the client
        capability ``request`` needs (``elicitation``, ``sampling``, ``roots``)."""
        needed = _CAPABILITY_OF.get(str(request.get("method")))
        if needed is not None and not isinstance(round_.capabilities.get(needed), Mapping):
            raise MissingCapabilityError({needed: {}})


#: The client capability each kind of input request needs (MCP 2026-07-28 checks them).
_CAPABILITY_OF = {
    "elicitation/create": "elicitation",
    "sampling/createMessage": "sampling",
    "roots/list": "roots",
}


def elicitation_request(message: str, requested_schema: Mapping[str, Any]) -> JsonDict:
    """An ``elicitation/create`` input request (form mode) for :meth:`ToolContext.request_input`
    or a tool's ``pre_task_input``."""
    params = {"mode": "form", "message": message, "requestedSchema": dict(requested_schema)}
    return {"method": "elicitation/create", "params": params}


def _elicit_result(answer: Any) -> JsonDict:
    """An answer as the tool gets it; a JSON-RPC error answer raises :class:`ToolError`."""
    if isinstance(answer, Mapping) and "error" in answer and "action" not in answer:
        error = answer["error"]
        text = error.get("message") if isinstance(error, Mapping) else None
        raise ToolError(f"The client could not provide the input: {text or 'error'}")
    return dict(answer) if isinstance(answer, Mapping) else {}
