"""Status notifications: every status change of an owner's tasks, projected for the
subscriber's era and handed to a pluggable :class:`NotificationSender`.

Built on :meth:`taskstore.TaskStore.watch`, so changes made by other processes sharing a Redis
store are delivered too. The store's events carry records; the era's projection decides what
the notification looks like (2025-11-25: ``notifications/tasks/status`` with the Task fields
flat, without related-task ``_meta``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from taskstore.aliases import JsonDict
from taskstore.mcp.projections import LEGACY, Projection
from taskstore.mcp.projections.legacy import STATUS_METHOD, status_notification
from taskstore.record import TaskRecord
from taskstore.store import TaskStore

__all__ = ["STATUS_METHOD", "NotificationSender", "StatusNotifier", "status_notification"]

_log = logging.getLogger("taskstore.mcp")


@runtime_checkable
class NotificationSender(Protocol):
    """Where server → client messages go (a session's SSE stream, a stdio writer, a test list).

    ``send`` is called from store and worker threads; it must be thread-safe and quick, and
    should not raise (a raising sender is logged and skipped).
    """

    def send(self, message: JsonDict) -> None:
        """Deliver one JSON-RPC message (best effort)."""
        ...


class StatusNotifier:
    """Subscribes senders to the status changes of one owner's tasks.

    :param store: the store whose changes are watched.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def attach(
        self, owner: str, sender: NotificationSender, projection: Projection = LEGACY
    ) -> Callable[[], None]:
        """Send ``projection``'s notification to ``sender`` for every status change of
        ``owner``'s tasks until the returned function is called.

        :param projection: the era of the subscriber (its session).
        """

        def on_change(record: TaskRecord) -> None:
            message = projection.status_notification(record)
            if message is None:
                return
            try:
                sender.send(message)
            except Exception:  # noqa: BLE001 - a broken sender must not break the writer
                _log.warning("a notification sender failed", exc_info=True)

        return self.store.watch(on_change, owner=owner)
