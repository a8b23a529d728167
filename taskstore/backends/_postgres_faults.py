"""The PostgreSQL backend's connections, its one mapping of driver errors, and its retries of
transient faults.

Every call the backend makes goes through :meth:`Retrier.call`, which takes a connection from
the ``psycopg_pool.ConnectionPool``, runs one statement on it and gives it back:

- A *transient* fault (a connection refused, reset or timed out, the server shutting down or
  starting up, too many connections, a serialization failure or deadlock, no pooled
  connection in time) is retried with jittered exponential backoff (10 ms up to 250 ms) until
  the call's retry deadline (:func:`~taskstore.backends.base.retry_deadline`). A replayed
  mutation is harmless: it carries the write token of the first attempt, and the function it
  calls answers with that attempt's result when it finds its own write (see
  :mod:`~taskstore.backends._postgres_schema`).
- Anything else (authentication, a missing table, a syntax or privilege error) is raised at
  once. Either way the caller gets one :class:`~taskstore.errors.BackendError`, the driver's
  exception chained, with ``transient`` and ``applied`` set.

``applied`` is ``False`` unless an attempt of a mutation may have run: a connection that could
not be had, or an ordinary error the server answered with (an autocommit statement that fails
is rolled back whole), applied nothing. An attempt whose statement went out on a live
connection and whose answer never came (the connection died, or the statement timeout passed),
or came as a FATAL error (a shutdown may end the session after the commit), may have; the call
then reports ``None``.

Connections are checked before use without a round trip: an idle connection with bytes to
read (the server's "terminating connection" message, or EOF after a restart or a reset) is
dead and replaced, so the first call after the server comes back does not spend an attempt on
it, nor report a refused write as possibly applied. The pool reconnects in its own threads;
this module's connection class retries a refused connection there every 250 ms at most (the
pool's own backoff would wait up to minutes), so calls find the server again as soon as it is
back.
"""

from __future__ import annotations

import logging
import random
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

from taskstore.backends.base import note_retry, retry_deadline
from taskstore.errors import BackendError

__all__ = [
    "DRIVER_ERRORS",
    "ConnectErrors",
    "Retrier",
    "backend_error",
    "connection_classes",
    "healthy",
    "is_transient",
]

T = TypeVar("T")

_log = logging.getLogger("taskstore.backends.postgres")

#: What the driver (and the pool) raise; OSError covers anything the socket layer lets through.
DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, OSError)

# SQLSTATEs that time cures: the server is going down, coming up or out of connections, or the
# statement lost a race that a new attempt will not lose (its transaction was rolled back).
_TRANSIENT_STATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: a standby after a failover; retry elsewhere
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "55P03",  # lock_not_available
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "57P05",  # idle_session_timeout
        "58000",  # system_error (e.g. the server could not fork)
    }
)
# Class 08 is "connection exception" (refused, failure, protocol violation).
_TRANSIENT_CLASSES = ("08",)
# Pauses between attempts: jittered, doubling from the first to the last.
_FIRST_DELAY_S = 0.01
_MAX_DELAY_S = 0.25
# A connection attempt the pool's threads make: the longest pause between two.
_RECONNECT_DELAY_S = 0.25
# How long a call waits for a pooled connection at a time before it looks at why there is
# none (a permanent connection error is raised then, not at the deadline).
_ACQUIRE_SLICE_S = 0.25
# A call whose deadline has already passed still makes one attempt: this long for a connection.
_LAST_CHANCE_S = 0.5

_WaitTimeout: type[BaseException] | None = getattr(psycopg.errors, "_WaitTimeout", None)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault that retrying later may cure."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:
            # No SQLSTATE: the client side failed (connection lost, refused or timed out), or
            # the driver was misused (InterfaceError), which no retry cures.
            return isinstance(exc, psycopg.OperationalError)
        return state in _TRANSIENT_STATES or state.startswith(_TRANSIENT_CLASSES)
    return isinstance(exc, OSError)


def _answered(exc: BaseException) -> bool:
    """Whether the server answered the statement with ``exc``, an ordinary error, so its
    autocommit transaction was rolled back. A FATAL one (the session ends: a shutdown, a
    crash) may come after the commit, while the reply was being sent, so it proves nothing."""
    if not isinstance(exc, psycopg.Error) or exc.sqlstate is None:
        return False
    severity = exc.diag.severity_nonlocalized or exc.diag.severity
    return severity not in ("FATAL", "PANIC")


def backend_error(
    operation: str, exc: BaseException, *, applied: bool | None, transient: bool
) -> BackendError:
    """The :class:`BackendError` for a driver exception raised by ``operation`` (the caller
    chains ``exc``). libpq's messages name the host and port, never the password."""
    when = " (retried until the deadline)" if transient else ""
    detail = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return BackendError(
        f"PostgreSQL {operation} failed{when}: {type(exc).__name__}: {detail}",
        applied=applied,
        transient=transient,
    )


class ConnectErrors:
    """The last error the pool's threads met connecting (``None`` after a success): why a
    call finds no connection. Thread-safe by assignment."""

    def __init__(self) -> None:
        self.last: BaseException | None = None


def healthy(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle pooled connection is usable, judged without a round trip: open, idle,
    and nothing to read. A server that ended the session (shutdown, restart, idle timeout,
    a reset connection) leaves a message or EOF behind."""
    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        fd = pgconn.socket
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            return not poller.poll(0)
        readable, _, _ = select.select([fd], [], [], 0)
        return not readable
    except (OSError, ValueError, psycopg.Error):
        return False


def connection_classes(
    io_timeout: float, stopping: threading.Event, errors: ConnectErrors
) -> tuple[type[psycopg.Connection[Any]], type[psycopg.Connection[Any]]]:
    """The backend's two connection classes: one whose statements give up after
    ``io_timeout`` seconds without an answer (for the event listener), and one that also
    retries refused connections itself (for the pool, until ``stopping`` is set), recording
    each failure in ``errors``."""

    class _Connection(psycopg.Connection[Any]):
        """A connection whose statements time out: a stalled server or network makes the
        attempt fail (and be retried) instead of hanging the caller."""

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            if timeout is not None or _WaitTimeout is None:
                return super().wait(gen, interval, timeout)
            try:
                return super().wait(gen, interval, io_timeout)
            except _WaitTimeout as exc:
                # Mid-statement the connection's state is unknown: it is closed, and the pool
                # replaces it.
                self.close()
                raise psycopg.OperationalError(
                    f"no answer from the server within {io_timeout:g} s"
                ) from exc

    class _PoolConnection(_Connection):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            # Runs in the pool's threads. A transient failure is retried here, every 250 ms at
            # most, instead of by the pool (whose backoff grows to minutes), so a server that
            # is back is found at once; a permanent one (authentication, a missing database)
            # is raised to the pool, and a call waiting for a connection reports it.
            delay = _FIRST_DELAY_S
            while True:
                try:
                    conn = super().connect(conninfo, **kwargs)
                except DRIVER_ERRORS as exc:
                    errors.last = exc
                    if not is_transient(exc) or stopping.wait(delay * random.uniform(0.5, 1.5)):
                        raise
                    delay = min(delay * 2, _RECONNECT_DELAY_S)
                    continue
                errors.last = None
                return conn

    return _Connection, _PoolConnection


class Retrier:
    """Runs the backend's statements on pooled connections (thread-safe).

    :param pool: the backend's pool (connections in autocommit mode).
    :param errors: where the pool's connection class records why it cannot connect.
    """

    def __init__(self, pool: ConnectionPool[Any], errors: ConnectErrors) -> None:
        self._pool = pool
        self._errors = errors

    def call(
        self,
        operation: str,
        do: Callable[[psycopg.Connection[Any]], T],
        *,
        write: bool = False,
    ) -> T:
        """Run ``do(connection)`` (one statement), retrying transient faults until the retry
        deadline.

        Exceptions ``do`` raises that are not the driver's (contract errors decoded from a
        reply) pass through untouched.

        :param write: ``do`` sends a mutation (it decides what ``applied`` can say).
        :raises BackendError: a permanent fault, or transient ones until the deadline.
        """
        deadline = retry_deadline()
        maybe_applied = False
        delay = _FIRST_DELAY_S
        first = True
        while True:
            conn = self._acquire(operation, deadline, first, maybe_applied)
            first = False
            try:
                return do(conn)
            except DRIVER_ERRORS as exc:
                if write and not _answered(exc):
                    maybe_applied = True
                transient = is_transient(exc)
                pause = delay * random.uniform(0.5, 1.5)
                if not transient or time.monotonic() + pause >= deadline:
                    raise backend_error(
                        operation,
                        exc,
                        applied=None if maybe_applied else False,
                        transient=transient,
                    ) from exc
            finally:
                self._release(conn)
            note_retry("postgresql", operation)
            time.sleep(pause)
            delay = min(delay * 2, _MAX_DELAY_S)

    def _acquire(
        self, operation: str, deadline: float, first: bool, maybe_applied: bool
    ) -> psycopg.Connection[Any]:
        """A healthy pooled connection, waiting until ``deadline`` (a first attempt waits
        :data:`_LAST_CHANCE_S` at least)."""
        applied = None if maybe_applied else False
        until = max(deadline, time.monotonic() + _LAST_CHANCE_S) if first else deadline
        while True:
            remaining = until - time.monotonic()
            try:
                if remaining <= 0:
                    raise PoolTimeout("no connection before the retry deadline")
                conn: psycopg.Connection[Any] = self._pool.getconn(
                    timeout=min(remaining, _ACQUIRE_SLICE_S)
                )
            except PoolTimeout as timeout:
                cause = self._errors.last or timeout
                transient = is_transient(cause)
                if not transient or time.monotonic() >= until:
                    raise backend_error(
                        operation, cause, applied=applied, transient=transient
                    ) from cause
                continue
            except DRIVER_ERRORS as exc:  # PoolClosed: the backend was closed meanwhile
                raise backend_error(operation, exc, applied=applied, transient=False) from exc
            if healthy(conn):
                return conn
            self._replace_stale(conn)

    def _replace_stale(self, conn: psycopg.Connection[Any]) -> None:
        """Give back an idle connection the server has ended, and have the pool replace it
        and every other idle one: one ended by a server restart or a network outage means
        its siblings were too."""
        try:
            drain = getattr(self._pool, "drain", None)  # psycopg_pool >= 3.2
            if drain is not None:
                drain()  # ``conn`` was out: the pool closes and replaces it on its return
            else:
                conn.close()
            self._pool.putconn(conn)
        except Exception:  # noqa: BLE001 - the pool replaces what it cannot take back
            _log.debug("returning a stale connection to the pool failed", exc_info=True)

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        """Give ``conn`` back to the pool, which replaces it if it is closed or broken."""
        try:
            if not healthy(conn):
                conn.close()
            self._pool.putconn(conn)
        except Exception:  # noqa: BLE001 - giving a connection back must never mask a result
            _log.debug("returning a connection to the pool failed", exc_info=True)
