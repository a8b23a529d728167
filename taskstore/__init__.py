"""taskstore: durable, thread-safe MCP tasks over memory, Redis or DynamoDB.

>>> import taskstore
>>> store = taskstore.open("memory://", allow_anonymous=True)
>>> task = store.create("alice")
>>> store.complete(task.task_id, "alice", {"content": []}).status
<TaskStatus.COMPLETED: 'completed'>
"""

from __future__ import annotations

from taskstore._open import open  # noqa: A004 - taskstore.open(url) is the entry point
from taskstore._version import __version__
from taskstore.backends import open_backend, register_backend
from taskstore.backends.base import ListPosition, StorageBackend, VersionedRecord
from taskstore.backends.memory import InMemoryBackend
from taskstore.clock import Clock, ManualClock, SystemClock
from taskstore.config import StoreConfig
from taskstore.context import TaskContext
from taskstore.errors import (
    AnonymousAccessError,
    AuthenticationError,
    BackendError,
    ConfigurationError,
    ConflictError,
    HeaderMismatchError,
    InputRequired,
    InvalidCursorError,
    InvalidParamsError,
    InvalidTransitionError,
    MissingCapabilityError,
    MissingDependencyError,
    NotReadyError,
    OutcomeError,
    ProtocolError,
    QuotaExceededError,
    RecordNotFound,
    ResultTooLargeError,
    TaskCancelled,
    TaskCancelledError,
    TaskNotFoundError,
    TaskStoreError,
    ToolError,
    UnsupportedVersionError,
    VariablesTooLargeError,
    VersionConflict,
)
from taskstore.record import Outcome, TaskRecord
from taskstore.security import ANONYMOUS_OWNER, SecurityConfig, resolve_owner
from taskstore.states import TaskStatus, can_transition, validate_transition
from taskstore.store import OldestTask, ScanResult, StoreStats, TaskPage, TaskStore
from taskstore.types import (
    META_MODEL_IMMEDIATE_RESPONSE,
    META_RELATED_TASK,
    CancelTaskParams,
    CreateTaskResult,
    GetTaskParams,
    GetTaskPayloadParams,
    ListTasksParams,
    ListTasksResult,
    RelatedTaskMetadata,
    Task,
    TaskMetadata,
    ToolExecution,
)

__all__ = [
    "ANONYMOUS_OWNER",
    "META_MODEL_IMMEDIATE_RESPONSE",
    "META_RELATED_TASK",
    "AnonymousAccessError",
    "AuthenticationError",
    "BackendError",
    "CancelTaskParams",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "CreateTaskResult",
    "GetTaskParams",
    "GetTaskPayloadParams",
    "HeaderMismatchError",
    "InMemoryBackend",
    "InputRequired",
    "InvalidCursorError",
    "InvalidParamsError",
    "InvalidTransitionError",
    "ListPosition",
    "ListTasksParams",
    "ListTasksResult",
    "ManualClock",
    "MissingCapabilityError",
    "MissingDependencyError",
    "NotReadyError",
    "OldestTask",
    "Outcome",
    "OutcomeError",
    "ProtocolError",
    "QuotaExceededError",
    "RecordNotFound",
    "RelatedTaskMetadata",
    "ResultTooLargeError",
    "ScanResult",
    "SecurityConfig",
    "StorageBackend",
    "StoreConfig",
    "StoreStats",
    "SystemClock",
    "Task",
    "TaskCancelled",
    "TaskCancelledError",
    "TaskContext",
    "TaskMetadata",
    "TaskNotFoundError",
    "TaskPage",
    "TaskRecord",
    "TaskStatus",
    "TaskStore",
    "TaskStoreError",
    "ToolError",
    "ToolExecution",
    "UnsupportedVersionError",
    "VariablesTooLargeError",
    "VersionConflict",
    "VersionedRecord",
    "__version__",
    "can_transition",
    "open",
    "open_backend",
    "register_backend",
    "resolve_owner",
    "validate_transition",
]
