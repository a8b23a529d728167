"""``TaskContext``: the handle a task's handler (a tool running in the background) works with.

It binds a store, a task id and an owner, so handler code reads and writes its own task without
repeating them, and can check ``cancelled`` to stop cooperatively.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from taskstore.errors import TaskNotFoundError
from taskstore.record import TaskRecord
from taskstore.states import TaskStatus
from taskstore.store import TaskStore

__all__ = ["TaskContext"]

_T = TypeVar("_T")


class TaskContext:
    """Handler-side view of one task. Thread-safe (every call goes to the store).

    :param store: the store holding the task.
    :param task_id: the task's id.
    :param owner: the task's owner.
    """

    def __init__(self, store: TaskStore, task_id: str, owner: str) -> None:
        self.store = store
        self.task_id = task_id
        self.owner = owner

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id!r})"

    # -- reading -------------------------------------------------------------------------

    @property
    def record(self) -> TaskRecord:
        """The task as stored right now (a fresh read).

        :raises TaskNotFoundError: the task expired or was removed.
        """
        return self.store.get(self.task_id, self.owner)

    @property
    def status(self) -> TaskStatus:
        """The current status (a fresh read)."""
        return self.record.status

    @property
    def cancelled(self) -> bool:
        """``True`` once the task was cancelled, or no longer exists (expired): either way the
        handler should stop. Reads the store, so it sees cancels from other processes."""
        try:
            return self.record.status is TaskStatus.CANCELLED
        except TaskNotFoundError:
            return True

    @property
    def variables(self) -> dict[str, Any]:
        """A copy of all variables (a fresh read)."""
        return dict(self.record.variables)

    def get_variable(self, name: str, default: Any = None) -> Any:
        """Return variable ``name``, or ``default`` when it is not set."""
        return self.record.variables.get(name, default)

    def _typed(self, name: str, kinds: type | tuple[type, ...], default: _T) -> Any:
        value = self.record.variables.get(name)
        # bool is a subclass of int in Python, but JSON keeps them apart, and so do we.
        if isinstance(value, bool):
            return value if kinds is bool else default
        return value if isinstance(value, kinds) else default

    def get_str(self, name: str, default: str | None = None) -> str | None:
        """Variable ``name`` if it is a string, else ``default`` (missing or another type)."""
        result: str | None = self._typed(name, str, default)
        return result

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """Variable ``name`` if it is an integer, else ``default``. ``true``/``false`` are
        booleans, never integers."""
        result: int | None = self._typed(name, int, default)
        return result

    def get_float(self, name: str, default: float | None = None) -> float | None:
        """Variable ``name`` as a float if it is a number (not a boolean), else ``default``."""
        value = self._typed(name, (int, float), None)
        return float(value) if value is not None else default

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        """Variable ``name`` if it is a boolean, else ``default`` (``1`` is not ``True``)."""
        result: bool | None = self._typed(name, bool, default)
        return result

    def get_list(self, name: str, default: list[Any] | None = None) -> list[Any] | None:
        """Variable ``name`` if it is an array, else ``default``."""
        result: list[Any] | None = self._typed(name, list, default)
        return result

    def get_dict(self, name: str, default: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Variable ``name`` if it is an object, else ``default``."""
        result: dict[str, Any] | None = self._typed(name, dict, default)
        return result

    # -- writing -------------------------------------------------------------------------

    def set_variable(self, name: str, value: Any) -> TaskRecord:
        """Set one variable (``None`` deletes it); see :meth:`TaskStore.set_variables`."""
        return self.store.set_variables(self.task_id, self.owner, {name: value})

    def set_variables(self, variables: Mapping[str, Any]) -> TaskRecord:
        """Merge several variables at once, atomically."""
        return self.store.set_variables(self.task_id, self.owner, variables)

    def delete_variable(self, name: str) -> TaskRecord:
        """Remove variable ``name`` (a no-op if it is not set)."""
        return self.store.set_variables(self.task_id, self.owner, {name: None})

    def set_message(self, message: str | None) -> TaskRecord:
        """Change the ``statusMessage`` without changing the status."""
        return self.store.set_message(self.task_id, self.owner, message)

    def require_input(self, message: str | None = None) -> TaskRecord:
        """Move to ``input_required`` (the handler waits for the client)."""
        return self.store.update_status(
            self.task_id, self.owner, TaskStatus.INPUT_REQUIRED, message
        )

    def resume(self, message: str | None = None) -> TaskRecord:
        """Move from ``input_required`` back to ``working``."""
        return self.store.update_status(self.task_id, self.owner, TaskStatus.WORKING, message)

    def complete(self, result: Any, *, message: str | None = None) -> TaskRecord:
        """Finish with ``result``; see :meth:`TaskStore.complete`."""
        return self.store.complete(self.task_id, self.owner, result, message=message)

    def fail(
        self,
        error: Mapping[str, Any] | None = None,
        message: str | None = None,
        result: Any = None,
    ) -> TaskRecord:
        """Finish as ``failed``; see :meth:`TaskStore.fail`."""
        return self.store.fail(self.task_id, self.owner, error, message, result)

    def cancel(self, message: str | None = None) -> TaskRecord:
        """Cancel the task; see :meth:`TaskStore.cancel`."""
        return self.store.cancel(self.task_id, self.owner, message)
