"""The Redis backend's event subscription: one pub/sub connection read by a daemon thread.

Messages on the backend's channel (``P:events``, see :mod:`taskstore.backends._redis_keys`) are
``b"e<O>:<T>\n<event>"`` for a write that carries an event and ``b"w<O>:<T>\n"`` for one that
only wakes waiters (a delete); the scripts publish them in the same atomic step as the write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from taskstore.backends.base import Listeners, Waiters

__all__ = ["Notifier"]

_log = logging.getLogger("taskstore.backends.redis")

# The listener thread pings a silent subscription this often and reconnects when even the ping
# goes unanswered for as long again (a peer that vanished without closing the socket).
_PING_AFTER_S = 10.0
_POLL_S = 0.1


class Notifier:
    """The backend's single pub/sub subscription, read by a daemon thread started on first use.

    It delivers events to listeners and wakes
    :meth:`~taskstore.backends.redis.RedisBackend.wait_for_change` callers. Whenever the
    subscription is (re)confirmed or lost, every waiter is woken: messages published while it
    was down are gone, and waking makes the caller re-read instead.

    :param open_pubsub: opens a new redis-py ``PubSub`` (with subscribe messages) on each
        (re)connection.
    :param channel: the channel to subscribe to.
    """

    def __init__(self, open_pubsub: Callable[[], Any], channel: str) -> None:
        self._open_pubsub = open_pubsub
        self._channel = channel
        self._lock = threading.Lock()
        #: Callers of ``wait_for_change``, by the wake name of their key.
        self.waiters: Waiters[bytes] = Waiters()
        self.listeners = Listeners()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Start the listener thread unless it runs (or :meth:`stop` was called)."""
        with self._lock:
            if self._stopping.is_set():
                return
            # Also restarts a thread that is gone: threads do not survive os.fork().
            if self._thread is None or not self._thread.is_alive():
                self._subscribed.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"taskstore-redis-events:{self._channel}", daemon=True
                )
                self._thread.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a confirmed subscription; return whether there is one."""
        return self._subscribed.wait(max(timeout_s, 0.0))

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop for good: drop listeners, end the thread (waiting up to ``timeout_s``) and
        wake every waiter."""
        self._stopping.set()
        self.listeners.clear()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self.waiters.wake_all()

    def _deliver(self, message: bytes) -> None:
        # b"e<O>:<T>\n<event>" carries an event; b"w<O>:<T>\n" only wakes waiters (a delete).
        head, _, event = message.partition(b"\n")
        self.waiters.wake(head[1:])
        if head[:1] == b"e":
            self.listeners.publish(event)

    def _run(self) -> None:
        delay = 0.05
        while not self._stopping.is_set():
            try:
                self._listen()
                delay = 0.05
            except Exception as exc:  # noqa: BLE001 - the thread outlives any failure, reconnects
                # Say it once per outage; the reconnect attempts that follow stay quiet.
                log = _log.warning if self._subscribed.is_set() else _log.debug
                log("taskstore event subscription lost, reconnecting: %r", exc)
            finally:
                self._subscribed.clear()
                self.waiters.wake_all()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, 1.0)

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
                    self._subscribed.set()
                    self.waiters.wake_all()
                elif kind == "message" and isinstance(message.get("data"), bytes):
                    self._deliver(message["data"])
        finally:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; ignore
                _log.debug("closing the taskstore event subscription failed", exc_info=True)
