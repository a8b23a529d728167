"""Status-change events of a store: what a write publishes, and the subscribers it reaches.

A status change travels through the backend (to other processes too, where the backend carries
events: Redis pub/sub) as the changed record's *head*: the era-neutral record without its
variables, request or outcome, so events stay small. Subscribers get the record
(:meth:`StatusEvents.watch`) or, for DESIGN §5's ``subscribe``, its flat 2025-11-25 wire dict;
the protocol layer projects records for each client's era.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from taskstore.backends.base import StorageBackend
from taskstore.record import TaskRecord

__all__ = ["RecordCallback", "StatusCallback", "StatusEvents", "encode_event"]

_log = logging.getLogger("taskstore.store")

#: ``subscribe`` callbacks get the changed task as the flat 2025-11-25 wire dict.
StatusCallback = Callable[[dict[str, Any]], None]
#: ``watch`` callbacks get the changed task's record (without variables, request or outcome).
RecordCallback = Callable[[TaskRecord], None]


class _Event(msgspec.Struct, frozen=True):
    owner: str
    record: TaskRecord
    status_changed: bool = True


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Event)


def encode_event(record: TaskRecord, version: int, *, status_changed: bool = True) -> bytes:
    """The event bytes announcing ``record``'s change (its status, or only its input
    requests), as of backend ``version``."""
    head = msgspec.structs.replace(
        record, variables={}, request=None, outcome=None, input_answers={}, version=version
    )
    return _encoder.encode(
        _Event(owner=record.owner, record=head, status_changed=status_changed)
    )


class StatusEvents:
    """The subscribers of one store's events; listens to the backend while it has any.
    Thread-safe.

    :param backend: the backend whose write events are delivered.
    """

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend
        # (callback as registered, owner filter, every change or status only, what to call)
        self._subscribers: list[
            tuple[Callable[..., Any], str | None, bool, RecordCallback]
        ] = []
        self._lock = threading.Lock()
        self._remove_listener: Callable[[], None] | None = None

    def watch(
        self, callback: RecordCallback, owner: str | None, every_change: bool = False
    ) -> Callable[[], None]:
        """Deliver each record whose status changed (``every_change``: also those whose input
        requests changed) of ``owner``'s tasks (when given) to ``callback``; return a
        function that unsubscribes."""
        return self._add(callback, owner, every_change, callback)

    def subscribe(self, callback: StatusCallback, owner: str | None) -> Callable[[], None]:
        """Deliver each status-changed task's flat 2025-11-25 wire dict to ``callback``."""
        return self._add(callback, owner, False, lambda record: callback(record.to_wire()))

    def unsubscribe(self, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` (every subscription of it); unknown ones are ignored."""
        with self._lock:
            self._subscribers = [entry for entry in self._subscribers if entry[0] is not callback]
            if not self._subscribers:
                self._stop_listening()

    def close(self) -> None:
        """Drop every subscriber."""
        with self._lock:
            self._subscribers = []
            self._stop_listening()

    def _add(
        self,
        key: Callable[..., Any],
        owner: str | None,
        every_change: bool,
        deliver: RecordCallback,
    ) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append((key, owner, every_change, deliver))
            if self._remove_listener is None:
                self._remove_listener = self._backend.add_listener(self._dispatch)

        def unsubscribe() -> None:
            self.unsubscribe(key)

        return unsubscribe

    def _stop_listening(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    def _dispatch(self, data: bytes) -> None:
        try:
            event = _decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            _log.warning("ignoring a malformed task event")
            return
        for callback, owner, every_change, deliver in self._subscribers:
            if owner is not None and owner != event.owner:
                continue
            if not (event.status_changed or every_change):
                continue
            try:
                deliver(event.record)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not break the writer
                _log.exception("task status subscriber %r failed", callback)
