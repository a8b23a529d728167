"""The task state machine (DESIGN §4).

``TaskStatus`` is a ``str``-valued enum, so ``TaskStatus("working") is TaskStatus.WORKING`` and
statuses compare equal to their wire strings. Terminal statuses never change again.
"""

from __future__ import annotations

import enum

from taskstore.errors import InvalidTransitionError

__all__ = ["TERMINAL_STATUSES", "TaskStatus", "can_transition", "validate_transition"]


class TaskStatus(str, enum.Enum):
    """The five statuses of MCP 2025-11-25 (note the double ``l`` of ``cancelled``)."""

    WORKING = "working"
    INPUT_REQUIRED = "input_required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """``True`` for ``completed``, ``failed`` and ``cancelled``."""
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.WORKING: frozenset(
        {TaskStatus.INPUT_REQUIRED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    TaskStatus.INPUT_REQUIRED: frozenset(
        {TaskStatus.WORKING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def can_transition(from_status: TaskStatus, to_status: TaskStatus) -> bool:
    """Return whether the table of DESIGN §4 allows ``from_status`` → ``to_status``.

    Self-transitions and every move out of a terminal status are refused.
    """
    return to_status in _ALLOWED[TaskStatus(from_status)]


def validate_transition(task_id: str, from_status: TaskStatus, to_status: TaskStatus) -> None:
    """Raise :class:`~taskstore.errors.InvalidTransitionError` unless the move is allowed.

    :raises InvalidTransitionError: (JSON-RPC -32602) naming the task and both statuses.
    """
    if not can_transition(from_status, to_status):
        raise InvalidTransitionError(
            task_id, TaskStatus(from_status).value, TaskStatus(to_status).value
        )
