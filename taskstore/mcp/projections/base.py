"""The :class:`Projection` protocol every protocol era implements (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from taskstore.aliases import JsonDict
from taskstore.record import Outcome, TaskRecord
from taskstore.states import TaskStatus

__all__ = ["Projection"]


class Projection(Protocol):
    """How one protocol era projects task records onto the wire. Implementations are
    stateless and thread-safe."""

    #: Status a task ends in when its tool returns a result with ``isError: true``.
    is_error_status: TaskStatus

    def task(self, record: TaskRecord) -> JsonDict:
        """The task as the era's ``tasks/get`` answers it."""
        ...

    def created(self, record: TaskRecord, *, immediate_response: str | None = None) -> JsonDict:
        """The answer to a request that created ``record`` (a task-augmented ``tools/call``)."""
        ...

    def cancelled(self, record: TaskRecord) -> JsonDict:
        """The answer to ``tasks/cancel`` (``record`` is the task after the cancel)."""
        ...

    def listed(self, records: Sequence[TaskRecord], next_cursor: str | None) -> JsonDict:
        """The answer to ``tasks/list``."""
        ...

    def payload(self, record: TaskRecord, outcome: Outcome) -> JsonDict:
        """The answer to ``tasks/result`` for a terminal task with ``outcome``.

        :raises OutcomeError: the outcome is a JSON-RPC error to send as such.
        """
        ...

    def status_notification(self, record: TaskRecord) -> JsonDict | None:
        """The notification announcing ``record``'s new status, or ``None`` when the era has
        no such notification."""
        ...
