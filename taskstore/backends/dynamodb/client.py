"""The DynamoDB backend's requests: boto3 client construction, retries, and the one mapping of
driver errors.

Failures: boto3 retries throttling and transport errors (adaptive mode, ``max_attempts`` per
request); :meth:`Requests.send` repeats a request boto3 gave up on while the fault is transient
(connection refused or reset, timeouts, throttling, 5xx), with jittered backoff, until the
call's retry deadline (:func:`~taskstore.backends.base.retry_deadline`; checked between
requests, so a request in flight finishes its boto3 attempts). A repeated request is identical
(a transaction keeps its ``ClientRequestToken``, so DynamoDB applies it once; a single-item
write keeps its write token, see :mod:`.writes`). What is left, every ``ClientError`` other
than our own condition failures and every ``BotoCoreError``, is raised as
:class:`~taskstore.errors.BackendError` with the driver's exception chained, by
:func:`backend_error` alone, ``transient`` and ``applied`` set. To tell ``applied``, a
``needs-retry`` hook on the client sees every attempt boto3 makes: one that failed to connect
or got a 4xx answer applied nothing, one whose answer was lost (read timeout, connection
closed) or was a 5xx may have. Condition failures, cancelled transactions and single-item
writes that hit a running transaction come out of :meth:`Requests.send` as the internal
signals :class:`ConditionFailed`, :class:`Cancelled` and :class:`Busy`, which the backend turns
into contract errors or retries.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from taskstore.backends.base import RecordKey, note_retry, retry_deadline
from taskstore.errors import BackendError, ConfigurationError, ConflictError

__all__ = [
    "DRIVER_ERRORS",
    "Busy",
    "Cancelled",
    "ConditionFailed",
    "Requests",
    "backend_error",
    "error_code",
    "is_transient",
    "make_client",
]

#: The roots of every exception boto3 raises.
DRIVER_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)

_MIN_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.1
# Between repeats of a request boto3 gave up on: a blip ends within a quarter second of these.
_FAULT_MIN_BACKOFF_S = 0.01
_FAULT_MAX_BACKOFF_S = 0.25
_CLIENT_LOCK = threading.Lock()
_LOADER: Any = None
#: Operations whose callers retry a TransactionConflictException (an item in a transaction).
_WRITES = frozenset({"put_item", "update_item", "delete_item"})
#: Operations that write: a failed one may have been applied.
_ALL_WRITES = _WRITES | {"transact_write_items", "batch_write_item"}
#: Error codes of faults that pass: throttling, DynamoDB's own failures, a transaction with the
#: same token still running.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
# Transport faults that time cures; SSL errors are left out (a bad certificate stays bad).
_TRANSIENT_TRANSPORT: tuple[type[Exception], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.HTTPClientError,  # read timeouts, connections closed mid-answer
)
# Transport faults raised before the request left: such an attempt applied nothing.
_NOT_SENT: tuple[type[Exception], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ProxyConnectionError,
)
# The attempts of the request this thread is sending (see _observe_attempt).
_current = threading.local()


class ConditionFailed(Exception):
    """A single-item write's condition failed; ``item`` is the item as it was (ALL_OLD) when
    asked for, which may show the write's own token (an earlier attempt landed)."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


class Cancelled(Exception):
    """A transaction was cancelled; ``reasons`` line up with its actions."""

    def __init__(self, reasons: list[dict[str, Any]], error: Exception) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons
        self.error = error

    def code(self, index: int) -> str:
        """The cancellation reason of action ``index`` (``"None"`` when it was fine)."""
        if index < len(self.reasons):
            return str(self.reasons[index].get("Code", "None"))
        return "None"

    def item(self, index: int) -> dict[str, Any] | None:
        """The ALL_OLD item of action ``index`` whose condition failed, if any."""
        if index < len(self.reasons):
            item: dict[str, Any] | None = self.reasons[index].get("Item")
            return item
        return None

    @property
    def transient(self) -> bool:
        """Cancelled by a concurrent transaction or throttling: worth retrying."""
        return any(
            str(r.get("Code")) in ("TransactionConflict", "ThrottlingError",
                                   "ProvisionedThroughputExceeded")
            for r in self.reasons
        )


class Busy(Exception):
    """A single-item write hit an item that a transaction is changing right now."""


def error_code(exc: Any) -> str:
    """The error code of a botocore ``ClientError``."""
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (raised by boto3 after its own retries) is a fault that retrying
    later may cure: throttling, a 5xx, a refused, reset or timed-out connection."""
    if isinstance(exc, ClientError):
        return error_code(exc) in _TRANSIENT_CODES or _status(exc) >= 500
    return isinstance(exc, _TRANSIENT_TRANSPORT)


def backend_error(
    operation: str,
    exc: Exception,
    table: str | None = None,
    *,
    applied: bool | None = False,
    transient: bool | None = None,
) -> BackendError:
    """The :class:`BackendError` for a driver exception (the caller chains ``exc``).

    :param operation: the boto3 method (``get_item``) or the API name (``GetItem``).
    :param table: when given, a missing table is named with the command that creates it.
    :param applied: what the failed call's write may have done (``False``: nothing).
    :param transient: whether the fault may pass (default: :func:`is_transient`).
    """
    name = "".join(part[:1].upper() + part[1:] for part in operation.split("_"))
    flags: dict[str, Any] = {
        "applied": applied,
        "transient": is_transient(exc) if transient is None else transient,
    }
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == "ResourceNotFoundException" and table is not None:
            return BackendError(
                f"DynamoDB table {table!r} not found ({name}); create it with "
                f"'python -m taskstore dynamodb create-table {table}'",
                **flags,
            )
        return BackendError(f"DynamoDB {name} failed: {code}", **flags)
    return BackendError(f"DynamoDB {name} failed: {type(exc).__name__}", **flags)


class _Attempts:
    """What the attempts of one request (boto3's and ours) may have applied."""

    __slots__ = ("maybe_applied",)

    def __init__(self) -> None:
        self.maybe_applied = False


def _observe_attempt(
    response: Any = None, caught_exception: BaseException | None = None, **_: Any
) -> None:
    """``needs-retry`` hook, called after every attempt boto3 makes: note one that may have
    reached DynamoDB without an answer saying what became of it. Returns ``None``, so boto3's
    own retry decision stands."""
    attempts: _Attempts | None = getattr(_current, "attempts", None)
    if attempts is None:
        return
    if caught_exception is not None:
        if not isinstance(caught_exception, _NOT_SENT):
            attempts.maybe_applied = True
    elif response is not None:
        http = response[0]
        # A 4xx is a refusal (throttling, a failed condition); a 5xx leaves the write unknown.
        if getattr(http, "status_code", 0) >= 500:
            attempts.maybe_applied = True


def make_client(
    *,
    region: str | None,
    endpoint_url: str | None,
    profile: str | None = None,
    connect_timeout: float = 2.0,
    read_timeout: float = 5.0,
    max_attempts: int = 4,
    max_pool_connections: int = 50,
) -> Any:
    """A DynamoDB client with bounded timeouts and adaptive retries (client-side rate limiting
    backs off under throttling instead of hammering the table).

    :raises ConfigurationError: boto3 cannot build it (no region configured).
    """
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
        user_agent_extra="taskstore",
    )
    try:
        with _CLIENT_LOCK:
            # A session per client (boto3's default session is not safe to share across
            # threads), but one loader for all: parsing the service model on every client
            # costs ~50 ms.
            global _LOADER
            if _LOADER is None:
                _LOADER = botocore.loaders.create_loader()
            core = botocore.session.Session(profile=profile)
            core.register_component("data_loader", _LOADER)
            session = boto3.session.Session(botocore_session=core)
            return session.client(
                "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
            )
    except BotoCoreError as exc:
        raise ConfigurationError(
            f"Cannot build a DynamoDB client: {exc} (a region is needed: region=... or "
            "AWS_REGION)"
        ) from exc


class Requests:
    """Requests on one table through one boto3 client (thread-safe, as the client is).

    :param retry_budget_s: how long :meth:`retries` keeps yielding attempts.
    """

    def __init__(self, client: Any, table: str, retry_budget_s: float) -> None:
        self.client = client
        self.table = table
        self.retry_budget_s = retry_budget_s
        #: Set by the backend's ``close``; every later request raises ``ConfigurationError``.
        self.closed = False
        # One registration per client, whoever built it (the hook is shared and stateless).
        client.meta.events.register(
            "needs-retry.dynamodb", _observe_attempt, unique_id="taskstore-attempts"
        )

    def send(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call ``operation`` (snake_case boto3 method); map every driver error.

        A transient fault boto3 gave up on is retried with the same ``params`` (jittered
        backoff from 10 ms to 250 ms) until the retry deadline.

        :raises ConditionFailed: ConditionalCheckFailedException (with the ALL_OLD item).
        :raises Cancelled: TransactionCanceledException (with its reasons).
        :raises Busy: TransactionConflictException on a single-item write.
        :raises BackendError: anything else boto3 raised after its retries and ours.
        :raises ConfigurationError: the backend is closed.
        """
        if self.closed:
            raise ConfigurationError("this DynamoDbBackend is closed")
        deadline = retry_deadline()
        attempts = _Attempts()
        backoff = _FAULT_MIN_BACKOFF_S
        _current.attempts = attempts
        try:
            while True:
                try:
                    return self._send_once(operation, params)
                except BackendError as error:
                    if not error.transient or time.monotonic() >= deadline:
                        if operation in _ALL_WRITES and attempts.maybe_applied:
                            error.applied = None
                        raise
                note_retry("aws.dynamodb", operation)
                time.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, _FAULT_MAX_BACKOFF_S)
        finally:
            _current.attempts = None

    def _send_once(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request (boto3's own attempts included), its errors mapped."""
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed(exc.response.get("Item")) from exc
            if code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                raise Cancelled(list(reasons), exc) from exc
            if code == "TransactionConflictException" and operation in _WRITES:
                raise Busy() from exc
            raise backend_error(operation, exc, self.table) from exc
        except BotoCoreError as exc:
            raise backend_error(operation, exc, self.table) from exc
        return response

    def failed(self, cancelled: Cancelled) -> NoReturn:
        """Raise the :class:`BackendError` of a transaction cancelled for good (neither a
        condition we handle nor a transient conflict), chaining the driver's exception. A
        cancelled transaction applied nothing."""
        raise backend_error(
            "transact_write_items", cancelled.error, self.table, transient=False
        ) from cancelled.error

    def retries(self) -> Iterator[int]:
        """Yield attempt numbers until the retry budget is spent, sleeping with full jitter
        between attempts (racing writers must not retry in lockstep)."""
        deadline = time.monotonic() + self.retry_budget_s
        backoff = _MIN_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            yield attempt
            if time.monotonic() >= deadline:
                return
            time.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def gave_up(self, key: RecordKey, attempts: int, last: Exception | None) -> NoReturn:
        """Raise the error of a write whose retries ran out: :class:`BackendError` when
        DynamoDB kept throttling, else :class:`ConflictError` (concurrent writers won)."""
        if isinstance(last, Cancelled) and not any(
            r.get("Code") == "TransactionConflict" for r in last.reasons
        ):
            # Every attempt was cancelled, so none was applied.
            raise BackendError(
                f"DynamoDB kept throttling the write after {attempts} attempts",
                applied=False,
                transient=True,
            ) from last.error
        raise ConflictError(
            f"Task {key[1]} is being written concurrently; gave up after {attempts} attempts",
            data={"taskId": key[1], "attempts": attempts},
        ) from last
