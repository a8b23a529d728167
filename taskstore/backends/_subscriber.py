"""``Subscriber``: a backend's one event subscription, read by a daemon thread that outlives
every failure (Redis pub/sub, PostgreSQL ``LISTEN``).

What the backends share: the thread is started on first use (and again after a fork, which
threads do not survive), reconnects with backoff from 50 ms to 1 s, logs an outage once, and
wakes every ``wait_for_change`` caller whenever the subscription is (re)established or lost:
what was published while it was down is gone, and waking makes the callers re-read instead.
What differs, the connection and its messages, is a subclass's :meth:`Subscriber._listen`.
"""

from __future__ import annotations

import abc
import logging
import threading
from typing import Generic, TypeVar

from taskstore.backends.base import Listeners, Waiters

__all__ = ["Subscriber"]

_K = TypeVar("_K")
#: Reconnection backoff: the first pause and the longest.
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0


class Subscriber(abc.ABC, Generic[_K]):
    """The subscription's thread, its listeners and its waiters (keyed by ``_K``).

    A subclass implements :meth:`_listen`: connect, subscribe, call :meth:`_established` once
    the subscription is confirmed (again after every silent re-subscription), deliver messages
    until :attr:`_stopping` is set, and raise (or return) when the connection is lost.

    :param thread_name: the listener thread's name.
    :param log: where outages are logged (the backend's logger).
    """

    def __init__(self, thread_name: str, log: logging.Logger) -> None:
        self._thread_name = thread_name
        self._log = log
        self._lock = threading.Lock()
        #: Callers of ``wait_for_change``, by the wake name of their key.
        self.waiters: Waiters[_K] = Waiters()
        self.listeners = Listeners()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Start the listener thread unless it runs (or :meth:`stop` was called)."""
        with self._lock:
            if self._stopping.is_set():
                return
            # Also restarts a thread that is gone: threads do not survive os.fork().
            if self._thread is None or not self._thread.is_alive():
                self._ready.clear()
                self._thread = threading.Thread(
                    target=self._run, name=self._thread_name, daemon=True
                )
                self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for an established subscription; return whether there is
        one."""
        return self._ready.wait(max(timeout_s, 0.0))

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

    def _established(self) -> None:
        """The subscription is (re)confirmed: from here on every event reaches it, so waiters
        that read before now re-read."""
        self._ready.set()
        self.waiters.wake_all()

    @abc.abstractmethod
    def _listen(self) -> None:
        """One connection's life: subscribe, deliver, return or raise when it is lost."""

    def _run(self) -> None:
        delay = _FIRST_DELAY_S
        while not self._stopping.is_set():
            try:
                self._listen()
                delay = _FIRST_DELAY_S
            except Exception as exc:  # noqa: BLE001 - the thread outlives any failure, reconnects
                # Say it once per outage; the reconnect attempts that follow stay quiet.
                log = self._log.warning if self._ready.is_set() else self._log.debug
                log("taskstore event subscription lost, reconnecting: %r", exc)
            finally:
                self._ready.clear()
                self.waiters.wake_all()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, _MAX_DELAY_S)
