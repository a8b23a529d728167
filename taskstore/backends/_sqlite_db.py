"""The SQLite backend's connections, transactions, retries and its one mapping of driver errors.

Every call the backend makes goes through :meth:`Database.read` or :meth:`Database.write`:

- Each thread has its own connection (``sqlite3`` connections must not be shared by threads
  running statements at once), opened on first use in autocommit mode (``isolation_level=None``):
  a read is one statement and its own snapshot, a write is an explicit ``BEGIN IMMEDIATE`` …
  ``COMMIT``. Connections are tracked so :meth:`Database.close` closes every one, and those of
  threads that ended are closed when the next thread opens one. A process forked after
  connections were opened never touches them (SQLite forbids it): it opens its own.
- ``SQLITE_BUSY`` ("database is locked"), ``SQLITE_LOCKED`` and ``SQLITE_PROTOCOL`` are
  transient: another writer held the lock for longer than the busy timeout (SQLite's own busy
  handler has already waited that long inside the attempt). The attempt is re-made, after a
  jittered backoff of 5 ms doubling up to 250 ms, until the call's retry deadline
  (:func:`~taskstore.backends.base.retry_deadline`); a deadline shorter than the busy timeout
  still lets the one attempt wait the whole busy timeout.
- A failed write attempt is rolled back before anything else, so a retry never applies it
  twice and the error says ``applied=False``. The one exception is a ``COMMIT`` failing with
  an I/O-level error (not ``SQLITE_BUSY``, after which the transaction is still open and is
  rolled back): SQLite may have made it durable after all, so ``applied=None``.
- Whatever is left becomes one :class:`~taskstore.errors.BackendError`, the driver's
  exception chained; a call on a closed backend raises ``ConfigurationError``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

from taskstore.backends.base import note_retry, retry_deadline
from taskstore.errors import BackendError, ConfigurationError

__all__ = ["DRIVER_ERRORS", "Database", "backend_error", "is_transient"]

T = TypeVar("T")

#: What the driver raises: its own errors, and OverflowError for an integer no SQLite
#: INTEGER holds.
DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OverflowError)

# Primary result codes that time cures: another connection holds the lock (BUSY), a shared-cache
# table lock (LOCKED), a WAL-index race between processes that SQLite itself retries a while
# before giving up (PROTOCOL).
_TRANSIENT_CODES = frozenset({5, 6, 15})
_SQLITE_BUSY = 5
_FIRST_BACKOFF_S = 0.005
# Connections a forked child inherited (see Database._forked).
_ABANDONED: list[sqlite3.Connection] = []
_MAX_BACKOFF_S = 0.25


def _primary_code(exc: BaseException) -> int | None:
    # sqlite_errorcode exists from Python 3.11 on; it holds the extended code.
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock held too long by another connection (retrying may help)."""
    code = _primary_code(exc)
    if code is not None:
        return code in _TRANSIENT_CODES
    # Python 3.10 carries no result code: SQLite's messages for BUSY and LOCKED say "locked".
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _is_busy(exc: BaseException) -> bool:
    code = _primary_code(exc)
    if code is not None:
        return code == _SQLITE_BUSY
    return isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc)


def backend_error(
    operation: str, exc: BaseException, *, applied: bool | None, transient: bool
) -> BackendError:
    """The :class:`BackendError` for a driver exception raised by ``operation`` (the caller
    chains ``exc``)."""
    when = " (retried until the deadline)" if transient else ""
    return BackendError(
        f"SQLite {operation} failed{when}: {type(exc).__name__}: {exc}",
        applied=applied,
        transient=transient,
    )


class _Backoff:
    """Equal-jitter exponential pauses between attempts, never past the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.delay = _FIRST_BACKOFF_S

    def pause(self) -> bool:
        """Sleep before the next attempt; ``False`` (without sleeping) once the deadline
        passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(remaining, self.delay / 2 + random.uniform(0, self.delay / 2)))
        self.delay = min(self.delay * 2, _MAX_BACKOFF_S)
        return True


class Database:
    """Per-thread connections to one SQLite file, and the retry loops around them.
    Thread-safe.

    :param path: the database file.
    :param busy_timeout_ms: how long SQLite's busy handler waits for a lock in one attempt.
    :param name: how errors about a closed backend name it.
    """

    def __init__(self, path: str, busy_timeout_ms: int, name: str) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._name = name
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every open connection, with the thread it belongs to (weakly: a thread that ended
        # leaves its connection to be closed by the next opener, or by close()).
        self._connections: dict[int, tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = {}
        # Connections a thread is running statements on (by id): close() must not close
        # them under their thread (sqlite3 would crash the process); their thread does, when
        # it is done with them.
        self._busy: set[int] = set()
        self._pid = os.getpid()
        self._trace: Callable[[str], None] | None = None
        self.closed = False

    # -- connections -----------------------------------------------------------------------

    def check_open(self) -> None:
        """:raises ConfigurationError: :meth:`close` was called."""
        if self.closed:
            raise ConfigurationError(f"this {self._name} is closed")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use.

        :raises sqlite3.Error: the file cannot be opened.
        """
        if os.getpid() != self._pid:
            self._forked()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        self.check_open()
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            # Autocommit: transactions are only the BEGIN IMMEDIATE ... COMMIT we issue, never
            # the implicit ones the legacy mode opens before DML.
            isolation_level=None,
            # Checked by us instead: a connection serves only its thread, but close() and the
            # reaping of ended threads' connections run on other threads.
            check_same_thread=False,
        )
        with self._lock:
            if self.closed:
                conn.close()
                self.check_open()
            for key, (thread, other) in list(self._connections.items()):
                owner = thread()
                if owner is None or not owner.is_alive():
                    other.close()
                    del self._connections[key]
            self._connections[id(conn)] = (weakref.ref(threading.current_thread()), conn)
            if self._trace is not None:
                conn.set_trace_callback(self._trace)
        self._local.conn = conn
        return conn

    def _forked(self) -> None:
        """In a child process forked from the one that opened the connections: forget them.

        SQLite forbids using, or even closing, a connection inherited across ``fork()`` (its
        POSIX locks belong to the parent: the child could corrupt the file), and the thread
        that forked keeps its thread-local connection in the child. They are abandoned; the
        child's threads open their own. The lock is replaced, not taken: another thread of
        the parent may have held it at the fork, and it would never be released here.
        """
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        # Kept referenced for the life of the process: a connection object that is garbage
        # collected closes its handle, and even that must not happen to an inherited one.
        _ABANDONED.extend(conn for _, conn in self._connections.values())
        self._connections = {}

    def set_trace(self, callback: Callable[[str], None] | None) -> None:
        """Install ``callback`` as the statement trace of every connection, present and
        future (tests count statements with it)."""
        if os.getpid() != self._pid:
            self._forked()
        with self._lock:
            self._trace = callback
            for _, conn in self._connections.values():
                conn.set_trace_callback(callback)

    def close(self) -> None:
        """Close every connection; later calls raise ``ConfigurationError``. Idempotent."""
        if os.getpid() != self._pid:
            self._forked()  # a child closes only its own connections
        with self._lock:
            self.closed = True
            connections = [
                conn for key, (_, conn) in self._connections.items() if key not in self._busy
            ]
            for conn in connections:
                del self._connections[id(conn)]
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass  # closing is best effort: the file stays consistent either way

    # -- calls -----------------------------------------------------------------------------

    def _failed(
        self, operation: str, exc: BaseException, backoff: _Backoff, *, applied: bool | None
    ) -> None:
        """Return when the attempt that raised ``exc`` should be made again (after a pause);
        raise its error otherwise."""
        if self.closed:
            raise ConfigurationError(f"this {self._name} is closed") from exc
        transient = applied is False and is_transient(exc)
        if transient and backoff.pause():
            note_retry("sqlite", operation)
            return
        raise backend_error(operation, exc, applied=applied, transient=transient) from exc

    def _enter(self) -> sqlite3.Connection:
        """This thread's connection, marked in use until :meth:`_leave`.

        :raises ConfigurationError: :meth:`close` was called.
        """
        conn = self.connection()
        with self._lock:
            self.check_open()
            self._busy.add(id(conn))
        return conn

    def _leave(self, conn: sqlite3.Connection) -> None:
        """``conn`` is no longer in use; close it if :meth:`close` left it to this thread."""
        with self._lock:
            self._busy.discard(id(conn))
            orphaned = self.closed and self._connections.pop(id(conn), None) is not None
        if orphaned:
            try:
                conn.close()
            except sqlite3.Error:
                pass  # best effort, as in close()

    def read(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` (statements in autocommit, no transaction) on this thread's
        connection, retrying transient faults until the retry deadline.

        Exceptions ``work`` raises that are not the driver's pass through untouched.

        :raises BackendError: a permanent fault, or transient ones until the deadline.
        """
        self.check_open()
        deadline = retry_deadline()
        backoff: _Backoff | None = None  # made on the first failure: reads are the hot path
        while True:
            try:
                conn = self._enter()
                try:
                    return work(conn)
                finally:
                    self._leave(conn)
            except DRIVER_ERRORS as exc:
                backoff = backoff or _Backoff(deadline)
                self._failed(operation, exc, backoff, applied=False)

    def write(self, operation: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction and commit it, retrying
        transient faults until the retry deadline.

        ``BEGIN IMMEDIATE`` takes the file's write lock before the first read, so what
        ``body`` reads cannot change before it commits, in any process. Any exception rolls
        the transaction back; those ``body`` raises that are not the driver's (contract
        errors) pass through untouched.

        :raises BackendError: a permanent fault, or transient ones until the deadline
            (``applied=False`` unless ``COMMIT`` itself failed at the I/O level).
        """
        self.check_open()
        backoff = _Backoff(retry_deadline())
        while True:
            committing = False
            try:
                conn = self._enter()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = body(conn)
                        committing = True
                        conn.execute("COMMIT")
                    except BaseException:
                        self._rollback(conn)
                        raise
                    return result
                finally:
                    self._leave(conn)
            except DRIVER_ERRORS as exc:
                # A COMMIT refused for a lock leaves the transaction open (rolled back above):
                # nothing was applied. Any other COMMIT failure may have reached the disk.
                unknown = committing and not _is_busy(exc)
                self._failed(operation, exc, backoff, applied=None if unknown else False)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        # SQLite rolls back by itself after some errors (I/O, full disk): only roll back what
        # is still open, and never let a failed rollback hide the original error.
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except DRIVER_ERRORS:
            # A connection stuck in a transaction would fail every later call of this
            # thread: drop it, the next call opens a fresh one.
            self._discard(conn)

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._connections.pop(id(conn), None)
        if getattr(self._local, "conn", None) is conn:
            del self._local.conn
        try:
            conn.close()
        except DRIVER_ERRORS:
            pass
