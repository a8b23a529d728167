"""``TaskStore``: every task rule of DESIGN §5 over any :class:`StorageBackend`.

Mutations are read → validate → compare-and-set. A lost compare-and-set re-reads and
re-validates (so concurrent ``set_variables`` never lose an update and the loser of a
``complete``/``cancel`` race gets ``InvalidTransitionError``), with jittered exponential backoff
bounded by time. Reads that only need status never fetch or decode outcomes.

Faults: every operation hands its ``retry_deadline_ms`` to the backend calls it makes
(:func:`~taskstore.backends.base.retrying_until`); the backend retries transient faults until
then and recognises its own writes on a replay, so what reaches the caller is a success or a
:class:`~taskstore.errors.BackendError` whose ``applied`` tells whether the write may have
happened. Finishing a task again with the same outcome succeeds (the retry of a call whose
reply was lost), and :meth:`TaskStore.wait` rides out outages until its own timeout.

The store is assembled from parts: :mod:`taskstore._store_core` (keys, reads,
compare-and-set), :mod:`taskstore._store_checks` (input checks), :mod:`taskstore._store_waits`
(``wait``), :mod:`taskstore._store_inputs` (input requests) and
:mod:`taskstore._store_stale` (``touch`` and ``fail_stale``, stale-task recovery).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import msgspec

from taskstore import telemetry as _telemetry
from taskstore._keys import decode_cursor, encode_cursor, is_key_text
from taskstore._keys import new_task_id as _new_task_id
from taskstore._store_admin import AdminMixin, OldestTask, ScanResult, StoreStats
from taskstore._store_checks import RESULT_MAX_DEPTH as _RESULT_MAX_DEPTH
from taskstore._store_checks import StoreChecks
from taskstore._store_core import Change as _Change
from taskstore._store_inputs import InputRequestsMixin
from taskstore._store_waits import WaitingMixin
from taskstore.backends.base import (
    ListPosition,
    StorageBackend,
    VersionedRecord,
)
from taskstore.clock import Clock, SystemClock, format_timestamp
from taskstore.config import StoreConfig
from taskstore.errors import (
    AnonymousAccessError,
    BackendError,
    ConflictError,
    InvalidCursorError,
    InvalidParamsError,
    InvalidTransitionError,
    NotReadyError,
    RecordNotFound,
    TaskCancelledError,
    VersionConflict,
)
from taskstore.events import RecordCallback, StatusCallback, StatusEvents
from taskstore.record import (
    Outcome,
    TaskRecord,
    decode_outcome,
    decode_record,
    encode_outcome,
    encode_record,
    json_size,
    merge_variables,
    validate_json_value,
)
from taskstore.security import SecurityConfig, is_anonymous
from taskstore.states import TaskStatus, validate_transition
from taskstore.types import Task

__all__ = [
    "OldestTask",
    "RecordCallback",
    "ScanResult",
    "StatusCallback",
    "StoreStats",
    "TaskPage",
    "TaskStore",
]

_log = logging.getLogger("taskstore.store")


_MIN_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.1
# The store operation (telemetry's db.operation.name) that finishes a task with each status.
_FINISHES = {
    TaskStatus.COMPLETED: "complete",
    TaskStatus.FAILED: "fail",
    TaskStatus.CANCELLED: "cancel",
}
# What ping() reads: a key no generated task id can have (reading it is harmless anyway, and
# its answer, found or not, is never used).
_PING_KEY = ("\x00taskstore", "\x00ping")


class TaskPage(NamedTuple):
    """One page of :meth:`TaskStore.list`: newest first; ``next_cursor`` is ``None`` at the end."""

    tasks: list[TaskRecord]
    next_cursor: str | None




class TaskStore(StoreChecks, WaitingMixin, InputRequestsMixin, AdminMixin):
    """Owner-scoped MCP tasks over a :class:`~taskstore.backends.base.StorageBackend`.

    Thread-safe: one store may be shared by every thread of a process, and several processes
    may share one Redis or DynamoDB backend. Every method takes the ``owner`` and treats tasks
    of other owners exactly like tasks that do not exist.

    :param backend: where records live.
    :param config: limits and defaults (:class:`StoreConfig`).
    :param security: quota and anonymous policy (:class:`SecurityConfig`).
    :param clock: time source (epoch ms); inject a :class:`~taskstore.clock.ManualClock` in
        tests instead of sleeping.
    :param deployment_key: see :attr:`deployment_key` (``taskstore.open`` sets it).
    """

    def __init__(
        self,
        backend: StorageBackend,
        *,
        config: StoreConfig | None = None,
        security: SecurityConfig | None = None,
        clock: Clock | None = None,
        deployment_key: bytes | None = None,
    ) -> None:
        self.backend = backend
        #: A secret shared by every process whose store was opened on the same storage URL
        #: (:func:`taskstore.open` derives it from the URL, credentials included, for every
        #: backend but ``memory://``), or ``None``. The MCP layer signs with it what one
        #: worker issues and another must accept (session ids, ``requestState``) when no key
        #: is configured. Never sent anywhere.
        self.deployment_key = deployment_key
        self.config = config if config is not None else StoreConfig()
        self.security = security if security is not None else SecurityConfig()
        self.clock: Clock = clock if clock is not None else SystemClock()
        # (callback as registered, owner filter, what to call with the changed record)
        self._events = StatusEvents(backend)
        backend_variables = getattr(backend, "max_variable_bytes", None)
        backend_results = getattr(backend, "max_result_bytes", None)
        #: Effective variables cap: the smaller of the config's and the backend's.
        self.max_variable_bytes = min(
            self.config.max_variable_bytes,
            backend_variables if backend_variables is not None else self.config.max_variable_bytes,
        )
        #: Effective result cap: the smaller of the config's and the backend's.
        self.result_max_bytes = min(
            self.config.result_max_bytes,
            backend_results if backend_results is not None else self.config.result_max_bytes,
        )

    def __repr__(self) -> str:
        return f"TaskStore(backend={self.backend!r})"

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- creating and reading ------------------------------------------------------------

    def create(
        self,
        owner: str,
        request_method: str = "tools/call",
        ttl_ms: int | None = None,
        request: Mapping[str, Any] | None = None,
        *,
        status_message: str | None = None,
    ) -> TaskRecord:
        """Create a ``working`` task for ``owner`` and return it (version 1).

        :param request_method: the method of the request the task stands for.
        :param ttl_ms: requested lifetime in ms from creation; ``None`` uses the default; values
            outside ``[min_ttl_ms, max_ttl_ms]`` are clamped, and the Task reports the value used.
        :param request: the original request params, stored for the task's handler (at most
            ``max_request_bytes`` as compact JSON).
        :param status_message: the task's first ``statusMessage``.
        :raises AnonymousAccessError: anonymous owner while ``allow_anonymous`` is off.
        :raises InvalidParamsError: an owner that is not valid Unicode text; negative, boolean
            or non-integer ``ttl_ms``, or one reaching past the latest expiry
            (:data:`~taskstore.config.MAX_EXPIRES_AT_MS`); a bad or oversized request, method
            or status message. Nothing is written.
        :raises QuotaExceededError: the owner holds ``max_tasks_per_owner`` live tasks.
        :raises BackendError: the storage failed; ``task_id`` names the id the task has if
            the create was applied after all (``applied is None``: resolve with :meth:`get`).
        """
        self._check_owner(owner)
        if is_anonymous(owner) and not self.security.allow_anonymous:
            raise AnonymousAccessError(
                "Anonymous requestors may not create tasks on this server; authenticate first"
            )
        self._check_text(
            request_method, self.config.max_request_method_bytes, "request_method", empty=False
        )
        status_message = self._message(status_message)
        if request is not None:
            if not isinstance(request, Mapping):
                raise InvalidParamsError("request must be a JSON object")
            request = dict(request)
            validate_json_value(
                request,
                max_depth=_RESULT_MAX_DEPTH,
                max_string_bytes=self.result_max_bytes,
                what="the request",
            )
            size = json_size(request)
            if size > self.config.max_request_bytes:
                raise InvalidParamsError(
                    f"The request takes {size} bytes, over the limit of "
                    f"{self.config.max_request_bytes} bytes",
                    data={"limit": self.config.max_request_bytes, "size": size},
                )
        now = self.clock.now_ms()
        ttl = self._resolve_ttl(ttl_ms, now)
        stamp = format_timestamp(now)
        record = TaskRecord(
            task=Task(
                task_id=_new_task_id(),
                status=TaskStatus.WORKING,
                created_at=stamp,
                last_updated_at=stamp,
                ttl=ttl,
                status_message=status_message,
                poll_interval=self.config.poll_interval_ms,
            ),
            owner=owner,
            created_at_ms=now,
            expires_at_ms=None if ttl is None else now + ttl,
            request_method=request_method,
            request=request,
        )
        try:
            with self._recorded("create", record.task_id):
                version = self.backend.create(
                    (owner, record.task_id),
                    encode_record(record),
                    record.expires_at_ms,
                    sort_ms=now,
                    max_live=self.security.max_tasks_per_owner,
                    now_ms=now,
                )
        except VersionConflict as exc:  # 122 random bits collided: astronomically unlikely
            raise ConflictError("Task id collision; retry the request") from exc
        except BackendError as exc:
            # The caller never saw the id; without it an unknown outcome could not be resolved.
            exc.task_id = record.task_id
            raise
        if _telemetry.active:
            _telemetry.task_created(self.backend)
        return msgspec.structs.replace(record, version=version)

    def get(self, task_id: str, owner: str) -> TaskRecord:
        """Return the task (without loading its outcome).

        :raises TaskNotFoundError: unknown, expired, or another owner's task.
        """
        key = self._key(task_id, owner)
        with self._recorded("get", task_id):
            return self._read(key)[0]

    def get_result(self, task_id: str, owner: str) -> Outcome:
        """Return the :class:`~taskstore.record.Outcome` of a terminal task.

        :raises NotReadyError: the task is still working or waiting for input.
        :raises TaskCancelledError: the task was cancelled (no outcome exists).
        :raises TaskNotFoundError: unknown, expired, or another owner's task.
        """
        key = self._key(task_id, owner)
        with self._recorded("get_result", task_id):
            record, stored = self._read_outcome(key)
        if record.status is TaskStatus.CANCELLED:
            raise TaskCancelledError(task_id)
        if not record.is_terminal:
            raise NotReadyError.of_task(task_id, record.status.value)
        return _stored_outcome(record, stored)

    def get_with_outcome(self, task_id: str, owner: str) -> TaskRecord:
        """Return the task with its outcome loaded, in one backend read: ``record.outcome``
        is what :meth:`get_result` would return for a completed or failed task, and ``None``
        for a task still running or cancelled.

        For callers that answer with the outcome as soon as there is one (``tasks/result``, a
        ``tasks/get`` that carries it inline): :meth:`get` then :meth:`get_result` reads twice.

        :raises TaskNotFoundError: unknown, expired, or another owner's task.
        """
        key = self._key(task_id, owner)
        with self._recorded("get_with_outcome", task_id):
            record, stored = self._read_outcome(key)
        if record.status not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            return record
        return msgspec.structs.replace(record, outcome=_stored_outcome(record, stored))

    def list(self, owner: str, cursor: str | None = None, limit: int | None = None) -> TaskPage:
        """Return one page of ``owner``'s live tasks, newest first (ties by task id).

        :param cursor: ``next_cursor`` of the previous page, or ``None`` for the first.
        :param limit: page size (default ``list_page_size``, at most ``max_list_page_size``).
        :raises InvalidCursorError: malformed cursor, another owner's cursor, or a cursor whose
            last task has since expired or been deleted.
        :raises InvalidParamsError: bad ``limit``; an owner that is not a string.

        An owner no task can have (text with lone surrogates) gets an empty page, as any
        owner without tasks does.
        """
        if not isinstance(owner, str):
            raise InvalidParamsError("owner must be a string")
        if limit is None:
            limit = self.config.list_page_size
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= self.config.max_list_page_size
        ):
            raise InvalidParamsError(
                f"limit must be an integer from 1 to {self.config.max_list_page_size}"
            )
        after = None if cursor is None else decode_cursor(cursor, owner)
        if not is_key_text(owner):
            return TaskPage([], None)
        try:
            with self._recorded("list"):
                stored = self.backend.list_by_prefix(
                    owner, after, limit + 1, now_ms=self.clock.now_ms()
                )
        except RecordNotFound:
            raise InvalidCursorError(
                "Invalid cursor: the task it points at no longer exists; list from the start"
            ) from None
        records = [
            record
            for record in (decode_record(item.data, item.version) for item in stored)
            if record.owner == owner
        ]
        if len(records) > limit:
            records = records[:limit]
            last = records[-1]
            position = ListPosition(last.created_at_ms, last.task_id)
            return TaskPage(records, encode_cursor(position, owner))
        return TaskPage(records, None)

    def cleanup_expired(self) -> int:
        """Reclaim expired tasks' storage; return how many were removed. Expired tasks are
        already invisible; this only frees space (backends with native TTL do it themselves)."""
        with self._recorded("cleanup_expired"):
            return self.backend.cleanup_expired(self.clock.now_ms())

    def ping(self, timeout_s: float | None = None) -> None:
        """Check that the storage answers: one cheap read (a key no task can have), in the
        health checks of :class:`~taskstore.http.McpWsgiApp` and operator tools.

        Transient faults are retried until ``retry_deadline_ms`` or ``timeout_s``, whichever
        comes first (a call blocked in the driver may still take its own socket timeout).

        :raises BackendError: the storage did not answer.
        """
        cap = None if timeout_s is None else time.monotonic() + timeout_s
        with self._traced("ping"), self._operation(cap):
            try:
                self.backend.get(_PING_KEY, now_ms=self.clock.now_ms())
            except RecordNotFound:
                pass

    # -- mutations -----------------------------------------------------------------------

    def update_status(
        self, task_id: str, owner: str, status: TaskStatus | str, message: str | None = None
    ) -> TaskRecord:
        """Move the task to ``status`` with ``message`` as its ``statusMessage`` (``None``
        clears it). ``completed``/``failed``/``cancelled`` go through :meth:`complete` (with a
        ``null`` result), :meth:`fail` and :meth:`cancel`.

        :raises InvalidTransitionError: the state machine refuses the move.
        :raises InvalidParamsError: ``status`` is not a task status.
        """
        target = self._status(status)
        if target is TaskStatus.COMPLETED:
            return self.complete(task_id, owner, None, message=message)
        if target is TaskStatus.FAILED:
            return self.fail(task_id, owner, message=message)
        if target is TaskStatus.CANCELLED:
            return self.cancel(task_id, owner, message=message)
        message = self._message(message)

        def apply(record: TaskRecord, now: int) -> _Change:
            validate_transition(task_id, record.status, target)
            return _Change(self._moved(record, now, target, message), status_changed=True)

        return self._mutate(task_id, owner, apply, operation="update_status")

    def set_message(self, task_id: str, owner: str, message: str | None) -> TaskRecord:
        """Change only the ``statusMessage`` of a non-terminal task.

        :raises InvalidTransitionError: the task is terminal.
        :raises InvalidParamsError: ``message`` is not text or is over
            ``max_status_message_bytes``.
        """
        message = self._message(message)

        def apply(record: TaskRecord, now: int) -> _Change:
            if record.is_terminal:
                validate_transition(task_id, record.status, record.status)
            task = msgspec.structs.replace(
                record.task, status_message=message, last_updated_at=format_timestamp(now)
            )
            return _Change(msgspec.structs.replace(record, task=task))

        return self._mutate(task_id, owner, apply, operation="set_message")

    def set_variables(self, task_id: str, owner: str, variables: Mapping[str, Any]) -> TaskRecord:
        """Merge ``variables`` into the task's variables (``None`` deletes a key).

        Concurrent calls never lose an update. On any error nothing is written.

        :raises InvalidParamsError: bad names or values (NaN, too deep, string too long).
        :raises VariablesTooLargeError: the merged map would exceed the size cap.
        """
        if not isinstance(variables, Mapping):
            raise InvalidParamsError("Variables must be a JSON object")

        def apply(record: TaskRecord, now: int) -> _Change:
            return self._merged(record, now, variables)

        return self._mutate(task_id, owner, apply, operation="set_variables")

    def update_variables(
        self,
        task_id: str,
        owner: str,
        update: Callable[[TaskRecord], Mapping[str, Any] | None],
    ) -> TaskRecord:
        """Atomic read-modify-write of the variables: ``update(record)`` looks at the current
        record and returns the changes to merge (``None`` values delete keys), or ``None`` to
        write nothing.

        ``update`` runs again on every lost compare-and-set, against the fresh record, so it
        must be free of side effects. Limits as in :meth:`set_variables`.

        :raises InvalidParamsError: the changes are not valid variables.
        """

        def apply(record: TaskRecord, now: int) -> _Change | None:
            changes = update(record)
            if changes is None:
                return None
            if not isinstance(changes, Mapping):
                raise InvalidParamsError("Variables must be a JSON object")
            return self._merged(record, now, changes)

        return self._mutate(task_id, owner, apply, operation="update_variables")

    def complete(
        self,
        task_id: str,
        owner: str,
        result: Any,
        *,
        message: str | None = None,
        known: TaskRecord | None = None,
    ) -> TaskRecord:
        """Move the task to ``completed`` and store ``result`` (any JSON value, ``None``
        included) in one atomic write. The returned record carries the outcome.

        Idempotent: completing a task already completed with an equal result (the retry of a
        call whose reply was lost) writes nothing and returns the task as stored, its
        outcome included.

        :param known: a record of this task the caller already holds (the one :meth:`create`
            returned, say): the write is tried against its version first, which saves a read
            when it is current; when it is not, the store reads the task afresh, as without it.
        :raises InvalidTransitionError: the task is already terminal with another outcome
            (e.g. cancelled first, or completed with another result).
        :raises ResultTooLargeError: ``result`` exceeds the result cap.
        :raises InvalidParamsError: ``message`` is not text or is over the cap; ``known`` is
            not a record of this task.
        """
        outcome = self._checked_outcome(Outcome.of_result(result))
        return self._finish(
            task_id, owner, TaskStatus.COMPLETED, outcome, self._message(message), known
        )

    def fail(
        self,
        task_id: str,
        owner: str,
        error: Mapping[str, Any] | None = None,
        message: str | None = None,
        result: Any = None,
        *,
        known: TaskRecord | None = None,
    ) -> TaskRecord:
        """Move the task to ``failed`` with its outcome, in one atomic write.

        Idempotent like :meth:`complete`: failing a task already failed with an equal outcome
        returns it unchanged.

        :param error: a JSON-RPC error object (``{"code", "message", "data"?}``): the request
            failed with this error.
        :param result: a result to return instead (e.g. a ``CallToolResult`` with
            ``isError: true``). At most one of ``error`` and ``result``; with neither the
            outcome is a ``-32603`` error carrying ``message``.
        :param message: ``statusMessage`` (defaults to the error's message, cut to
            ``max_status_message_bytes``).
        :param known: as in :meth:`complete`.
        :raises InvalidTransitionError: the task is already terminal with another outcome.
        :raises InvalidParamsError: both ``error`` and ``result``; malformed ``error``;
            ``message`` over the cap; ``known`` is not a record of this task.
        """
        if error is not None and result is not None:
            raise InvalidParamsError("fail() takes an error or a result, not both")
        message = self._message(message)
        if result is not None:
            outcome = Outcome.of_result(result)
        elif error is not None:
            if not isinstance(error, Mapping):
                raise InvalidParamsError("error must be a JSON-RPC error object")
            outcome = Outcome.of_error(error)
        else:
            outcome = Outcome.of_error({"code": -32603, "message": message or "Task failed"})
        outcome = self._checked_outcome(outcome)
        if message is None and outcome.error is not None:
            # Derived, not given: too long a message is cut to fit rather than refused.
            message = self._message(str(outcome.error["message"]), cut=True)
        return self._finish(task_id, owner, TaskStatus.FAILED, outcome, message, known)

    def cancel(self, task_id: str, owner: str, message: str | None = None) -> TaskRecord:
        """Move the task to ``cancelled`` (it will never have an outcome).

        Idempotent: cancelling a cancelled task returns it unchanged.

        :raises InvalidTransitionError: the task is already completed or failed.
        :raises InvalidParamsError: ``message`` is not text or is over the cap.
        """
        return self._finish(task_id, owner, TaskStatus.CANCELLED, None, self._message(message))

    # -- events --------------------------------------------------------------------------

    def watch(
        self, callback: RecordCallback, *, owner: str | None = None, every_change: bool = False
    ) -> Callable[[], None]:
        """Call ``callback(record)`` after every status change (of ``owner``'s tasks only,
        when given; with ``every_change`` also after changes of a task's input requests);
        return a function that unsubscribes.

        The record is the task after the change, without its variables, request or outcome
        (events stay small; read the task for more). Changes made by other processes sharing
        the storage are delivered too where the backend carries events across processes
        (Redis). Callbacks run on the writer's or the backend's listener thread; one that raises
        is logged and never breaks the store.
        """
        return self._events.watch(callback, owner, every_change)

    def subscribe(
        self, callback: StatusCallback, *, owner: str | None = None
    ) -> Callable[[], None]:
        """Like :meth:`watch`, but ``callback`` gets the flat MCP 2025-11-25 wire dict of the
        task (``record.to_wire()``), as DESIGN §5's status events."""
        return self._events.subscribe(callback, owner)

    def unsubscribe(self, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` (every subscription of it, through :meth:`subscribe` or
        :meth:`watch`); unknown callbacks are ignored."""
        self._events.unsubscribe(callback)

    def close(self) -> None:
        """Unsubscribe everything and close the backend."""
        self._events.close()
        self.backend.close()

    # -- internals -----------------------------------------------------------------------

    def _merged(self, record: TaskRecord, now: int, changes: Mapping[str, Any]) -> _Change:
        merged = merge_variables(
            record.variables,
            changes,
            max_bytes=self.max_variable_bytes,
            max_depth=self.config.max_variable_depth,
            max_string_bytes=self.config.max_string_bytes,
        )
        task = msgspec.structs.replace(record.task, last_updated_at=format_timestamp(now))
        return _Change(msgspec.structs.replace(record, task=task, variables=merged))

    def _finish(
        self,
        task_id: str,
        owner: str,
        target: TaskStatus,
        outcome: Outcome | None,
        message: str | None,
        known: TaskRecord | None = None,
    ) -> TaskRecord:
        """Move the task to the terminal ``target`` with ``outcome`` (none for cancelled).

        A task already at ``target`` is the retry of a call whose reply was lost, or a second
        caller with the same intent: with an equal outcome it is returned as stored (nothing
        written), with another one it is an InvalidTransitionError, as any terminal task is.
        """
        repeated = False

        def apply(record: TaskRecord, now: int) -> _Change | None:
            nonlocal repeated
            repeated = record.status is target
            if repeated:
                return None
            validate_transition(task_id, record.status, target)
            moved = self._moved(
                record, now, target, message,
                outcome_kind=None if outcome is None else outcome.kind,
            )
            return _Change(moved, outcome, status_changed=True)

        if known is not None and (
            not isinstance(known, TaskRecord)
            or known.task_id != task_id
            or known.owner != owner
        ):
            raise InvalidParamsError(f"known is not a record of task {task_id}")
        record = self._mutate(
            task_id, owner, apply, known=known, operation=_FINISHES[target]
        )
        if not repeated:
            if _telemetry.active:
                _telemetry.task_ended(self.backend, target.value)
            return record
        if outcome is None:
            return record
        try:
            with self._operation():
                record, stored = self._read_outcome(self._key(task_id, owner))
        except BackendError as exc:
            exc.task_id = task_id
            raise
        # Outcomes are canonical JSON: equal values give equal bytes.
        if stored.outcome is None or stored.outcome != encode_outcome(outcome):
            raise InvalidTransitionError(task_id, target.value, target.value)
        return msgspec.structs.replace(record, outcome=outcome)


def _stored_outcome(record: TaskRecord, stored: VersionedRecord) -> Outcome:
    """The outcome of the completed or failed ``record`` read with ``stored``; a failed task
    stored without one (a stale-task recovery, an older writer) fails with ``-32603``."""
    if stored.outcome is None:
        return Outcome.of_error(
            {"code": -32603, "message": record.task.status_message or "Task failed"}
        )
    return decode_outcome(stored.outcome)
