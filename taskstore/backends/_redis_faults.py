"""The Redis backend's one mapping of redis-py errors, and its retries of transient faults.

Every call the backend makes goes through :meth:`Retrier.call`:

- A *transient* fault (connection refused or reset, a timeout, a server still loading its data
  after a restart, a cluster failing over) is retried with jittered exponential backoff
  (redis-py's :class:`~redis.backoff.EqualJitterBackoff`, from 10 ms up to 250 ms between
  attempts) until the call's retry deadline
  (:func:`~taskstore.backends.base.retry_deadline`). A replayed mutation script is harmless:
  it carries the write token of the first attempt and answers with that attempt's result
  when it finds its own write (see ``lua/put.lua``).
- Whatever is left becomes one :class:`~taskstore.errors.BackendError`, the driver's exception
  chained, with ``transient`` and ``applied`` set.

``applied`` needs to know whether a mutation ever left this process. Clients built by
``RedisBackend.from_url`` use connection classes made by :func:`tracking_connection`, which
count, per thread, the mutation commands (``EVALSHA``/``EVAL``) written whole to a connected
socket; an attempt that failed before that (connection refused, a connect timeout, a write to
a reset connection) or that the server refused outright (``LOADING``, ``READONLY``,
``CLUSTERDOWN``, ...) cannot have been applied. One whose reply was lost after the write may
have been. On a client passed in by the caller nothing is counted, so a failed
mutation's outcome is reported unknown (``applied=None``) unless the server refused it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.exceptions
from redis.backoff import EqualJitterBackoff

from taskstore.backends.base import note_retry, retry_deadline
from taskstore.errors import BackendError

__all__ = [
    "DRIVER_ERRORS",
    "Retrier",
    "backend_error",
    "counts_mutations",
    "is_transient",
    "tracking_connection",
    "was_refused",
]

T = TypeVar("T")

# Every exception class redis-py defines, not only RedisError's subtree: RedisClusterException
# (cluster routing) and ChildDeadlockedError live outside it. OSError covers anything the
# socket layer lets through unwrapped.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    *sorted(
        {
            value
            for value in vars(redis.exceptions).values()
            if isinstance(value, type) and issubclass(value, Exception)
        },
        key=lambda cls: cls.__name__,
    ),
)

_exc = redis.exceptions
# Faults that time cures: the server is unreachable, slow, restarting (LOADING is a
# ConnectionError subclass), or a cluster is failing over.
_TRANSIENT: tuple[type[Exception], ...] = (
    _exc.ConnectionError,
    _exc.TimeoutError,
    _exc.ClusterDownError,
    _exc.TryAgainError,
    _exc.ReadOnlyError,
    _exc.SlotNotCoveredError,
    _exc.RedisClusterUnreachableError,
    OSError,
)
# ConnectionError subclasses that no amount of waiting cures.
_PERMANENT: tuple[type[Exception], ...] = (
    _exc.AuthenticationError,
    _exc.AuthorizationError,
    _exc.ExternalAuthProviderError,
)
# Server replies refusing a command before running it: that attempt applied nothing.
_REFUSED: tuple[type[Exception], ...] = (
    _exc.BusyLoadingError,
    _exc.ReadOnlyError,
    _exc.ClusterDownError,
    _exc.TryAgainError,
    _exc.AskError,
    _exc.NoPermissionError,
    _exc.OutOfMemoryError,
    _exc.AuthenticationError,
    _exc.AuthorizationError,
    _exc.MaxClientsReachedError,
)
# The commands a mutation script is sent as (redis-py's Script sends EVALSHA, and after a
# NOSCRIPT reply SCRIPT LOAD and EVALSHA again).
_MUTATIONS = frozenset({"EVALSHA", "EVAL", b"EVALSHA", b"EVAL"})

# redis-py's backoff between attempts (Retrier.call runs the loop, until a deadline instead of
# for a count).
_BACKOFF = EqualJitterBackoff(cap=0.25, base=0.01)

_sent = threading.local()


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault that retrying later may cure."""
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, _PERMANENT)


def was_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is a server reply refusing a command before running it."""
    return isinstance(exc, _REFUSED)


def _mutations_sent() -> int:
    count: int = getattr(_sent, "count", 0)
    return count


@functools.cache
def tracking_connection(base: type[Any]) -> type[Any]:
    """A subclass of the redis-py connection class ``base`` that counts, per thread, the
    mutation commands it has written to a connected socket (:class:`Retrier` reads the
    count)."""

    def send_command(self: Any, *args: Any, **kwargs: Any) -> None:
        # Counted once the command is handed over whole: a connect that fails, or a write
        # that fails (a reset connection), leaves nothing the server could run.
        base.send_command(self, *args, **kwargs)
        if args and args[0] in _MUTATIONS:
            _sent.count = _mutations_sent() + 1

    tracking = type(f"Tracking{base.__name__}", (base,), {"send_command": send_command})
    _TRACKING.add(tracking)
    return tracking


_TRACKING: set[type[Any]] = set()


def counts_mutations(connection_class: object) -> bool:
    """Whether ``connection_class`` was made by :func:`tracking_connection`."""
    return connection_class in _TRACKING


def backend_error(
    operation: str, exc: BaseException, *, applied: bool | None, transient: bool
) -> BackendError:
    """The :class:`BackendError` for a driver exception raised by ``operation`` (the caller
    chains ``exc``)."""
    when = " (retried until the deadline)" if transient else ""
    return BackendError(
        f"Redis {operation} failed{when}: {type(exc).__name__}: {exc}",
        applied=applied,
        transient=transient,
    )


class _Attempts:
    """What one mutation's attempts may have applied."""

    def __init__(self, tracked: bool) -> None:
        self.tracked = tracked
        self.start = 0
        self.maybe_applied = False

    def run(self, do: Callable[[], T]) -> T:
        self.start = _mutations_sent()
        return do()

    def failed(self, error: BaseException) -> None:
        if was_refused(error):
            return
        if not self.tracked or _mutations_sent() > self.start:
            self.maybe_applied = True

    @property
    def applied(self) -> bool | None:
        return None if self.maybe_applied else False


class Retrier:
    """Runs the backend's calls to Redis (thread-safe).

    :param tracked: the client's connections count mutations (:func:`tracking_connection`),
        so a failed attempt that sent none is known not to have been applied.
    """

    def __init__(self, tracked: bool) -> None:
        self.tracked = tracked

    def call(self, operation: str, do: Callable[[], T], *, write: bool = False) -> T:
        """Run ``do()``, retrying transient faults until the retry deadline.

        Errors ``do`` raises that are not redis-py's (contract errors decoded from a script's
        reply) pass through untouched.

        :param write: ``do`` sends a mutation (it decides what ``applied`` can say).
        :raises BackendError: a permanent fault, or transient ones until the deadline.
        """
        deadline = retry_deadline()
        # A read never applied anything; a mutation's attempts are watched (see _Attempts).
        # The loop is written out, not redis-py's Retry.call_with_retry, so that the call
        # that succeeds at once (nearly every call) pays for one try block and nothing more:
        # no closures, no bookkeeping of attempts for a read.
        attempts = _Attempts(self.tracked) if write else None
        failures = 0
        while True:
            try:
                return do() if attempts is None else attempts.run(do)
            except DRIVER_ERRORS as error:
                if attempts is not None:
                    attempts.failed(error)
                applied = False if attempts is None else attempts.applied
                transient = is_transient(error)
                if not transient or time.monotonic() >= deadline:
                    raise backend_error(
                        operation, error, applied=applied, transient=transient
                    ) from error
                failures += 1
                note_retry("redis", operation)
                time.sleep(_BACKOFF.compute(failures))
