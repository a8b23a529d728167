"""The taskstore exception tree.

Every error raised by taskstore derives from :class:`TaskStoreError` and carries the JSON-RPC
``code`` it maps to on the wire (``None`` for configuration errors, which never reach a client)::

    TaskStoreError
    ├── TaskNotFoundError           -32602  unknown, expired or another owner's task
    ├── InvalidTransitionError      -32602  the state machine refuses the move
    ├── InvalidParamsError          -32602  bad ttl, bad variables, malformed input
    │   ├── VariablesTooLargeError          merged variables exceed a limit
    │   └── ResultTooLargeError             outcome exceeds ``result_max_bytes``
    ├── InvalidCursorError          -32602  malformed, foreign or stale list cursor
    ├── NotReadyError               -32602  ``get_result`` before the task is terminal
    │   └── TaskCancelledError              a cancelled task has no outcome, ever
    ├── AnonymousAccessError        -32600  anonymous owner may not create tasks
    ├── QuotaExceededError          -32603  owner already holds ``max_tasks_per_owner`` live tasks
    ├── ConflictError               -32603  compare-and-set retry budget spent
    ├── BackendError                -32603  the storage driver failed (cause chained)
    ├── RecordNotFound              -32603  backend contract: key absent or expired
    ├── VersionConflict             -32603  backend contract: compare-and-set lost
    └── ConfigurationError          None    bad URL, bad option, unknown scheme
        └── MissingDependencyError          optional driver not installed (also ImportError)

``RecordNotFound`` and ``VersionConflict`` are the backend contract's signals (DESIGN §6); the
store translates them and they never reach a protocol client. Messages never name an owner, so
an error sent to one client cannot leak another client's data.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AnonymousAccessError",
    "BackendError",
    "ConfigurationError",
    "ConflictError",
    "InvalidCursorError",
    "InvalidParamsError",
    "InvalidTransitionError",
    "MissingDependencyError",
    "NotReadyError",
    "QuotaExceededError",
    "RecordNotFound",
    "ResultTooLargeError",
    "TaskCancelledError",
    "TaskNotFoundError",
    "TaskStoreError",
    "VariablesTooLargeError",
    "VersionConflict",
]

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


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
    that no longer exists. The listing never silently restarts."""

    code = INVALID_PARAMS


class NotReadyError(TaskStoreError):
    """``get_result`` was called on a task that has not reached a terminal status."""

    code = INVALID_PARAMS


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
    """The owner already holds ``max_tasks_per_owner`` live tasks."""


class ConflictError(TaskStoreError):
    """Concurrent writers kept winning the compare-and-set for longer than the retry budget."""


class BackendError(TaskStoreError):
    """The storage driver failed; the original exception is chained as ``__cause__``.

    ``str(error)`` keeps the driver's details for logs; :meth:`to_jsonrpc` does not send them
    to clients (they may name hosts, ports or tables).
    """

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
