"""``notifications/tasks/status``: every status change of an owner's tasks, as a JSON-RPC
notification handed to a pluggable :class:`NotificationSender`.

Built on :meth:`taskstore.TaskStore.subscribe`, so changes made by other processes sharing a
Redis store are delivered too. Params are the Task fields, flat, without related-task
``_meta`` (spec: the task id is already there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from taskstore.mcp.jsonrpc import JsonDict, notification
from taskstore.store import TaskStore
from taskstore.types import META_RELATED_TASK

__all__ = ["STATUS_METHOD", "NotificationSender", "StatusNotifier", "status_notification"]

_log = logging.getLogger("taskstore.mcp")

STATUS_METHOD = "notifications/tasks/status"


@runtime_checkable
class NotificationSender(Protocol):
    """Where server → client messages go (a session's SSE stream, a stdio writer, a test list).

    ``send`` is called from store and worker threads; it must be thread-safe and quick, and
    should not raise (a raising sender is logged and skipped).
    """

    def send(self, message: JsonDict) -> None:
        """Deliver one JSON-RPC message (best effort)."""
        ...


def status_notification(task: Mapping[str, Any]) -> JsonDict:
    """The ``notifications/tasks/status`` message for a task's flat wire dict."""
    params = dict(task)
    meta = params.get("_meta")
    if isinstance(meta, Mapping) and META_RELATED_TASK in meta:
        rest = {k: v for k, v in meta.items() if k != META_RELATED_TASK}
        if rest:
            params["_meta"] = rest
        else:
            del params["_meta"]
    return notification(STATUS_METHOD, params)


class StatusNotifier:
    """Subscribes senders to the status changes of one owner's tasks.

    :param store: the store whose changes are watched.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def attach(self, owner: str, sender: NotificationSender) -> Callable[[], None]:
        """Send a notification to ``sender`` for every status change of ``owner``'s tasks
        until the returned function is called."""

        def on_change(task: dict[str, Any]) -> None:
            try:
                sender.send(status_notification(task))
            except Exception:  # noqa: BLE001 - a broken sender must not break the writer
                _log.warning("a notification sender failed", exc_info=True)

        return self.store.subscribe(on_change, owner=owner)
