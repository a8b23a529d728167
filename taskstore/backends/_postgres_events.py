"""The PostgreSQL backend's event subscription: one dedicated connection that LISTENs on the
store's channel, read by a daemon thread.

Payloads (sent by the mutation functions, see :mod:`~taskstore.backends._postgres_schema`) are
``"<wake> e <base64 event>"`` for a write with a small event, ``"<wake> r <id>"`` for one whose
event waits in the events table, and ``"<wake> w"`` for a delete (it only wakes waiters).
NOTIFY is delivered once the writing transaction commits, so a referenced event row is always
there to fetch; the thread fetches each batch's in one query on its own connection.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from taskstore.backends.base import Listeners, Waiters

__all__ = ["Notifier"]

_log = logging.getLogger("taskstore.backends.postgres")

# The listener thread checks for stop() this often, and runs a statement on a connection that
# has been silent this long, so a peer that vanished without closing the socket is noticed.
_POLL_S = 0.1
_PING_AFTER_S = 10.0


class Notifier:
    """The backend's single LISTEN connection, read by a daemon thread started on first use.

    It delivers events to listeners and wakes
    :meth:`~taskstore.backends.postgres.PostgresBackend.wait_for_change` callers. Whenever the
    subscription is (re)established or lost, every waiter is woken: notifications sent while
    it was down are gone, and waking makes the caller re-read instead.

    :param connect: opens a new connection (autocommit) for each (re)connection.
    :param channel: the channel to LISTEN on.
    :param events_sql: fetches referenced events: one ``bigint[]`` parameter, rows
        ``(id, event)``.
    """

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], channel: str, events_sql: str
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._events_sql = events_sql
        self._lock = threading.Lock()
        #: Callers of ``wait_for_change``, by the wake name of their key.
        self.waiters: Waiters[str] = Waiters()
        self.listeners = Listeners()
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Start the listener thread unless it runs (or :meth:`stop` was called)."""
        with self._lock:
            if self._stopping.is_set():
                return
            # Also restarts a thread that is gone: threads do not survive os.fork().
            if self._thread is None or not self._thread.is_alive():
                self._listening.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"taskstore-postgres-events:{self._channel}", daemon=True
                )
                self._thread.start()

    def wait_listening(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for an established LISTEN; return whether there is one."""
        return self._listening.wait(max(timeout_s, 0.0))

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

    def _run(self) -> None:
        delay = 0.05
        while not self._stopping.is_set():
            try:
                self._listen()
                delay = 0.05
            except Exception as exc:  # noqa: BLE001 - the thread outlives any failure, reconnects
                # Say it once per outage; the reconnect attempts that follow stay quiet.
                log = _log.warning if self._listening.is_set() else _log.debug
                log("taskstore event subscription lost, reconnecting: %r", exc)
            finally:
                self._listening.clear()
                self.waiters.wake_all()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, 1.0)

    def _listen(self) -> None:
        conn = self._connect()
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            # From here on every commit that notifies reaches this connection: waiters that
            # read before now re-read.
            self._listening.set()
            self.waiters.wake_all()
            last_seen = time.monotonic()
            while not self._stopping.is_set():
                batch = list(conn.notifies(timeout=_POLL_S, stop_after=1))
                now = time.monotonic()
                if batch:
                    last_seen = now
                    self._deliver(conn, [notify.payload for notify in batch])
                elif now - last_seen > _PING_AFTER_S:
                    conn.execute("SELECT 1")  # fails (timeout, reset) on a dead connection
                    last_seen = now
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; ignore
                _log.debug("closing the taskstore event connection failed", exc_info=True)

    def _deliver(self, conn: psycopg.Connection[Any], payloads: list[str]) -> None:
        parsed: list[tuple[str, str, str]] = []
        references: list[int] = []
        for payload in payloads:
            wake, _, rest = payload.partition(" ")
            kind, _, body = rest.partition(" ")
            if kind == "r" and body.isdigit():
                references.append(int(body))
            parsed.append((wake, kind, body))
        self.waiters.wake(*(wake for wake, _, _ in parsed))
        fetched: dict[int, bytes] = {}
        if references:
            try:
                rows = conn.execute(self._events_sql, [references], binary=True).fetchall()
            except psycopg.Error:
                if conn.broken or conn.closed:
                    raise  # the connection is gone: reconnect (waiters were woken above)
                # The statement failed on a live connection (a privilege, say): these events
                # are lost, the subscription goes on.
                _log.warning("fetching taskstore events failed", exc_info=True)
                rows = []
            fetched = {int(row[0]): bytes(row[1]) for row in rows}
        for _, kind, body in parsed:
            event: bytes | None = None
            if kind == "e":
                try:
                    event = base64.b64decode(body)
                except (binascii.Error, ValueError):
                    _log.warning("malformed taskstore event notification dropped")
            elif kind == "r":
                event = fetched.get(int(body)) if body.isdigit() else None
                if event is None:
                    _log.warning("taskstore event %s could not be read (pruned?)", body)
            if event is not None:
                self.listeners.publish(event)
