"""Events and waits of the SQLite backend: prompt in this object, polled across objects.

A write that carries an ``event`` inserts a row into the store's events table in the same
transaction (so the event exists exactly when the write does), tagged with the writing
backend object's random *origin*. Then:

- the writer itself, once committed, hands the event to its own listeners and wakes its own
  waiters on the key (:meth:`Changes.written`: no polling delay within one object);
- every backend object with listeners or waiters runs one :class:`Poller` thread that reads
  the rows above the last id it saw, every ``poll_interval_s``, and delivers those of *other*
  origins (other processes, or other objects on the same file in this process). The origin
  filter is what makes delivery exactly-once per listener: a row is delivered either by its
  writer or by a poller, never both.

Ids come from ``AUTOINCREMENT`` and are handed out under the file's write lock, so rows commit
in id order and none can appear below the last id seen: polling "above the last id" misses
nothing. Rows are pruned once older than a minute (a few oldest rows at a time, every 32nd
insert), long after every live poller has read them.

A process forked from one whose object had its poller running does not inherit the thread:
the child's next :meth:`~taskstore.backends.sqlite.SqliteBackend.add_listener` or
``wait_for_change`` starts its own (and the child's writes carry an origin of their own).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time

from taskstore.backends._sqlite_db import Database
from taskstore.backends._sqlite_schema import TableNames
from taskstore.backends.base import (
    Listeners,
    RecordKey,
    Waiters,
    key_bytes,
    key_str,
    retrying_until,
)
from taskstore.errors import BackendError, ConfigurationError

__all__ = ["Changes", "Origin", "Poller", "record_event"]

_log = logging.getLogger("taskstore.backends.sqlite")

# Rows older than this (wall clock) are pruned: far longer than any poll interval, so only a
# poller stalled for a minute can miss an event (its waiters still re-read on their timeout).
_KEEP_EVENTS_MS = 60_000
# Every _PRUNE_EVERY-th event id prunes up to _PRUNE_BATCH of the oldest rows: twice the
# insert rate, so the table stays about one minute of events, at a bounded cost per insert.
_PRUNE_EVERY = 32
_PRUNE_BATCH = 64
_ORIGIN_MULTIPLIER = 0x9E3779B97F4A7C15
_ORIGIN_MASK = 2**62 - 1
# Rows one poll reads at most per statement (it reads on while pages come back full).
_POLL_PAGE = 256


def record_event(
    conn: sqlite3.Connection, names: TableNames, origin: int, key: RecordKey, event: bytes
) -> None:
    """Insert the row of ``event`` (inside the caller's write transaction) and, now and then,
    prune old rows."""
    now = time.time_ns() // 1_000_000
    cursor = conn.execute(
        f"INSERT INTO {names.events} (origin, owner, task_id, event, created_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        (origin, key_bytes(key[0]), key_bytes(key[1]), event, now),
    )
    if cursor.lastrowid is not None and cursor.lastrowid % _PRUNE_EVERY == 0:
        # Only the oldest rows are looked at (a rowid range from the start): bounded work
        # whether or not any of them is old enough.
        conn.execute(
            f"DELETE FROM {names.events} WHERE id IN "
            f"(SELECT id FROM {names.events} ORDER BY id LIMIT {_PRUNE_BATCH}) "
            "AND created_ms < ?",
            (now - _KEEP_EVENTS_MS,),
        )


class Origin:
    """The tag of one backend object's event rows, different in every process using the
    object: a child forked from the process that made it is another writer, whose events the
    parent's poller must deliver (and the other way round).

    Derived from the process id rather than drawn again after a fork, so concurrent first
    uses in a child agree without a lock (a lock may be held by a parent thread at the fork).
    """

    def __init__(self) -> None:
        self._base = secrets.randbits(62)

    @property
    def value(self) -> int:
        """This process's tag: an odd multiplier is a bijection modulo 2**62, so two
        processes never share one."""
        return (self._base + os.getpid() * _ORIGIN_MULTIPLIER) & _ORIGIN_MASK


class Changes:
    """The listeners of one backend object and its waiters, per key. Thread-safe."""

    def __init__(self) -> None:
        self.listeners = Listeners()
        #: Callers of ``wait_for_change`` of this object, by key.
        self.waiters: Waiters[RecordKey] = Waiters()

    def written(self, key: RecordKey, event: bytes | None) -> None:
        """A write (or delete) of ``key`` committed: wake its waiters, deliver ``event``."""
        self.waiters.wake(key)
        if event is not None:
            self.listeners.publish(event)

    def close(self) -> None:
        """Drop every listener and wake every waiter for good."""
        self.listeners.clear()
        self.waiters.close()


class Poller:
    """The thread delivering the events other backend objects wrote (see the module
    docstring). Started by :meth:`ensure_started`, stopped by :meth:`stop`."""

    def __init__(
        self, db: Database, names: TableNames, origin: Origin, changes: Changes, interval_s: float
    ) -> None:
        self._db = db
        self._names = names
        self._origin = origin
        self._changes = changes
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_id = 0
        self._failing = False
        self._pid = os.getpid()

    def ensure_started(self, operation: str) -> None:
        """Start the thread unless it runs. Returns once the starting position is read, so
        every event committed after this returns is delivered.

        :param operation: the call starting it (named by errors).
        :raises BackendError: reading the starting position failed.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        if os.getpid() != self._pid:
            # A forked child: the parent's thread (and maybe a lock it held) did not come along.
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._thread = None
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            rows = self._db.read(
                operation,
                lambda conn: conn.execute(
                    f"SELECT coalesce(max(id), 0) FROM {self._names.events}"
                ).fetchall(),
            )
            self._last_id = int(rows[0][0])
            thread = threading.Thread(
                target=self._run, name=f"taskstore-sqlite-events-{self._names.table}", daemon=True
            )
            thread.start()
            self._thread = thread

    def stop(self) -> None:
        """Stop the thread and wait for it (unless called from it, by a listener)."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                # One attempt per poll: the next poll is the retry, and stop() never waits
                # for a retry deadline.
                with retrying_until(time.monotonic()):
                    self._poll()
            except ConfigurationError:
                return  # closed
            except BackendError as exc:
                # Logged once per outage, not every interval.
                if not self._failing:
                    _log.warning("taskstore SQLite event poll failed (retrying): %s", exc)
                self._failing = True
            else:
                self._failing = False

    def _poll(self) -> None:
        while True:
            rows = self._db.read(
                "event poll",
                lambda conn: conn.execute(
                    f"SELECT id, origin, owner, task_id, event FROM {self._names.events} "
                    f"WHERE id > ? ORDER BY id LIMIT {_POLL_PAGE}",
                    (self._last_id,),
                ).fetchall(),
            )
            mine = self._origin.value
            for row_id, origin, owner, task_id, event in rows:
                self._last_id = row_id
                if origin != mine and not self._stopping.is_set():
                    self._changes.written((key_str(owner), key_str(task_id)), bytes(event))
            if len(rows) < _POLL_PAGE:
                return
