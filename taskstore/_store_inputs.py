"""The input-request operations of :class:`~taskstore.store.TaskStore` (a mixin), over the
pure record transforms of :mod:`taskstore.input_requests`."""

from __future__ import annotations

import builtins
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from taskstore.backends.base import RecordKey, StorageBackend
from taskstore.clock import format_timestamp
from taskstore.errors import BackendError, InvalidParamsError
from taskstore.input_requests import with_answers, with_requests, without_answers
from taskstore.record import Outcome, TaskRecord

__all__ = ["OUTAGE_FIRST_PAUSE_S", "Change", "InputRequestsMixin", "pause_for_outage"]

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


class Change(NamedTuple):
    """One mutation a :class:`~taskstore.store.TaskStore` writes with compare-and-set."""

    record: TaskRecord
    outcome: Outcome | None = None
    status_changed: bool = False
    #: Publish an event even without a status change (the task's input requests changed).
    notify: bool = False


def _stamped(record: TaskRecord, now: int) -> TaskRecord:
    task = msgspec.structs.replace(record.task, last_updated_at=format_timestamp(now))
    return msgspec.structs.replace(record, task=task)


class InputRequestsMixin:
    """Requests for client input kept in the task record (DESIGN §9c)."""

    backend: StorageBackend

    def _mutate(
        self, task_id: str, owner: str, apply: Callable[[TaskRecord, int], Change | None]
    ) -> TaskRecord:
        raise NotImplementedError  # pragma: no cover - TaskStore implements it

    def _key(self, task_id: object, owner: object) -> RecordKey:
        raise NotImplementedError  # pragma: no cover - TaskStore implements it

    def _operation(self, cap: float | None = None) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError  # pragma: no cover - TaskStore implements it

    def _message(self, message: object, *, cut: bool = False) -> str | None:
        raise NotImplementedError  # pragma: no cover - TaskStore implements it

    def request_input(
        self,
        task_id: str,
        owner: str,
        requests: Sequence[Mapping[str, Any]],
        message: str | None = None,
    ) -> tuple[TaskRecord, list[str]]:
        """File requests for client input (each ``{"method", "params"}``) in the task's
        record under fresh keys; the task becomes ``input_required`` with ``message``.

        :returns: the task after the change and the requests' keys, in order.
        :raises InvalidTransitionError: the task is terminal.
        :raises InvalidParamsError: no request, or a malformed or oversized one; ``message``
            over ``max_status_message_bytes``.
        """
        message = self._message(message)
        keys: builtins.list[str] = []

        def apply(record: TaskRecord, now: int) -> Change:
            changed, new_keys, status_changed = with_requests(record, requests, message)
            keys[:] = new_keys
            return Change(_stamped(changed, now), status_changed=status_changed, notify=True)

        return self._mutate(task_id, owner, apply), keys

    def answer_input(self, task_id: str, owner: str, responses: Mapping[str, Any]) -> TaskRecord:
        """Merge client answers into the task's outstanding input requests: answered keys
        leave ``input_requests`` at once, other keys (unknown, already answered) are ignored,
        and the task is ``working`` again once nothing is outstanding. A terminal task is left
        unchanged.

        :raises InvalidParamsError: an answer that is not JSON or is oversized.
        """
        if not isinstance(responses, Mapping):
            raise InvalidParamsError("input responses must be an object")

        def apply(record: TaskRecord, now: int) -> Change | None:
            merged = with_answers(record, responses)
            if merged is None:
                return None
            changed, status_changed = merged
            return Change(_stamped(changed, now), status_changed=status_changed, notify=True)

        return self._mutate(task_id, owner, apply)

    def take_input(
        self, task_id: str, owner: str, keys: Sequence[str]
    ) -> dict[str, Any] | None:
        """Take the answers to ``keys`` out of the task's record once all have arrived.

        :returns: the answers by key, or ``None`` while one is still missing.
        """
        if not keys:
            return {}
        taken: dict[str, Any] = {}

        def apply(record: TaskRecord, now: int) -> Change | None:
            result = without_answers(record, keys)
            if result is None:
                return None
            changed, answers = result
            taken.clear()
            taken.update(answers)
            return Change(changed)

        self._mutate(task_id, owner, apply)
        return dict(taken) if len(taken) == len(set(keys)) else None

    def wait_for_change(self, task_id: str, owner: str, version: int, timeout: float) -> None:
        """Block until the task's record may have changed since ``version`` (a write with an
        event, which every status or input change carries), for at most ``timeout`` seconds.
        May return early; re-read the task after it returns.

        A storage outage does not end the wait early nor raise: the backend is asked again
        (jittered backoff) until ``timeout``; the caller's re-read then tells what it finds.

        :raises BackendError: only for a fault retrying cannot cure.
        """
        key = self._key(task_id, owner)
        deadline = time.monotonic() + max(0.0, timeout)
        pause = OUTAGE_FIRST_PAUSE_S
        while True:
            try:
                with self._operation(deadline):
                    self.backend.wait_for_change(
                        key, version, max(0.0, deadline - time.monotonic())
                    )
                return
            except BackendError as exc:
                if not exc.transient:
                    raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            pause = pause_for_outage(pause, remaining)
