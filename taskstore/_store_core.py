"""The compare-and-set engine of :class:`~taskstore.store.TaskStore`: keys, reads, and the
read → apply → compare-and-set loop every mutation goes through (shared by the store's
mixins)."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from taskstore import telemetry as _telemetry
from taskstore._keys import is_key_text, key_text, printable
from taskstore.backends.base import RecordKey, StorageBackend, VersionedRecord, retrying_until
from taskstore.clock import Clock, format_timestamp
from taskstore.config import StoreConfig
from taskstore.errors import (
    BackendError,
    ConflictError,
    InvalidParamsError,
    RecordNotFound,
    TaskNotFoundError,
    TaskStoreError,
    VersionConflict,
)
from taskstore.events import encode_event
from taskstore.record import Outcome, TaskRecord, decode_record, encode_outcome, encode_record
from taskstore.states import TaskStatus

__all__ = ["OUTAGE_FIRST_PAUSE_S", "Change", "StoreCore", "pause_for_outage", "stamped"]

_MIN_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.1

#: The first pause of a wait that finds the storage unreachable; it doubles up to 1 s.
OUTAGE_FIRST_PAUSE_S = 0.05
_OUTAGE_MAX_PAUSE_S = 1.0


def pause_for_outage(pause: float, remaining: float | None) -> float:
    """Sleep about ``pause`` seconds (at most ``remaining``) before a waiter asks unreachable
    storage again; return the next pause. Jittered, so many waiters do not hit a recovering
    server in lockstep."""
    slept = random.uniform(pause / 2, pause)
    time.sleep(slept if remaining is None else max(0.0, min(slept, remaining)))
    return min(pause * 2, _OUTAGE_MAX_PAUSE_S)


def stamped(record: TaskRecord, now: int) -> TaskRecord:
    """``record`` with ``lastUpdatedAt`` set to ``now`` and nothing else changed."""
    task = msgspec.structs.replace(record.task, last_updated_at=format_timestamp(now))
    return msgspec.structs.replace(record, task=task)


class Change(NamedTuple):
    """One mutation a :class:`~taskstore.store.TaskStore` writes with compare-and-set."""

    record: TaskRecord
    outcome: Outcome | None = None
    status_changed: bool = False
    #: Publish an event even without a status change (the task's input requests changed).
    notify: bool = False


class StoreCore:
    """Keys, reads and compare-and-set over ``backend`` (the base of the store's parts)."""

    backend: StorageBackend
    config: StoreConfig
    clock: Clock

    def _operation(self, cap: float | None = None) -> contextlib.AbstractContextManager[None]:
        """The retry deadline of one operation (``retry_deadline_ms`` from now, or ``cap`` if
        that is sooner), handed to every backend call made inside the block."""
        deadline = time.monotonic() + self.config.retry_deadline_ms / 1000
        return retrying_until(deadline if cap is None else min(deadline, cap))

    def _recorded(
        self, operation: str, task_id: str | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """:meth:`_operation` (no cap) of the store operation named ``operation`` (a
        method's name), with its telemetry (:func:`taskstore.telemetry.store_operation`)."""
        scope = retrying_until(time.monotonic() + self.config.retry_deadline_ms / 1000)
        # Every operation passes here: with telemetry off, one flag read is all it costs.
        if _telemetry.active:
            return _telemetry.store_operation(self.backend, operation, task_id, scope)
        return scope

    def _traced(
        self, operation: str, task_id: str | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """The telemetry of an operation made of several :meth:`_operation` blocks (a wait,
        a recovery pass) or needing a cap on its retry deadline."""
        if _telemetry.active:
            return _telemetry.store_operation(self.backend, operation, task_id)
        return contextlib.nullcontext()

    @staticmethod
    def _moved(
        record: TaskRecord,
        now: int,
        status: TaskStatus,
        message: str | None,
        *,
        outcome_kind: Any = None,
    ) -> TaskRecord:
        """``record`` moved to ``status`` with ``message`` as its ``statusMessage`` at
        ``now`` (and its outcome kind, when it gets an outcome); validity is the caller's."""
        task = msgspec.structs.replace(
            record.task,
            status=status,
            status_message=message,
            last_updated_at=format_timestamp(now),
        )
        if outcome_kind is None:
            return msgspec.structs.replace(record, task=task)
        return msgspec.structs.replace(record, task=task, outcome_kind=outcome_kind)

    @staticmethod
    def _check_owner(owner: object) -> str:
        return key_text(owner, "owner")

    def _key(self, task_id: object, owner: object) -> RecordKey:
        """The record key of ``task_id``; text no key can hold (lone surrogates) names no
        task, so it is refused as any unknown task is: TaskNotFoundError."""
        if not isinstance(owner, str):
            raise InvalidParamsError("owner must be a string")
        if not isinstance(task_id, str):
            raise InvalidParamsError("task id must be a string")
        if not is_key_text(owner) or not is_key_text(task_id):
            raise TaskNotFoundError(printable(task_id))
        return (owner, task_id)

    def _decode(self, data: bytes, version: int, owner: str, task_id: str) -> TaskRecord:
        record = decode_record(data, version)
        # Defence in depth: keys are injective, but never hand out another owner's record.
        if record.owner != owner or record.task_id != task_id:
            raise TaskNotFoundError(task_id)
        return record

    def _read(self, key: RecordKey) -> tuple[TaskRecord, int]:
        now = self.clock.now_ms()
        try:
            stored = self.backend.get(key, now_ms=now)
        except RecordNotFound:
            raise TaskNotFoundError(key[1]) from None
        return self._decode(stored.data, stored.version, key[0], key[1]), now

    def _read_outcome(self, key: RecordKey) -> tuple[TaskRecord, VersionedRecord]:
        """The record and the stored item with its outcome blob (one backend read)."""
        try:
            stored = self.backend.get(key, include_outcome=True, now_ms=self.clock.now_ms())
        except RecordNotFound:
            raise TaskNotFoundError(key[1]) from None
        return self._decode(stored.data, stored.version, key[0], key[1]), stored

    def _mutate(
        self,
        task_id: str,
        owner: str,
        apply: Callable[[TaskRecord, int], Change | None],
        *,
        known: TaskRecord | None = None,
        operation: str | None = None,
    ) -> TaskRecord:
        """Compare-and-set ``apply`` on the task (see :meth:`_compare_and_set`) within one
        :meth:`_operation` named ``operation``."""
        key = self._key(task_id, owner)
        try:
            with self._operation() if operation is None else self._recorded(operation, task_id):
                return self._compare_and_set(key, apply, known, operation)
        except BackendError as exc:
            exc.task_id = task_id
            raise

    def _compare_and_set(
        self,
        key: RecordKey,
        apply: Callable[[TaskRecord, int], Change | None],
        known: TaskRecord | None = None,
        operation: str | None = None,
    ) -> TaskRecord:
        """Read → ``apply`` → compare-and-set, again on every lost compare-and-set until the
        conflict budget is spent. ``known``, a record of ``key`` the caller already read (a
        listing, a scan, the record ``create`` returned), stands in for the first read: if it
        is out of date the compare-and-set loses and the loop reads afresh at once (a stale
        guess is not a race: no backoff, no conflict counted); and a ``known`` record that
        needs no write is read afresh before that is trusted."""
        task_id = key[1]
        deadline = time.monotonic() + self.config.conflict_retry_budget_ms / 1000
        backoff = _MIN_BACKOFF_S
        attempts = 0
        while True:
            guessed = known is not None
            if known is not None:
                record, now, known = known, self.clock.now_ms(), None
            else:
                attempts += 1
                record, now = self._read(key)
            try:
                change = apply(record, now)
            except TaskStoreError:
                if guessed:  # judged on a stale guess, maybe: judge the stored record
                    continue
                raise
            if change is None:
                if guessed:
                    continue
                return record
            try:
                version = self.backend.put_if_version(
                    key,
                    encode_record(change.record),
                    record.version,
                    outcome=None if change.outcome is None else encode_outcome(change.outcome),
                    event=(
                        encode_event(
                            change.record,
                            record.version + 1,
                            status_changed=change.status_changed,
                        )
                        if change.status_changed or change.notify
                        else None
                    ),
                    now_ms=now,
                )
            except VersionConflict as conflict:
                if conflict.actual == 0:
                    raise TaskNotFoundError(task_id) from None
                if guessed:
                    continue
                if _telemetry.active and operation is not None:
                    _telemetry.store_conflict(self.backend, operation)
                if time.monotonic() >= deadline:
                    raise ConflictError.of_task(task_id, attempts) from conflict
                # Full jitter keeps racing writers from retrying in lockstep.
                time.sleep(random.uniform(0, backoff))
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            return msgspec.structs.replace(change.record, version=version, outcome=change.outcome)
