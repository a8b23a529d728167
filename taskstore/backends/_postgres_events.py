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
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from taskstore.backends._subscriber import Subscriber

__all__ = ["Notifier"]

_log = logging.getLogger("taskstore.backends.postgres")

# The listener thread checks for stop() this often, and runs a statement on a connection that
# has been silent this long, so a peer that vanished without closing the socket is noticed.
_POLL_S = 0.1
_PING_AFTER_S = 10.0


class Notifier(Subscriber[str]):
    """The backend's single LISTEN connection, read by a daemon thread started on first use
    (:class:`~taskstore.backends._subscriber.Subscriber`).

    It delivers events to listeners and wakes
    :meth:`~taskstore.backends.postgres.PostgresBackend.wait_for_change` callers.

    :param connect: opens a new connection (autocommit) for each (re)connection.
    :param channel: the channel to LISTEN on.
    :param events_sql: fetches referenced events: one ``bigint[]`` parameter, rows
        ``(id, event)``.
    """

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], channel: str, events_sql: str
    ) -> None:
        super().__init__(f"taskstore-postgres-events:{channel}", _log)
        self._connect = connect
        self._channel = channel
        self._events_sql = events_sql

    def _listen(self) -> None:
        conn = self._connect()
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            # From here on every commit that notifies reaches this connection: waiters that
            # read before now re-read.
            self._established()
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
