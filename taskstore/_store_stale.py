"""Stale-task recovery, the store's side (a mixin of :class:`~taskstore.store.TaskStore`):
:meth:`StaleTasksMixin.touch`, the heartbeat, and :meth:`StaleTasksMixin.fail_stale`, the
recovery pass that fails tasks nobody has touched for too long (their worker died).

A pass never fails a task on a stale view: it picks candidates from a listing or a scan, then
fails each one with a compare-and-set that checks again, against the record as stored, that
the task is unfinished and still not refreshed. A task finished, touched or deleted in between
is skipped, so any number of processes may run passes at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from taskstore import telemetry as _telemetry
from taskstore._keys import is_key_text
from taskstore._store_core import Change, StoreCore, stamped
from taskstore.backends.base import ListPosition, ScanningBackend, VersionedRecord
from taskstore.clock import parse_timestamp
from taskstore.errors import (
    ConfigurationError,
    ConflictError,
    InvalidParamsError,
    RecordNotFound,
    TaskNotFoundError,
)
from taskstore.record import Outcome, TaskRecord, decode_record
from taskstore.states import TaskStatus, validate_transition

__all__ = ["StaleTasksMixin"]

#: Records read per listing or scan page of a recovery pass.
_PAGE = 100
# A pass over one owner's listing starts again from the top when the task its next page
# starts after has expired or was deleted meanwhile (nothing is failed twice: failed tasks are
# terminal). Past this many restarts the listing is churning too fast to finish.
_MAX_RESTARTS = 16


class StaleTasksMixin(StoreCore):
    """Heartbeats and recovery passes over the store's tasks."""

    def _message(self, message: object, *, cut: bool = False) -> str | None:
        raise NotImplementedError  # pragma: no cover - StoreChecks implements it

    def touch(self, task_id: str, owner: str) -> TaskRecord:
        """Refresh the ``lastUpdatedAt`` of an unfinished task and change nothing else: the
        heartbeat of whoever is working on it, so recovery passes (:meth:`fail_stale`) see
        it alive. One compare-and-set; no event (the status did not change).

        :raises InvalidTransitionError: the task is terminal (finished, failed or cancelled).
        :raises TaskNotFoundError: unknown, expired, or another owner's task.
        """

        def apply(record: TaskRecord, now: int) -> Change:
            if record.is_terminal:
                validate_transition(task_id, record.status, record.status)
            return Change(stamped(record, now))

        return self._mutate(task_id, owner, apply, operation="touch")

    def fail_stale(
        self,
        *,
        older_than_ms: int,
        message: str,
        owner: str | None = None,
        request_method: str | None = None,
    ) -> int:
        """Fail every unfinished (``working`` or ``input_required``) task whose
        ``lastUpdatedAt`` is more than ``older_than_ms`` before the store's clock; return how
        many were failed.

        Each is failed as :meth:`fail` would with ``error={"code": -32603, "message":
        message}`` and ``statusMessage`` ``message``, by one compare-and-set that checks the
        task again as stored: one finished, touched (:meth:`touch`, or any write that moves
        ``lastUpdatedAt``) or deleted since it was picked is skipped, not an error, and not
        counted. Status events go out as for any failure, so a tool still running the task
        hears of it.

        Cost: with ``owner``, a walk of that owner's listing. Without, a pass of the
        backend's scan over every owner's tasks (:class:`~taskstore.backends.base.
        ScanningBackend`): it reads every task in the store, a page of 100 at a time (memory
        stays bounded by a page). Plus one compare-and-set per task failed.

        A pass is not atomic: if the storage fails midway, :class:`~taskstore.errors.
        BackendError` is raised and the tasks failed until then stay failed; run it again.

        :param older_than_ms: age (ms) a task must exceed since its last update.
        :param message: the error message and ``statusMessage`` (at most
            ``max_status_message_bytes``).
        :param owner: only this owner's tasks; ``None``: every owner's.
        :param request_method: only tasks created for this method (e.g. ``"tools/call"``).
        :raises ConfigurationError: ``owner=None`` on a backend that cannot scan across
            owners (it does not declare ``ScanningBackend``).
        :raises InvalidParamsError: a negative or non-integer ``older_than_ms``; a
            ``message`` that is not text or is over the cap; an ``owner`` or
            ``request_method`` that is not text.
        :raises BackendError: the storage failed.
        """
        if isinstance(older_than_ms, bool) or not isinstance(older_than_ms, int) or (
            older_than_ms < 0
        ):
            raise InvalidParamsError("older_than_ms must be a non-negative integer")
        if not isinstance(message, str):
            raise InvalidParamsError("message must be a string")
        checked = self._message(message)
        assert checked is not None
        if request_method is not None and not isinstance(request_method, str):
            raise InvalidParamsError("request_method must be a string")
        if owner is None:
            candidates = self._scanned(self._scanner())
        elif not isinstance(owner, str):
            raise InvalidParamsError("owner must be a string")
        elif not is_key_text(owner):
            return 0  # no task can have such an owner
        else:
            candidates = self._listed(owner)
        outcome = Outcome.of_error({"code": -32603, "message": checked})

        def stale(record: TaskRecord, now: int) -> bool:
            return (
                not record.is_terminal
                and (request_method is None or record.request_method == request_method)
                and now - parse_timestamp(record.task.last_updated_at) > older_than_ms
            )

        failed = 0
        with self._traced("fail_stale"):
            for stored in candidates:
                record = decode_record(stored.data, stored.version)
                if (record.owner, record.task_id) != stored.key:
                    continue  # never act on a record filed under another key
                if not stale(record, self.clock.now_ms()):
                    continue
                written = False

                def apply(current: TaskRecord, now: int) -> Change | None:
                    nonlocal written
                    written = stale(current, now)
                    if not written:
                        return None
                    moved = self._moved(
                        current, now, TaskStatus.FAILED, checked, outcome_kind=outcome.kind
                    )
                    return Change(moved, outcome, status_changed=True)

                try:
                    self._mutate(
                        record.task_id, record.owner, apply, known=record, operation="fail"
                    )
                except (TaskNotFoundError, ConflictError):
                    # Deleted or expired meanwhile; or written so busily that it cannot be
                    # abandoned: either way not a task to fail now.
                    continue
                failed += written
                if written and _telemetry.active:
                    _telemetry.task_ended(self.backend, TaskStatus.FAILED.value)
        return failed

    # -- where candidates come from ---------------------------------------------------------

    def _scanner(self) -> ScanningBackend:
        backend = self.backend
        if not isinstance(backend, ScanningBackend):
            raise ConfigurationError(
                f"{type(backend).__name__} cannot scan every owner's tasks (it does not "
                "declare taskstore.backends.base.ScanningBackend): fail_stale needs an owner "
                "on it, and stale-task recovery is unavailable"
            )
        return backend

    def _scanned(self, scanner: ScanningBackend) -> Iterator[VersionedRecord]:
        """Every live record of the store, one scan page at a time."""
        cursor: str | None = None
        while True:
            with self._operation():
                page = scanner.scan(cursor, _PAGE, now_ms=self.clock.now_ms())
            yield from page.records
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _listed(self, owner: str) -> Iterator[VersionedRecord]:
        """Every live record of ``owner``, one listing page at a time."""
        after: ListPosition | None = None
        restarts = 0
        while True:
            try:
                with self._operation():
                    page = self.backend.list_by_prefix(
                        owner, after, _PAGE, now_ms=self.clock.now_ms()
                    )
            except RecordNotFound:
                # The task the page starts after expired or was deleted; records already seen
                # are seen again, harmlessly (a failed one is terminal now).
                restarts += 1
                if restarts > _MAX_RESTARTS:
                    raise ConflictError(
                        "The owner's tasks kept changing during the recovery pass; run it again"
                    ) from None
                after = None
                continue
            yield from page
            if len(page) < _PAGE:
                return
            after = ListPosition(page[-1].sort_ms, page[-1].key[1])
