"""The DynamoDB backend's requests: boto3 client construction, retries, and the one mapping of
driver errors.

Failures: boto3 retries throttling and transport errors (adaptive mode); what is left, every
``ClientError`` other than our own condition failures and every ``BotoCoreError``, is raised as
:class:`~taskstore.errors.BackendError` with the driver's exception chained, by
:func:`backend_error` alone. Condition failures, cancelled transactions and single-item writes
that hit a running transaction come out of :meth:`Requests.send` as the internal signals
:class:`ConditionFailed`, :class:`Cancelled` and :class:`Busy`, which the backend turns into
contract errors or retries.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from taskstore.backends.base import RecordKey
from taskstore.errors import BackendError, ConfigurationError, ConflictError

__all__ = [
    "DRIVER_ERRORS",
    "Busy",
    "Cancelled",
    "ConditionFailed",
    "Requests",
    "backend_error",
    "error_code",
    "make_client",
]

#: The roots of every exception boto3 raises.
DRIVER_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)

_MIN_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.1
_CLIENT_LOCK = threading.Lock()
_LOADER: Any = None
#: Operations whose callers retry a TransactionConflictException (an item in a transaction).
_WRITES = frozenset({"put_item", "update_item", "delete_item"})


class ConditionFailed(Exception):
    """A single-item write's condition failed; ``item`` is the item as it was (ALL_OLD)."""

    def __init__(self, item: dict[str, Any] | None, retried: bool) -> None:
        super().__init__("condition failed")
        self.item = item
        self.retried = retried


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


def backend_error(operation: str, exc: Exception, table: str | None = None) -> BackendError:
    """The :class:`BackendError` for a driver exception (the caller chains ``exc``).

    :param operation: the boto3 method (``get_item``) or the API name (``GetItem``).
    :param table: when given, a missing table is named with the command that creates it.
    """
    name = "".join(part[:1].upper() + part[1:] for part in operation.split("_"))
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == "ResourceNotFoundException" and table is not None:
            return BackendError(
                f"DynamoDB table {table!r} not found ({name}); create it with "
                f"'python -m taskstore dynamodb create-table {table}'"
            )
        return BackendError(f"DynamoDB {name} failed: {code}")
    return BackendError(f"DynamoDB {name} failed: {type(exc).__name__}")


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

    def send(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call ``operation`` (snake_case boto3 method); map every driver error.

        :raises ConditionFailed: ConditionalCheckFailedException (with the ALL_OLD item).
        :raises Cancelled: TransactionCanceledException (with its reasons).
        :raises Busy: TransactionConflictException on a single-item write.
        :raises BackendError: anything else boto3 raised after its retries.
        :raises ConfigurationError: the backend is closed.
        """
        if self.closed:
            raise ConfigurationError("this DynamoDbBackend is closed")
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
                raise ConditionFailed(exc.response.get("Item"), retried) from exc
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
        condition we handle nor a transient conflict), chaining the driver's exception."""
        raise backend_error("transact_write_items", cancelled.error, self.table) from (
            cancelled.error
        )

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
            raise BackendError(
                f"DynamoDB kept throttling the write after {attempts} attempts"
            ) from last.error
        raise ConflictError(
            f"Task {key[1]} is being written concurrently; gave up after {attempts} attempts",
            data={"taskId": key[1], "attempts": attempts},
        ) from last
