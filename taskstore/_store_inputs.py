"""The input-request operations of :class:`~taskstore.store.TaskStore` (a mixin), over the
pure record transforms of :mod:`taskstore.input_requests`."""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from typing import Any

from taskstore._store_core import (
    OUTAGE_FIRST_PAUSE_S,
    Change,
    StoreCore,
    pause_for_outage,
    stamped,
)
from taskstore.errors import BackendError, InvalidParamsError
from taskstore.input_requests import with_answers, with_requests, without_answers
from taskstore.record import TaskRecord

__all__ = ["InputRequestsMixin"]


class InputRequestsMixin(StoreCore):
    """Requests for client input kept in the task record (DESIGN §9c)."""

    def _message(self, message: object, *, cut: bool = False) -> str | None:
        raise NotImplementedError  # pragma: no cover - StoreChecks implements it

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
            return Change(stamped(changed, now), status_changed=status_changed, notify=True)

        return self._mutate(task_id, owner, apply, operation="request_input"), keys

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
            return Change(stamped(changed, now), status_changed=status_changed, notify=True)

        return self._mutate(task_id, owner, apply, operation="answer_input")

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

        self._mutate(task_id, owner, apply, operation="take_input")
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
        with self._traced("wait_for_change", task_id):
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
