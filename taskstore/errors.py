"""The taskstore exception tree, and the JSON-RPC error codes (defined here once).

Every exception taskstore raises derives from :class:`TaskStoreError` and carries the JSON-RPC
``code`` it maps to on the wire (``None`` for configuration errors, which never reach a client)::

    TaskStoreError
    ├── ProtocolError               (own)   a JSON-RPC error that is not about one task
    │   ├── OutcomeError            (own)   a task's stored JSON-RPC error, sent verbatim
    │   ├── HeaderMismatchError     -32020  a routing header disagrees with the body
    │   ├── MissingCapabilityError  -32021  the request lacks a client capability it needs
    │   └── UnsupportedVersionError -32022  the request's protocol version is not served
    ├── AuthenticationError         -32600  the transport refuses the caller (HTTP 401)
    ├── ToolError                   -32603  a tool execution error (``isError: true`` result)
    ├── TaskCancelled               -32603  inside a tool: its task was cancelled, stop
    ├── InputRequired               -32603  inside a tool: it needs the client's input first
    ├── TaskNotFoundError           -32602  unknown, expired or another owner's task
    ├── InvalidTransitionError      -32602  the state machine refuses the move
    ├── InvalidParamsError          -32602  bad ttl, bad variables, malformed input
    │   ├── VariablesTooLargeError          merged variables exceed a limit
    │   └── ResultTooLargeError             outcome exceeds ``result_max_bytes``
    ├── InvalidCursorError          -32602  malformed, foreign or stale list cursor
    ├── NotReadyError               -32602  ``get_result`` before the task is terminal
    │   └── TaskCancelledError              a cancelled task has no outcome, ever
    ├── AnonymousAccessError        -32600  anonymous owner may not create tasks
    ├── QuotaExceededError          -32010  owner already holds ``max_tasks_per_owner`` live tasks
    ├── ConflictError               -32603  compare-and-set retry budget spent
    ├── BackendError                -32603  the storage failed after its retries (``applied``
    │                                       says whether the write may have happened)
    ├── RecordNotFound              -32603  backend contract: key absent or expired
    ├── VersionConflict             -32603  backend contract: compare-and-set lost
    └── ConfigurationError          None    bad URL, bad option, unknown scheme
        ├── MissingDependencyError          optional driver not installed (also ImportError)
        └── WorkflowDefinitionError         a workflow that cannot run (taskstore.workflow)

``RecordNotFound`` and ``VersionConflict`` are the backend contract's signals (DESIGN §6); the
store translates them and they never reach a protocol client. :class:`ToolError` and
:class:`TaskCancelled` are signals between a tool and the tool runner, which turns them into a
result (never a JSON-RPC error). Messages never name an owner, so an error sent to one client
cannot leak another client's data. ``WorkflowDefinitionError`` lives in
:mod:`taskstore.workflow.definition` (it names workflow parts) but belongs to this tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AnonymousAccessError",
    "AuthenticationError",
    "BackendError",
    "ConfigurationError",
    "ConflictError",
    "HeaderMismatchError",
    "InputRequired",
    "InvalidCursorError",
    "InvalidParamsError",
    "InvalidTransitionError",
    "MissingCapabilityError",
    "MissingDependencyError",
    "NotReadyError",
    "OutcomeError",
    "ProtocolError",
    "QuotaExceededError",
    "RecordNotFound",
    "ResultTooLargeError",
    "TaskCancelled",
    "TaskCancelledError",
    "TaskNotFoundError",
    "TaskStoreError",
    "ToolError",
    "UnsupportedVersionError",
    "VariablesTooLargeError",
    "VersionConflict",
]

#: JSON-RPC 2.0 error codes: the only place they are defined (``taskstore.mcp.jsonrpc``
#: re-exports them; ``__all__`` here lists the exception classes only).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: MCP 2026-07-28: a routing header disagrees with the body, or is missing.
HEADER_MISMATCH = -32020
#: MCP 2026-07-28: the request lacks a client capability the server needs for it.
MISSING_CAPABILITY = -32021
#: MCP 2026-07-28: the request's protocol version is not served.
UNSUPPORTED_VERSION = -32022
#: taskstore (JSON-RPC's implementation-defined server-error range, clear of -32000 "server
#: busy", of -32001..-32003 that SDKs use and of MCP's -32020..-32029): the caller's owner
#: already holds its quota of live tasks; ``data.limit`` is the quota, and the request may be
#: retried once some of its tasks have ended or expired.
QUOTA_EXCEEDED = -32010


class TaskStoreError(Exception):
    """Root of every taskstore error.

    :param message: human-readable text, safe to send to the requesting client.
    :param data: optional JSON-serialisable ``data`` member of the JSON-RPC error.
    """

    #: JSON-RPC error code this error maps to; ``None`` for errors that are not protocol errors.
    code: int | None = INTERNAL_ERROR

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_jsonrpc(self) -> dict[str, Any]:
        """Return the JSON-RPC error object ``{"code", "message", "data"?}``.

        ``data`` is omitted when the error carries none. Errors without a protocol code report
        ``-32603`` (internal error).
        """
        error: dict[str, Any] = {
            "code": self.code if self.code is not None else INTERNAL_ERROR,
            "message": self.message,
        }
        if self.data is not None:
            error["data"] = self.data
        return error


class TaskNotFoundError(TaskStoreError):
    """No task with this id is visible to the caller: unknown, expired, or owned by another.

    The three cases are indistinguishable on purpose (no existence leak).
    """

    code = INVALID_PARAMS

    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task not found: {task_id}", data={"taskId": task_id})
        self.task_id = task_id


class InvalidTransitionError(TaskStoreError):
    """The state machine (DESIGN §4) does not allow moving ``task_id`` from ``from_status`` to
    ``to_status``; nothing was written."""

    code = INVALID_PARAMS

    def __init__(self, task_id: str, from_status: str, to_status: str) -> None:
        super().__init__(
            f"Invalid task status transition for task {task_id}: {from_status} -> {to_status}",
            data={"taskId": task_id, "from": from_status, "to": to_status},
        )
        self.task_id = task_id
        self.from_status = from_status
        self.to_status = to_status


class InvalidParamsError(TaskStoreError):
    """Input was rejected (bad ttl, bad variables, malformed request); nothing was written."""

    code = INVALID_PARAMS


class VariablesTooLargeError(InvalidParamsError):
    """The merged variables would exceed ``max_variable_bytes`` (or a backend's lower cap)."""


class ResultTooLargeError(InvalidParamsError):
    """The outcome would exceed ``result_max_bytes`` (or a backend's lower cap)."""


class InvalidCursorError(TaskStoreError):
    """A ``tasks/list`` cursor is malformed, was issued to another owner, or points at a task
    that no longer exists; or a backend scan cursor is malformed. The listing never silently
    restarts."""

    code = INVALID_PARAMS


class NotReadyError(TaskStoreError):
    """``get_result`` was called on a task that has not reached a terminal status."""

    code = INVALID_PARAMS

    @classmethod
    def of_task(cls, task_id: str, status: str) -> NotReadyError:
        """The error for task ``task_id``, still ``status``."""
        return cls(
            f"Task {task_id} is not finished yet (status: {status})",
            data={"taskId": task_id, "status": status},
        )


class TaskCancelledError(NotReadyError):
    """The task was cancelled: it has no outcome and never will."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"Task {task_id} was cancelled and has no result",
            data={"taskId": task_id, "status": "cancelled"},
        )
        self.task_id = task_id


class AnonymousAccessError(TaskStoreError):
    """The anonymous owner may not create tasks unless ``allow_anonymous=True``."""

    code = INVALID_REQUEST


class QuotaExceededError(TaskStoreError):
    """The owner already holds ``max_tasks_per_owner`` live tasks (:data:`QUOTA_EXCEEDED`,
    -32010; ``data.limit`` is the quota). Retrying is fine once some of them have ended and
    expired: terminal tasks count until their TTL runs out."""

    code = QUOTA_EXCEEDED

    @classmethod
    def of_limit(cls, limit: int) -> QuotaExceededError:
        """The error for an owner holding ``limit`` live tasks, the quota."""
        return cls(
            f"Task quota exceeded: at most {limit} live tasks per owner; retry when some have "
            "ended or expired",
            data={"limit": limit},
        )


class ConflictError(TaskStoreError):
    """Concurrent writers kept winning the compare-and-set for longer than the retry budget."""

    @classmethod
    def of_task(cls, task_id: str, attempts: int) -> ConflictError:
        """The error for task ``task_id`` after ``attempts`` lost compare-and-sets."""
        return cls(
            f"Task {task_id} is being updated concurrently; gave up after {attempts} attempts",
            data={"taskId": task_id, "attempts": attempts},
        )


class BackendError(TaskStoreError):
    """The storage driver failed; the original exception is chained as ``__cause__``.

    Raised only once the backend's retries of transient faults (connection refused or reset,
    timeouts, throttling) have run out of time (``StoreConfig.retry_deadline_ms``), or at once
    for a fault that retrying cannot cure (bad credentials, a missing table, corrupt data).

    ``str(error)`` keeps the driver's details for logs; :meth:`to_jsonrpc` does not send them
    to clients (they may name hosts, ports or tables).

    :param applied: what became of the write the call was making: ``False`` when it is known
        not to have been applied (nothing was sent, the server refused it, or the call only
        reads); ``None`` when it may or may not have been (a request was sent and its reply
        never came). Never ``True``: a write known to be applied is a success, not an error.
        Resolve ``None`` by reading the task again once the storage answers (``get``); see
        the README's "Failure semantics".
    :param transient: the storage was unreachable or overloaded; the same call may succeed
        later. ``False`` for faults retrying does not cure.
    :param task_id: the task the failed call was about, when there is one; for a failed
        ``create`` it is the id the task has if the create was applied after all.
    """

    def __init__(
        self,
        message: str,
        *,
        data: Any = None,
        applied: bool | None = None,
        transient: bool = False,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, data=data)
        if applied is True:
            raise ValueError("BackendError.applied is never True: an applied write succeeded")
        #: ``False``: known not applied; ``None``: the outcome is unknown (see the class).
        self.applied: bool | None = applied
        #: Whether the fault was a transient one (the storage was down, slow or throttling).
        self.transient = transient
        #: The task the call was about, if any (a failed ``create`` names the id it made).
        self.task_id = task_id

    def to_jsonrpc(self) -> dict[str, Any]:
        """``{"code": -32603, "message": ...}`` without the driver's details."""
        return {"code": INTERNAL_ERROR, "message": "Internal error: the task storage failed"}


class RecordNotFound(TaskStoreError):
    """Backend contract: the key is absent or expired."""

    def __init__(self, key: tuple[str, str]) -> None:
        super().__init__(f"record not found: {key[1]}")
        self.key = key


class VersionConflict(TaskStoreError):
    """Backend contract: a compare-and-set found ``actual`` instead of ``expected``.

    ``actual`` is 0 when the key is missing or expired.
    """

    def __init__(self, key: tuple[str, str], expected: int, actual: int) -> None:
        super().__init__(f"version conflict on {key[1]}: expected {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class ConfigurationError(TaskStoreError):
    """The store or a backend was configured wrongly (bad URL, unknown scheme, bad option)."""

    code = None


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional driver is not installed; the message is the exact ``pip install`` command."""


class ProtocolError(TaskStoreError):
    """A JSON-RPC error that is not about one task (unknown method, malformed request, ...),
    with its code given per instance.

    :param code: the JSON-RPC error code.
    :param message: text safe to send to the client.
    :param data: optional JSON ``data`` member.
    """

    code: int

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data=data)
        self.code = code


class OutcomeError(ProtocolError):
    """The task's stored outcome is a JSON-RPC error: ``tasks/result`` answers with it.

    It carries a stored error verbatim (its code included), which the tree's fixed per-class
    codes cannot express.

    :param error: the stored error object, sent unchanged (same code, message, data).
    """

    def __init__(self, error: Mapping[str, Any]) -> None:
        code = error.get("code")
        super().__init__(
            code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
            str(error.get("message", "")),
            error.get("data"),
        )
        self.error = dict(error)


class AuthenticationError(TaskStoreError):
    """Raised by an authenticator to refuse a request (HTTP 401).

    :param message: safe to show the client.
    """

    code = INVALID_REQUEST

    def __init__(self, message: str = "Authentication required") -> None:
        super().__init__(message)


class ToolError(TaskStoreError):
    """A tool execution error: the call answers ``isError: true`` with this message as text.

    Raised by tool handlers; the tool runner turns it into the result (a task-augmented call
    settles its task with it), never into a JSON-RPC error.

    :param message: what went wrong, for the model and the user.
    :param structured_content: optional ``structuredContent`` of the error result.
    """

    def __init__(self, message: str, *, structured_content: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.structured_content = structured_content

    def to_result(self) -> dict[str, Any]:
        """The ``CallToolResult`` (``isError: true``) this error stands for: one text block
        with the message. (The package's one ``isError`` builder:
        :func:`taskstore.mcp.tools.error_result` is this.)"""
        result: dict[str, Any] = {
            "content": [{"type": "text", "text": self.message}],
            "isError": True,
        }
        if self.structured_content is not None:
            result["structuredContent"] = dict(self.structured_content)
        return result


class TaskCancelled(TaskStoreError):
    """Raised inside a tool (by ``ToolContext.elicit``, or by the tool itself) when its task
    was cancelled; the runner treats it as a quiet end: the task is already final."""

    def __init__(self, task_id: str | None = None) -> None:
        super().__init__(f"Task {task_id} was cancelled" if task_id else "The call was cancelled")
        self.task_id = task_id


class HeaderMismatchError(ProtocolError):
    """MCP 2026-07-28: a routing header (``MCP-Protocol-Version``, ``Mcp-Method``,
    ``Mcp-Name``) is missing or disagrees with the request body (-32020, HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(HEADER_MISMATCH, f"Header mismatch: {message}")


class MissingCapabilityError(ProtocolError):
    """MCP 2026-07-28: the request does not declare a client capability the server needs to
    serve it (-32021, HTTP 400); ``data.requiredCapabilities`` names what is missing.

    :param required: the missing capabilities, as a ``ClientCapabilities`` object (e.g.
        ``{"sampling": {}}``).
    """

    def __init__(self, required: Mapping[str, Any], message: str | None = None) -> None:
        names = ", ".join(sorted(required)) or "a capability"
        super().__init__(
            MISSING_CAPABILITY,
            message or f"Missing required client capability: {names}",
            {"requiredCapabilities": dict(required)},
        )
        self.required = dict(required)


class UnsupportedVersionError(ProtocolError):
    """MCP 2026-07-28: the request's protocol version is not one this server serves (-32022,
    HTTP 400); ``data`` lists the ``supported`` versions and echoes the ``requested`` one."""

    def __init__(self, requested: str, supported: list[str]) -> None:
        super().__init__(
            UNSUPPORTED_VERSION,
            f"Unsupported protocol version: {requested}",
            {"supported": list(supported), "requested": requested},
        )


class InputRequired(TaskStoreError):
    """Raised inside a tool (by ``ToolContext.elicit``) when the client's input is needed and
    not available yet; the runner turns it into the era's way of asking (an
    ``InputRequiredResult`` in MCP 2026-07-28). Never reaches a client as an error.

    :param requests: input request key → ``{"method", "params"}``.
    """

    def __init__(self, requests: Mapping[str, Any]) -> None:
        super().__init__("The tool needs input from the client")
        self.requests = dict(requests)
