"""The Redis backend's event subscription: one pub/sub connection read by a daemon thread.

Messages on the backend's channel (``P:events``, see :mod:`taskstore.backends._redis_keys`) are
``b"e<O>:<T>\n<event>"`` for a write that carries an event and ``b"w<O>:<T>\n"`` for one that
only wakes waiters (a delete); the scripts publish them in the same atomic step as the write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from taskstore.backends._subscriber import Subscriber

__all__ = ["Notifier"]

_log = logging.getLogger("taskstore.backends.redis")

# The listener thread pings a silent subscription this often and reconnects when even the ping
# goes unanswered for as long again (a peer that vanished without closing the socket).
_PING_AFTER_S = 10.0
_POLL_S = 0.1


class Notifier(Subscriber[bytes]):
    """The backend's single pub/sub subscription, read by a daemon thread started on first use
    (:class:`~taskstore.backends._subscriber.Subscriber`).

    It delivers events to listeners and wakes
    :meth:`~taskstore.backends.redis.RedisBackend.wait_for_change` callers.

    :param open_pubsub: opens a new redis-py ``PubSub`` (with subscribe messages) on each
        (re)connection.
    :param channel: the channel to subscribe to.
    """

    def __init__(self, open_pubsub: Callable[[], Any], channel: str) -> None:
        super().__init__(f"taskstore-redis-events:{channel}", _log)
        self._open_pubsub = open_pubsub
        self._channel = channel

    def _deliver(self, message: bytes) -> None:
        # b"e<O>:<T>\n<event>" carries an event; b"w<O>:<T>\n" only wakes waiters (a delete).
        head, _, event = message.partition(b"\n")
        self.waiters.wake(head[1:])
        if head[:1] == b"e":
            self.listeners.publish(event)

    def _listen(self) -> None:
        pubsub = self._open_pubsub()
        try:
            pubsub.subscribe(self._channel)
            last_seen = time.monotonic()
            pinged = False
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=_POLL_S)
                now = time.monotonic()
                if message is None:
                    silent = now - last_seen
                    if silent > 2 * _PING_AFTER_S:
                        return  # even the ping went unanswered: reconnect
                    if silent > _PING_AFTER_S and not pinged:
                        pubsub.ping()
                        pinged = True
                    continue
                last_seen, pinged = now, False
                kind = message.get("type")
                if kind == "subscribe":
                    # Confirmed on every (re)subscription, including redis-py's silent
                    # reconnects: what was published meanwhile is lost, so waiters re-read.
                    self._established()
                elif kind == "message" and isinstance(message.get("data"), bytes):
                    self._deliver(message["data"])
        finally:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; ignore
                _log.debug("closing the taskstore event subscription failed", exc_info=True)
