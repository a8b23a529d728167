"""DynamoDB backend: single table, conditional writes, native TTL, enforced item size (DESIGN §8).

Layout
------

One table, one item per task, one *quota ledger* item per owner, all of an owner's items in
the owner's partition (``O``/``T`` are the owner and task id through
:func:`~taskstore.backends.base.encode_key_part`)::

    PK = OWNER#O   SK = TASK#T   the task
        lsk         S  listing sort key: sort_ms zero-padded to 16 digits, "#", the raw task id
        v           N  version (1, 2, ...)
        d           B  the record bytes, whenever the item still fits with them indexed
        dx          B  the record bytes otherwise (too large to copy into the index)
        o, os       B, N  the outcome blob and its length (absent until an outcome is written)
        x           N  exact expiry, epoch ms (absent: never expires)
        expires_at  N  the native TTL attribute: ceil(x / 1000), epoch seconds
    PK = OWNER#O   SK = QUOTA    the owner's quota ledger (see below)

    LSI "by_created": PK + lsk, projecting d, v and x (never o)

Reads: :meth:`~DynamoDbBackend.get` is one strongly consistent ``GetItem`` whose projection
leaves the outcome out unless asked for. A :meth:`~DynamoDbBackend.list_by_prefix` page is one
strongly consistent ``Query`` of the LSI, newest first (``ScanIndexForward=False``; the
zero-padded ``lsk`` orders by ``sort_ms``, then by task id, both descending, exactly like
every other backend), answered from the index alone: outcomes are never in it, so stored
results cost a listing nothing, in bytes or in read capacity. Keyset pagination starts the
query *at* the anchor inclusive, so one request both proves the anchor is still live (a stale
one raises ``RecordNotFound``) and fetches the page; it pages further only when expired items
thinned it. Records too large for the index (``dx``) cost their page one ``BatchGetItem``.

Why two record attributes: on a table with a local secondary index, DynamoDB's 400 KB item
limit covers the item *and* its index entries, so an indexed record counts twice. Records up to
about 200 KB (less when a large outcome is stored) live in the indexed ``d``; larger ones, up
to what the item can hold, in ``dx``. Every write picks the attribute anew (and removes the
other one).

Writes: every write is conditional. ``create`` is one ``TransactWriteItems`` (the task ``Put``
with ``attribute_not_exists(PK) OR x <= :now`` plus the ledger update); a compare-and-set is one
``UpdateItem`` with ``v = :expected AND (attribute_not_exists(x) OR x > :now)``. Every
condition asks for ``ReturnValuesOnConditionCheckFailure=ALL_OLD``, so a conflict reports the
actual version without another read. Expired items (DynamoDB's sweeper may take days) are
filtered from every read and count as absent in every condition; expiry is judged against the
caller's ``now_ms`` (the store's clock), never DynamoDB's.

Quota ledger
------------

An exact per-owner quota under concurrent creates from many processes needs the count and the
insert in one atomic step, so every ``create`` is a transaction of the task ``Put`` and an
``UpdateItem`` of the owner's ledger conditioned on ``n < :max``. The ledger holds:

- ``n``: an *upper bound* of the owner's live tasks. Every insert adds 1. Nothing subtracts when
  a task expires or is deleted; such tasks become *phantoms* still counted in ``n``. So a
  create is never admitted above the limit (``live <= n < max`` before it).
- ``nx``: a lower bound of the expiry of every counted task, and ``dt``: set by every write that
  may break that bound or creates a phantom other than by expiry (``delete``, ``put`` inserts,
  expiry changes). While ``dt`` is unset and ``now < nx``, no phantom can exist, so ``n`` is
  exact and a create finding ``n >= max`` is refused at once, in one request.
- ``v``: the ledger's version, bumped by every update.

When ``n >= max`` but phantoms may exist (``dt`` set or ``nx <= now``), the create *repairs* the
ledger: a consistent ``Query`` counts the live tasks (and their earliest and latest expiry),
then an ``UpdateItem`` conditioned on the ledger version it started from stores the exact count
and clears ``dt``; any insert in between changed the version, so the repair is retried instead
of losing that insert. The create then retries. A repair costs a query of the owner's
partition, but only happens at the limit after something was freed. Racing creates conflict on
the ledger (``TransactionConflict``) and retry with jittered backoff: exactly the limit is
admitted, across threads and processes.

``lx`` is an upper bound of the counted tasks' expiry; the ledger's own ``expires_at`` is
``lx`` plus a day, so DynamoDB reclaims the ledgers of owners that are gone, but only once all
their counted tasks are long expired (an absent ledger then correctly means "no live task").

Item size
---------

DynamoDB rejects items over 400 KB (409,600 bytes, counting attribute names and values; numbers
take one byte per two digits, aligned on the decimal point, plus one), the item's index entry
included (its keys, the table's sort key, and d, v, x). Every write computes the resulting size
first and raises :class:`~taskstore.errors.InvalidParamsError` naming the limit
(:class:`~taskstore.errors.ResultTooLargeError` when the outcome being written does not fit)
without sending anything. A compare-and-set that keeps a stored outcome knows its size from the
``get`` that preceded it through this object (the store always reads before it writes); as a
safety net every such write also carries the condition ``os <= :room``. The declared caps
``max_variable_bytes`` and ``max_result_bytes`` (350 KiB each) each leave room for the rest of
an item; a task whose variables *and* result together exceed an item is refused at the write
that would overflow it.

Events and waiting
------------------

DynamoDB has no notifications. :meth:`~DynamoDbBackend.add_listener` delivers the events of
writes made through *this object* only, and :meth:`~DynamoDbBackend.wait_for_change` wakes
promptly for those and otherwise returns after ``timeout_s``; the store then re-reads, polling
at the task's ``pollInterval`` with backoff (declared as ``cross_process_events = False``).

Failures: boto3 retries throttling and transport errors (adaptive mode); what is left, every
``ClientError`` other than our own condition failures and every ``BotoCoreError``, is raised as
:class:`~taskstore.errors.BackendError` with the driver's exception chained.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn
from urllib.parse import parse_qsl, urlsplit

from taskstore.backends._options import (
    Converter,
    to_float,
    to_int,
    to_optional_str,
    url_options,
)
from taskstore.backends.base import (
    KEEP,
    EventListener,
    Keep,
    Listeners,
    ListPosition,
    RecordKey,
    VersionedRecord,
    encode_key_part,
)
from taskstore.errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    InvalidParamsError,
    MissingDependencyError,
    QuotaExceededError,
    RecordNotFound,
    ResultTooLargeError,
    VersionConflict,
)

try:
    import boto3
    import botocore.loaders
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    raise MissingDependencyError(
        "The 'boto3' package is needed for the DynamoDB backend: pip install 'taskstore[dynamodb]'"
    ) from None

__all__ = ["ITEM_LIMIT_BYTES", "DynamoDbBackend"]

_log = logging.getLogger("taskstore.backends.dynamodb")

#: DynamoDB's item size limit: 400 KB, where 1 KB is 1024 bytes.
ITEM_LIMIT_BYTES = 400 * 1024
_PARTITION_KEY_LIMIT = 2048
_SORT_KEY_LIMIT = 1024
_SORT_DIGITS = 16
_SORT_MAX = 10**_SORT_DIGITS - 1
#: ``lx`` of a ledger whose counted tasks include one that never expires.
_NEVER = _SORT_MAX
#: How long a ledger outlives the latest expiry it counted (clock skew between hosts and
#: DynamoDB's sweeper must never make it vanish while a counted task is live).
_LEDGER_GRACE_S = 86_400
_INDEX = "by_created"
_LEDGER_SK = "QUOTA"
_MIN_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.1
_CACHE_SIZE = 4096
_CLIENT_LOCK = threading.Lock()
_LOADER: Any = None

# Every attribute name goes through a placeholder: several short names are reserved words.
_NAMES = {
    "#pk": "PK",
    "#sk": "SK",
    "#lsk": "lsk",
    "#v": "v",
    "#d": "d",
    "#dx": "dx",
    "#o": "o",
    "#os": "os",
    "#x": "x",
    "#ea": "expires_at",
    "#n": "n",
    "#nx": "nx",
    "#lx": "lx",
    "#dt": "dt",
}
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
_LIVE = "(attribute_not_exists(#x) OR #x > :now)"
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
#: Operations whose callers retry a TransactionConflictException (an item in a transaction).
_WRITES = frozenset({"put_item", "update_item", "delete_item"})

# from_url's options (query parameters or keywords) and their converters.
_OPTIONS: dict[str, Converter] = {
    "region": to_optional_str,
    "endpoint_url": to_optional_str,
    "profile": to_optional_str,
    "connect_timeout": to_float,
    "read_timeout": to_float,
    "max_attempts": to_int,
    "max_pool_connections": to_int,
    "retry_budget_s": to_float,
    "client": lambda client: client,
}


# -- AttributeValue helpers ---------------------------------------------------------------


def _s(value: str) -> dict[str, Any]:
    return {"S": value}


def _n(value: int) -> dict[str, Any]:
    return {"N": str(value)}


def _b(value: bytes) -> dict[str, Any]:
    return {"B": value}


def _int(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None else int(value["N"])


def _number_size(value: int) -> int:
    """Bytes DynamoDB charges for a number: base-100 digits aligned on the decimal point, with
    leading and trailing zero pairs dropped, plus one (plus one more when negative).

    AWS documents "about one byte per two significant digits plus one"; this exact form was
    measured against DynamoDB Local and is never below the documented one.
    """
    if value == 0:
        return 1
    digits = str(abs(value))
    if len(digits) % 2:
        digits = "0" + digits
    pairs = len(digits) // 2
    while digits.endswith("00"):
        digits = digits[:-2]
        pairs -= 1
    return pairs + 1 + (1 if value < 0 else 0)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _attr_size(name: str, value: Mapping[str, Any]) -> int:
    size = _utf8_len(name)
    if "S" in value:
        return size + _utf8_len(value["S"])
    if "B" in value:
        return size + len(value["B"])
    if "N" in value:
        return size + _number_size(int(value["N"]))
    return size + 1  # BOOL / NULL


def _item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(_attr_size(name, value) for name, value in item.items())


def _place(fixed: int, data_length: int, outcome_length: int | None) -> tuple[str, int, int]:
    """Where a record goes, and the charged size of its item (item plus index entry).

    :param fixed: the charged size of everything but the record and the outcome.
    :returns: ``("d", size, bare)`` while the item fits with the record indexed (it then
        counts twice), else ``("dx", size, bare)``; ``bare`` is ``size`` without the outcome.
        The caller checks ``size`` against the limit.
    """
    outcome = 0 if outcome_length is None else _outcome_size(outcome_length)
    indexed = fixed + 2 * (1 + data_length)
    if indexed + outcome <= ITEM_LIMIT_BYTES:
        return "d", indexed + outcome, indexed
    bare = fixed + 2 + data_length
    return "dx", bare + outcome, bare


def _data(item: Mapping[str, Any]) -> bytes:
    value = item.get("d") or item.get("dx")
    return b"" if value is None else bytes(value["B"])


def _expiry_attrs(expires_at_ms: int) -> dict[str, dict[str, Any]]:
    # Round the TTL up: DynamoDB must never delete an item before its millisecond expiry.
    return {"x": _n(expires_at_ms), "expires_at": _n(math.ceil(expires_at_ms / 1000))}


def _expiry_size(expires_at_ms: int | None) -> int:
    """What the expiry adds to an item and its index entry (``x`` is in both)."""
    if expires_at_ms is None:
        return 0
    attrs = _expiry_attrs(expires_at_ms)
    return _item_size(attrs) + _attr_size("x", attrs["x"])


def _outcome_size(length: int) -> int:
    return 1 + length + 2 + _number_size(length)  # "o" + blob, "os" + its length


#: Largest the expiry attributes can be when the stored expiry is unknown.
_MAX_EXPIRY_SIZE = _expiry_size(_SORT_MAX)


def _max_outcome_length(room: int) -> int:
    """Longest outcome whose two attributes fit in ``room`` bytes (-1 if none does)."""
    length = max(room - 3 - 1, -1)
    while length >= 0 and _outcome_size(length) > room:
        length -= 1
    return length


def _params(
    table: str, *, values: Mapping[str, Any] | None = None, **expressions: Any
) -> dict[str, Any]:
    """Request parameters with only the name and value placeholders the expressions use
    (DynamoDB rejects unused ones)."""
    params: dict[str, Any] = {"TableName": table}
    used: set[str] = set()
    for field, text in expressions.items():
        if text is None:
            continue
        params[field] = text
        if isinstance(text, str):
            used.update(_PLACEHOLDER.findall(text))
    names = {p: _NAMES[p] for p in sorted(used) if p.startswith("#")}
    if names:
        params["ExpressionAttributeNames"] = names
    if values:
        chosen = {p: v for p, v in values.items() if p in used}
        if chosen:
            params["ExpressionAttributeValues"] = chosen
    return params


# -- internal signals ---------------------------------------------------------------------


class _ConditionFailed(Exception):
    """A single-item write's condition failed; ``item`` is the item as it was (ALL_OLD)."""

    def __init__(self, item: dict[str, Any] | None, retried: bool) -> None:
        super().__init__("condition failed")
        self.item = item
        self.retried = retried


class _Cancelled(Exception):
    """A transaction was cancelled; ``reasons`` line up with its actions."""

    def __init__(self, reasons: list[dict[str, Any]], error: Exception) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons
        self.error = error

    def code(self, index: int) -> str:
        if index < len(self.reasons):
            return str(self.reasons[index].get("Code", "None"))
        return "None"

    def item(self, index: int) -> dict[str, Any] | None:
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


class _Busy(Exception):
    """A single-item write hit an item that a transaction is changing right now."""


class _Shape(NamedTuple):
    """What this object last saw of an item's size: exact sizes for the size check."""

    version: int
    expiry_size: int
    outcome_length: int | None


class _Ledger(NamedTuple):
    """The owner's quota ledger as DynamoDB returned it."""

    version: int | None
    counted: int
    min_expiry: int | None
    max_expiry: int | None
    dirty: bool

    @classmethod
    def parse(cls, item: Mapping[str, Any] | None) -> _Ledger:
        if not item:
            return cls(None, 0, None, None, False)
        dirty = item.get("dt")
        return cls(
            _int(item, "v"),
            _int(item, "n") or 0,
            _int(item, "nx"),
            _int(item, "lx"),
            bool(dirty and dirty.get("BOOL")),
        )


class DynamoDbBackend:
    """A :class:`~taskstore.backends.base.StorageBackend` on one DynamoDB table.

    Thread-safe (one boto3 client, which is thread-safe, shared by all threads) and safe across
    processes: every atomicity guarantee comes from DynamoDB's conditional writes and
    transactions. The table must exist (:meth:`create_table`, or ``python -m taskstore dynamodb
    create-table NAME``); the constructor sends no request.

    :param table_name: the table.
    :param client: a boto3 DynamoDB client to use as it is (its configuration is the caller's);
        by default one is built from the options below, with adaptive retries.
    :param region: AWS region (default: boto3's configuration, e.g. ``AWS_REGION``).
    :param endpoint_url: e.g. ``http://localhost:8000`` for DynamoDB Local.
    :param profile: a named AWS profile.
    :param connect_timeout: seconds to wait for a connection (per attempt).
    :param read_timeout: seconds to wait for a response (per attempt).
    :param max_attempts: attempts per request, retries included (boto3 adaptive mode).
    :param max_pool_connections: HTTP connections kept for concurrent threads.
    :param retry_budget_s: how long a write keeps retrying transactions cancelled by concurrent
        writers or throttling before it gives up.
    :raises ConfigurationError: bad option, or no region configured.
    """

    #: 350 KiB: with the rest of the record, variables this large still fit in an item.
    max_variable_bytes: int | None = 350 * 1024
    #: 350 KiB: with a small record, an outcome this large still fits in an item.
    max_result_bytes: int | None = 350 * 1024
    #: Listeners and waiters hear only of writes made through this object; other processes'
    #: changes are seen by re-reading (the store polls at ``pollInterval`` with backoff).
    cross_process_events: bool = False
    #: DynamoDB's TTL reclaims expired items by itself (within days); expired items are
    #: invisible from the moment they expire. ``cleanup_expired`` scans the listing index.
    native_ttl: bool = True

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 4,
        max_pool_connections: int = 50,
        retry_budget_s: float = 5.0,
    ) -> None:
        if not isinstance(table_name, str) or not _TABLE_NAME.fullmatch(table_name):
            raise ConfigurationError(
                "A DynamoDB table name has 3 to 255 characters from A-Z a-z 0-9 _ . -, "
                f"got {table_name!r}"
            )
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout),
                            ("retry_budget_s", retry_budget_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{name} must be a non-negative number, got {value!r}")
        for name, value in (("max_attempts", max_attempts),
                            ("max_pool_connections", max_pool_connections)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        self._table = table_name
        self._owns_client = client is None
        self._client: Any = (
            client
            if client is not None
            else _make_client(
                region=region,
                endpoint_url=endpoint_url,
                profile=profile,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
                max_pool_connections=max_pool_connections,
            )
        )
        self._retry_budget_s = float(retry_budget_s)
        self._lock = threading.Lock()
        self._shapes: collections.OrderedDict[RecordKey, _Shape] = collections.OrderedDict()
        self._ledger_hints: collections.OrderedDict[str, _Ledger] = collections.OrderedDict()
        self._changed = threading.Condition(threading.Lock())
        self._recent: collections.OrderedDict[RecordKey, int] = collections.OrderedDict()
        self._listeners = Listeners()
        self._closed = False

    def __repr__(self) -> str:
        return f"DynamoDbBackend(table={self._table!r})"

    @property
    def table_name(self) -> str:
        """The table this backend reads and writes."""
        return self._table

    @property
    def client(self) -> Any:
        """The boto3 client in use (e.g. to register botocore event hooks)."""
        return self._client

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DynamoDbBackend:
        """Build from ``dynamodb://TABLE?region=...&endpoint_url=...``; keyword options win.

        Query parameters and keywords: ``region``, ``endpoint_url``, ``profile``,
        ``connect_timeout``, ``read_timeout``, ``max_attempts``, ``max_pool_connections``,
        ``retry_budget_s``; keyword only: ``client``.

        :raises ConfigurationError: no table, a path, an unknown option or a bad value.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "dynamodb":
            raise ConfigurationError(f"Not a dynamodb:// URL: {url!r}")
        table = parts.netloc
        if not table:
            raise ConfigurationError(
                "A DynamoDB URL names its table: dynamodb://TABLE?region=...&endpoint_url=..."
            )
        if parts.path not in ("", "/"):
            raise ConfigurationError(
                f"A DynamoDB URL has no path (dynamodb://TABLE?...), got {parts.path!r}"
            )
        if "client" in dict(parse_qsl(parts.query)):
            raise ConfigurationError("client can only be passed as a keyword option")
        params = url_options(url, options, _OPTIONS)
        client = params.pop("client", None)
        return cls(table, client, **params)

    @staticmethod
    def table_definition(name: str) -> dict[str, Any]:
        """The ``CreateTable`` parameters of the table this backend needs (for infrastructure
        as code: CloudFormation, Terraform and CDK mirror them): on-demand billing, the key
        schema and the ``by_created`` listing index of the module docstring. TTL on
        ``expires_at`` is a separate ``UpdateTimeToLive`` call."""
        return {
            "TableName": name,
            "AttributeDefinitions": [
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
                {"AttributeName": "lsk", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            "LocalSecondaryIndexes": [
                {
                    "IndexName": _INDEX,
                    "KeySchema": [
                        {"AttributeName": "PK", "KeyType": "HASH"},
                        {"AttributeName": "lsk", "KeyType": "RANGE"},
                    ],
                    # Never "o" (nor "dx"): listings must not read or pay for outcomes.
                    "Projection": {
                        "ProjectionType": "INCLUDE",
                        "NonKeyAttributes": ["d", "v", "x"],
                    },
                }
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }

    @classmethod
    def create_table(
        cls,
        name: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        ttl: bool = True,
    ) -> None:
        """Create the table this backend needs and wait until it is ``ACTIVE``.

        On-demand billing, the key schema and listing index of :meth:`table_definition`,
        and TTL enabled on ``expires_at``.

        :param ttl: enable native TTL (turn it off only for tests that move a manual clock in
            the past, where DynamoDB's sweeper would remove records the store considers live).
        :raises ConfigurationError: the table already exists; no region configured.
        :raises BackendError: DynamoDB refused (permissions, limits, connection).
        """
        if client is None:
            client = _make_client(region=region, endpoint_url=endpoint_url)
        operation = "CreateTable"
        try:
            client.create_table(**cls.table_definition(name))
            operation = "DescribeTable"
            client.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
            )
            if ttl:
                operation = "UpdateTimeToLive"
                client.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
                )
        except ClientError as exc:
            if _error_code(exc) == "ResourceInUseException" and operation == "CreateTable":
                raise ConfigurationError(f"DynamoDB table {name!r} already exists") from exc
            raise BackendError(f"DynamoDB {operation} failed: {_error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise BackendError(f"DynamoDB {operation} failed: {type(exc).__name__}") from exc

    # -- requests and error mapping --------------------------------------------------------

    def _send(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call ``operation`` (snake_case boto3 method); map every driver error.

        :raises _ConditionFailed: ConditionalCheckFailedException (with the ALL_OLD item).
        :raises _Cancelled: TransactionCanceledException (with its reasons).
        :raises _Busy: TransactionConflictException on a single-item write.
        :raises BackendError: anything else boto3 raised after its retries.
        """
        if self._closed:
            raise ConfigurationError("this DynamoDbBackend is closed")
        try:
            response: dict[str, Any] = getattr(self._client, operation)(**params)
        except ClientError as exc:
            code = _error_code(exc)
            if code == "ConditionalCheckFailedException":
                retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
                raise _ConditionFailed(exc.response.get("Item"), retried) from exc
            if code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                raise _Cancelled(list(reasons), exc) from exc
            if code == "TransactionConflictException" and operation in _WRITES:
                raise _Busy() from exc
            raise self._error(operation, exc) from exc
        except BotoCoreError as exc:
            raise self._error(operation, exc) from exc
        return response

    def _error(self, operation: str, exc: Exception) -> BackendError:
        name = "".join(part.title() for part in operation.split("_"))
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                return BackendError(
                    f"DynamoDB table {self._table!r} not found ({name}); create it with "
                    f"'python -m taskstore dynamodb create-table {self._table}'"
                )
            return BackendError(f"DynamoDB {name} failed: {code}")
        return BackendError(f"DynamoDB {name} failed: {type(exc).__name__}")

    def _retries(self) -> Iterator[int]:
        """Yield attempt numbers until the retry budget is spent, sleeping with full jitter
        between attempts (racing writers must not retry in lockstep)."""
        deadline = time.monotonic() + self._retry_budget_s
        backoff = _MIN_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            yield attempt
            if time.monotonic() >= deadline:
                return
            time.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _gave_up(self, key: RecordKey, attempts: int, last: Exception | None) -> NoReturn:
        if isinstance(last, _Cancelled) and not any(
            r.get("Code") == "TransactionConflict" for r in last.reasons
        ):
            raise BackendError(
                f"DynamoDB kept throttling the write after {attempts} attempts"
            ) from last.error
        raise ConflictError(
            f"Task {key[1]} is being written concurrently; gave up after {attempts} attempts",
            data={"taskId": key[1], "attempts": attempts},
        ) from last

    # -- keys, sizes, caches ---------------------------------------------------------------

    @staticmethod
    def _pk(owner: str) -> dict[str, Any]:
        """The owner's partition key.

        :raises InvalidParamsError: not a string, not valid Unicode (a lone surrogate), or too
            long for a DynamoDB partition key once encoded: no record can have such an owner.
        """
        if not isinstance(owner, str):
            raise InvalidParamsError("owner must be a string")
        try:
            pk = "OWNER#" + encode_key_part(owner)
        except UnicodeEncodeError:
            raise InvalidParamsError("owner must be valid Unicode") from None
        if _utf8_len(pk) > _PARTITION_KEY_LIMIT:
            raise InvalidParamsError(
                f"owner too long for a DynamoDB partition key ({_PARTITION_KEY_LIMIT} bytes "
                "once encoded)"
            )
        return _s(pk)

    @classmethod
    def _key_attrs(cls, key: RecordKey) -> dict[str, dict[str, Any]]:
        """The task's primary key; raises like :meth:`_pk` for the task id too."""
        owner, task_id = key
        pk = cls._pk(owner)
        if not isinstance(task_id, str):
            raise InvalidParamsError("task id must be a string")
        try:
            sk = "TASK#" + encode_key_part(task_id)
        except UnicodeEncodeError:
            raise InvalidParamsError("task id must be valid Unicode") from None
        if _utf8_len(sk) > _SORT_KEY_LIMIT:
            raise InvalidParamsError(
                f"task id too long for a DynamoDB sort key ({_SORT_KEY_LIMIT} bytes once encoded)"
            )
        return {"PK": pk, "SK": _s(sk)}

    @classmethod
    def _ledger_key(cls, owner: str) -> dict[str, dict[str, Any]]:
        return {"PK": cls._pk(owner), "SK": _s(_LEDGER_SK)}

    @staticmethod
    def _sort_key(sort_ms: int, task_id: str) -> str:
        if isinstance(sort_ms, bool) or not isinstance(sort_ms, int) or not (
            0 <= sort_ms <= _SORT_MAX
        ):
            raise InvalidParamsError(f"sort_ms must be an integer from 0 to {_SORT_MAX}")
        value = f"{sort_ms:0{_SORT_DIGITS}d}#{task_id}"
        if _utf8_len(value) > _SORT_KEY_LIMIT:
            raise InvalidParamsError(
                f"task id too long for a DynamoDB index key (at most {_SORT_KEY_LIMIT} bytes)"
            )
        return value

    @staticmethod
    def _check_expiry(expires_at_ms: int | None) -> None:
        if expires_at_ms is not None and (
            isinstance(expires_at_ms, bool)
            or not isinstance(expires_at_ms, int)
            or not 0 <= expires_at_ms < _NEVER
        ):
            raise InvalidParamsError(f"expires_at_ms must be an integer from 0 to {_NEVER - 1}")

    @staticmethod
    def _check_size(size: int, *, outcome: bool) -> None:
        if size <= ITEM_LIMIT_BYTES:
            return
        if outcome:
            raise ResultTooLargeError(
                f"The task's DynamoDB item would take {size} bytes with this outcome, over "
                f"DynamoDB's item limit of {ITEM_LIMIT_BYTES} bytes (400 KB)",
                data={"limit": ITEM_LIMIT_BYTES, "size": size},
            )
        raise InvalidParamsError(
            f"The task's DynamoDB item would take {size} bytes, over DynamoDB's item limit "
            f"of {ITEM_LIMIT_BYTES} bytes (400 KB); store less in its variables or result",
            data={"limit": ITEM_LIMIT_BYTES, "size": size},
        )

    def _full_item(
        self,
        key: RecordKey,
        data: bytes,
        version: int,
        expires_at_ms: int | None,
        sort_ms: int,
        outcome: bytes | None,
    ) -> dict[str, dict[str, Any]]:
        """A whole task item, checked against the item size limit."""
        self._check_expiry(expires_at_ms)
        item = self._key_attrs(key)
        item["lsk"] = _s(self._sort_key(sort_ms, key[1]))
        item["v"] = _n(version)
        fixed = self._frame_size(key, version) + _expiry_size(expires_at_ms)
        attr, size, _ = _place(fixed, len(data), None if outcome is None else len(outcome))
        self._check_size(size, outcome=outcome is not None)
        item[attr] = _b(bytes(data))
        if expires_at_ms is not None:
            item.update(_expiry_attrs(expires_at_ms))
        if outcome is not None:
            item["o"] = _b(bytes(outcome))
            item["os"] = _n(len(outcome))
        return item

    def _frame_size(self, key: RecordKey, version: int) -> int:
        """Charged size of an item's keys and version, which its index entry repeats.

        The entry is counted with the table's sort key, as AWS documents ("key values and
        projected attributes"); DynamoDB Local leaves that key out of its count, so we stay
        on the safe side of both by the sort key's few dozen bytes.
        """
        item = self._key_attrs(key)
        # lsk's size does not depend on sort_ms (fixed-width digits), only on the task id.
        item["lsk"] = _s(self._sort_key(0, key[1]))
        item["v"] = _n(version)
        return 2 * _item_size(item)

    def _update(
        self,
        key: RecordKey,
        data: bytes,
        attr: str,
        version: int,
        expires_at_ms: int | Keep | None,
        outcome: bytes | None,
        now: int,
        *,
        room: int | None = None,
        sort_key: str | None = None,
    ) -> dict[str, Any]:
        """The conditional ``UpdateItem`` of a compare-and-set from ``version - 1``.

        :param attr: where the record goes (``d`` or ``dx``; the other one is removed).
        :param room: when given, also require a stored outcome of at most this many bytes.
        """
        other = "dx" if attr == "d" else "d"
        sets = [f"#{attr} = :data", "#v = :v"]
        removes = [f"#{other}"]
        values: dict[str, Any] = {
            ":data": _b(bytes(data)),
            ":v": _n(version),
            ":expected": _n(version - 1),
            ":now": _n(now),
        }
        condition = "#v = :expected AND " + _LIVE
        if room is not None:
            condition += " AND (attribute_not_exists(#os) OR #os <= :room)"
            values[":room"] = _n(room)
        if sort_key is not None:
            sets.append("#lsk = :lsk")
            values[":lsk"] = _s(sort_key)
        if outcome is not None:
            sets += ["#o = :o", "#os = :os"]
            values[":o"], values[":os"] = _b(bytes(outcome)), _n(len(outcome))
        if expires_at_ms is None:
            removes += ["#x", "#ea"]
        elif expires_at_ms is not KEEP:
            assert isinstance(expires_at_ms, int)
            attrs = _expiry_attrs(expires_at_ms)
            sets += ["#x = :x", "#ea = :ea"]
            values[":x"], values[":ea"] = attrs["x"], attrs["expires_at"]
        return {
            **_params(
                self._table,
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
                ConditionExpression=condition,
                values=values,
            ),
            "Key": self._key_attrs(key),
        }

    def _remember(self, key: RecordKey, shape: _Shape | None) -> None:
        with self._lock:
            if shape is None:
                self._shapes.pop(key, None)
                return
            self._shapes[key] = shape
            self._shapes.move_to_end(key)
            while len(self._shapes) > _CACHE_SIZE:
                self._shapes.popitem(last=False)

    def _shape(self, key: RecordKey, version: int) -> _Shape | None:
        with self._lock:
            shape = self._shapes.get(key)
        return shape if shape is not None and shape.version == version else None

    def _hint(self, owner: str) -> _Ledger | None:
        with self._lock:
            return self._ledger_hints.get(owner)

    def _set_hint(self, owner: str, ledger: _Ledger) -> None:
        with self._lock:
            self._ledger_hints[owner] = ledger
            self._ledger_hints.move_to_end(owner)
            while len(self._ledger_hints) > _CACHE_SIZE:
                self._ledger_hints.popitem(last=False)

    # -- notification ----------------------------------------------------------------------

    def _written(self, key: RecordKey, version: int, event: bytes | None) -> None:
        """Record a successful write (version 0: a delete): wake waiters, then deliver the
        event."""
        with self._changed:
            self._note(key, version)
            self._changed.notify_all()
        if event is not None:
            self._listeners.publish(event)

    def _note(self, key: RecordKey, version: int) -> None:
        """Remember the latest version of ``key`` seen through this object (caller holds
        ``_changed``); bounded, oldest first out."""
        self._recent[key] = version
        self._recent.move_to_end(key)
        while len(self._recent) > _CACHE_SIZE * 4:
            self._recent.popitem(last=False)

    def _observed(self, key: RecordKey, version: int) -> None:
        """A read saw ``version``: newer knowledge than an older write's, never older (a
        write through this object that raced the read may already be recorded)."""
        with self._changed:
            seen = self._recent.get(key)
            if seen is None or version > seen:
                self._note(key, version)

    @staticmethod
    def _now(now_ms: int | None) -> int:
        return time.time_ns() // 1_000_000 if now_ms is None else now_ms

    @staticmethod
    def _live(item: Mapping[str, Any] | None, now: int) -> bool:
        if not item:
            return False
        expires = _int(item, "x")
        return expires is None or expires > now

    def _record(self, key: RecordKey, item: Mapping[str, Any], *, outcome: bool) -> VersionedRecord:
        blob = item.get("o") if outcome else None
        return VersionedRecord(
            key=key,
            data=_data(item),
            version=int(item["v"]["N"]),
            expires_at_ms=_int(item, "x"),
            sort_ms=int(item["lsk"]["S"][:_SORT_DIGITS]),
            outcome=None if blob is None else bytes(blob["B"]),
        )

    # -- the contract ----------------------------------------------------------------------

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """Return the live record at ``key``: one strongly consistent ``GetItem`` that leaves
        the outcome in DynamoDB unless ``include_outcome``.

        :raises RecordNotFound: absent or expired.
        :raises BackendError: DynamoDB failed.
        """
        now = self._now(now_ms)
        try:
            item_key = self._key_attrs(key)
        except InvalidParamsError:
            raise RecordNotFound(key) from None  # DynamoDB cannot hold such a key
        projection = "#d, #dx, #v, #x, #lsk, #os" + (", #o" if include_outcome else "")
        response = self._send(
            "get_item",
            {
                **_params(self._table, ProjectionExpression=projection),
                "Key": item_key,
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        if not item or not self._live(item, now):
            raise RecordNotFound(key)
        record = self._record(key, item, outcome=include_outcome)
        self._remember(
            key, _Shape(record.version, _expiry_size(record.expires_at_ms), _int(item, "os"))
        )
        self._observed(key, record.version)
        return record

    def put(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        *,
        sort_ms: int | None = None,
        outcome: bytes | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Write unconditionally (atomically); return the new version.

        Costs a consistent read and a conditional write (a transaction with the quota ledger
        when it inserts or changes the expiry); the store itself never calls it.

        :raises InvalidParamsError: the item would exceed DynamoDB's item size limit.
        :raises ConflictError: concurrent writers kept winning for ``retry_budget_s``.
        :raises BackendError: DynamoDB failed.
        """
        now = self._now(now_ms)
        self._check_expiry(expires_at_ms)
        last: Exception | None = None
        attempts = 0
        for attempts in self._retries():  # noqa: B007 - read after the loop
            current = self._send(
                "get_item",
                {
                    **_params(self._table, ProjectionExpression="#v, #x, #lsk, #os"),
                    "Key": self._key_attrs(key),
                    "ConsistentRead": True,
                },
            ).get("Item")
            try:
                if self._live(current, now):
                    assert current is not None
                    version = self._put_over(
                        key, data, expires_at_ms, sort_ms, outcome, current, now
                    )
                else:
                    version = self._put_new(
                        key, data, expires_at_ms, now if sort_ms is None else sort_ms, outcome, now
                    )
            except (_ConditionFailed, _Busy) as exc:
                last = exc  # someone wrote between our read and write: read again
                continue
            except _Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed" or exc.transient:
                    last = exc
                    continue
                raise self._error("transact_write_items", exc.error) from exc.error
            self._written(key, version, event)
            return version
        self._gave_up(key, attempts, last)

    def _put_over(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        sort_ms: int | None,
        outcome: bytes | None,
        current: Mapping[str, Any],
        now: int,
    ) -> int:
        """Overwrite a live item at its current version, keeping what ``put`` keeps."""
        version = int(current["v"]["N"]) + 1
        outcome_length = len(outcome) if outcome is not None else _int(current, "os")
        fixed = self._frame_size(key, version) + _expiry_size(expires_at_ms)
        attr, size, _ = _place(fixed, len(data), outcome_length)
        self._check_size(size, outcome=outcome is not None)
        task = self._update(
            key, data, attr, version, expires_at_ms, outcome, now,
            sort_key=None if sort_ms is None else self._sort_key(sort_ms, key[1]),
        )
        if _int(current, "x") == expires_at_ms:
            self._send("update_item", task)
        else:
            # The expiry moves: the ledger's expiry bounds may no longer hold.
            self._send("transact_write_items", self._transaction(task, self._dirty(key[0])))
        self._remember(key, _Shape(version, _expiry_size(expires_at_ms), outcome_length))
        return version

    def _put_new(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        sort_ms: int,
        outcome: bytes | None,
        now: int,
    ) -> int:
        """Insert over an absent or expired key, counting the record in the quota ledger."""
        item = self._full_item(key, data, 1, expires_at_ms, sort_ms, outcome)
        task = {
            **_params(
                self._table,
                ConditionExpression="attribute_not_exists(#pk) OR #x <= :now",
                values={":now": _n(now)},
            ),
            "Item": item,
        }
        ledger = self._dirty(key[0], insert=True)
        self._send("transact_write_items", self._transaction(task, ledger))
        self._remember(
            key, _Shape(1, _expiry_size(expires_at_ms), None if outcome is None else len(outcome))
        )
        return 1

    def _dirty(self, owner: str, *, insert: bool = False) -> dict[str, Any]:
        """The ledger update of a write outside ``create``: may break the ledger's expiry
        bounds, so mark it for repair and keep it from expiring until then."""
        add = "ADD #v :one" + (", #n :one" if insert else "")
        return {
            **_params(
                self._table,
                UpdateExpression=f"SET #dt = :true, #lx = :never REMOVE #ea {add}",
                values={":true": {"BOOL": True}, ":never": _n(_NEVER), ":one": _n(1)},
            ),
            "Key": self._ledger_key(owner),
        }

    def _transaction(self, first: dict[str, Any], ledger: dict[str, Any]) -> dict[str, Any]:
        kind = "Update" if "UpdateExpression" in first else "Put"
        first = {**first, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        ledger = {**ledger, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        return {
            "TransactItems": [{kind: first}, {"Update": ledger}],
            # Idempotent under boto3's retries: a commit whose answer was lost is not re-applied.
            "ClientRequestToken": uuid.uuid4().hex,
        }

    def put_if_version(
        self,
        key: RecordKey,
        data: bytes,
        expected: int,
        expires_at_ms: int | Keep | None = KEEP,
        *,
        outcome: bytes | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Compare-and-set: one conditional ``UpdateItem`` (a transaction with the quota
        ledger when ``expires_at_ms`` is given); return the new version.

        :raises VersionConflict: with the actual version (0 when absent or expired), read from
            the failed condition's ALL_OLD item, not by another request.
        :raises InvalidParamsError: the item would exceed DynamoDB's item size limit
            (:class:`ResultTooLargeError` when the new outcome does not fit).
        :raises BackendError: DynamoDB failed.
        """
        now = self._now(now_ms)
        try:
            self._key_attrs(key)
        except InvalidParamsError:
            raise VersionConflict(key, expected, 0) from None  # DynamoDB cannot hold such a key
        if expires_at_ms is not KEEP:
            self._check_expiry(expires_at_ms)
        version = expected + 1
        shape = self._shape(key, expected)
        if expires_at_ms is not KEEP:
            expiry_size = _expiry_size(expires_at_ms)
        elif shape is not None:
            expiry_size = shape.expiry_size
        else:
            expiry_size = _MAX_EXPIRY_SIZE  # the stored expiry is unknown: its largest size
        fixed = self._frame_size(key, version) + expiry_size
        # The outcome the item will hold: the new one, or the stored one as the get before
        # this write saw it. A kept outcome is also guarded in the condition (a safety net
        # for one this object has not seen, or saw at another incarnation of the key): a
        # refusal tells us its real size and we decide again, so DynamoDB never has to reject
        # an oversized item.
        known = outcome is not None or shape is not None
        if outcome is not None:
            outcome_length: int | None = len(outcome)
        else:
            outcome_length = shape.outcome_length if shape is not None else None
        last: Exception | None = None
        attempts = 0
        for attempts in self._retries():  # noqa: B007 - read after the loop
            attr, size, bare = _place(fixed, len(data), outcome_length)
            self._check_size(size, outcome=outcome is not None)
            room = None if outcome is not None else _max_outcome_length(ITEM_LIMIT_BYTES - bare)
            task = self._update(key, data, attr, version, expires_at_ms, outcome, now, room=room)
            try:
                if expires_at_ms is KEEP:
                    self._send(
                        "update_item", {**task, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
                    )
                else:
                    # The expiry moves: the ledger's expiry bounds may no longer hold.
                    self._send("transact_write_items", self._transaction(task, self._dirty(key[0])))
            except _Busy as exc:
                last = exc
                continue
            except _ConditionFailed as exc:
                if self._explain(key, expected, exc.item, now, data, exc.retried, room):
                    break  # our own write had landed before boto3 retried it
                outcome_length, known = _int(exc.item or {}, "os"), True
                last = exc
                continue
            except _Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed":
                    self._explain(key, expected, exc.item(0), now, data, False, room)
                    outcome_length, known = _int(exc.item(0) or {}, "os"), True
                elif not exc.transient:
                    raise self._error("transact_write_items", exc.error) from exc.error
                last = exc
                continue
            break
        else:
            self._gave_up(key, attempts, last)
        self._remember(key, _Shape(version, expiry_size, outcome_length) if known else None)
        self._written(key, version, event)
        return version

    def _explain(
        self,
        key: RecordKey,
        expected: int,
        item: Mapping[str, Any] | None,
        now: int,
        data: bytes,
        retried: bool,
        room: int | None,
    ) -> bool:
        """Explain a failed compare-and-set from its ALL_OLD item.

        :param room: the stored-outcome size guard the write carried, if any.
        :returns: ``True`` when the item shows our own write already landed (boto3 retried a
            request whose answer was lost); ``False`` when only the size guard failed (the
            caller now knows the stored outcome's size and decides again).
        :raises VersionConflict: anything else: the version moved, or the record is gone.
        """
        if not self._live(item, now):
            raise VersionConflict(key, expected, 0)
        assert item is not None
        actual = int(item["v"]["N"])
        if retried and actual == expected + 1 and _data(item) == bytes(data):
            return True
        if actual == expected and room is not None and (_int(item, "os") or 0) > room:
            self._remember(key, None)
            return False
        raise VersionConflict(key, expected, actual)

    def create(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        *,
        sort_ms: int,
        max_live: int | None = None,
        event: bytes | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Insert a new record (version 1) if ``key`` is not live and the owner holds fewer
        than ``max_live`` live records: one ``TransactWriteItems`` of the task and the
        owner's quota ledger (plus a repair of the ledger when it may overcount, see the
        module docstring).

        :raises VersionConflict: the key is live (``actual`` = its version).
        :raises QuotaExceededError: the owner already holds ``max_live`` live records.
        :raises InvalidParamsError: the item would exceed DynamoDB's item size limit.
        :raises ConflictError: concurrent creates kept winning for ``retry_budget_s``.
        :raises BackendError: DynamoDB failed.
        """
        now = self._now(now_ms)
        item = self._full_item(key, data, 1, expires_at_ms, sort_ms, None)
        task = {
            **_params(
                self._table,
                ConditionExpression="attribute_not_exists(#pk) OR #x <= :now",
                values={":now": _n(now)},
            ),
            "Item": item,
        }
        owner = key[0]
        hint = self._hint(owner)
        last: Exception | None = None
        attempts = 0
        for attempts in self._retries():  # noqa: B007 - read after the loop
            ledger_update = self._ledger_insert(owner, expires_at_ms, max_live, hint)
            try:
                self._send("transact_write_items", self._transaction(task, ledger_update))
            except _Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed":
                    existing = exc.item(0)
                    raise VersionConflict(
                        key, 0, int(existing["v"]["N"]) if existing and "v" in existing else 1
                    ) from None
                if exc.code(1) == "ConditionalCheckFailed":
                    ledger = _Ledger.parse(exc.item(1))
                    self._set_hint(owner, ledger)
                    hint = ledger
                    if max_live is not None and ledger.counted >= max_live:
                        if not self._may_overcount(ledger, now) or not self._repair(
                            owner, ledger, now, max_live
                        ):
                            raise QuotaExceededError(
                                f"Task quota exceeded: at most {max_live} live tasks per owner",
                                data={"limit": max_live},
                            ) from None
                        hint = self._hint(owner)
                    # else: our guess of the ledger's expiry bounds was wrong; now we know.
                    last = exc
                    continue
                if exc.transient:
                    last = exc
                    continue
                raise self._error("transact_write_items", exc.error) from exc.error
            break
        else:
            self._gave_up(key, attempts, last)
        self._remember(key, _Shape(1, _expiry_size(expires_at_ms), None))
        if hint is not None and expires_at_ms is not None:
            self._set_hint(
                owner,
                hint._replace(
                    max_expiry=max(hint.max_expiry or 0, expires_at_ms),
                    min_expiry=min(hint.min_expiry, expires_at_ms)
                    if hint.min_expiry is not None
                    else expires_at_ms,
                ),
            )
        self._written(key, 1, event)
        return 1

    def _ledger_insert(
        self, owner: str, expires_at_ms: int | None, max_live: int | None, hint: _Ledger | None
    ) -> dict[str, Any]:
        """The ledger update of a create: count the task, keep the ledger's expiry bounds.

        DynamoDB's update expressions have no min/max, so the bounds are kept with
        conditions: the update is built for what we believe the ledger holds, and a wrong
        belief fails the condition and tells us (ALL_OLD) what it does hold. Usually tasks
        share one TTL and are created in order, so the newest expiry raises ``lx`` and leaves
        ``nx``: the default belief.
        """
        values: dict[str, Any] = {":one": _n(1)}
        conditions: list[str] = []
        sets: list[str] = []
        removes: list[str] = []
        if max_live is not None:
            conditions.append("(attribute_not_exists(#n) OR #n < :max)")
            values[":max"] = _n(max_live)
        if expires_at_ms is None:
            sets.append("#lx = :never")
            removes.append("#ea")
            values[":never"] = _n(_NEVER)
        else:
            values[":e"] = _n(expires_at_ms)
            raise_max = hint is None or hint.max_expiry is None or hint.max_expiry <= expires_at_ms
            lower_min = hint is not None and hint.min_expiry is not None and (
                hint.min_expiry > expires_at_ms
            )
            if raise_max:
                conditions.append("(attribute_not_exists(#lx) OR #lx <= :e)")
                sets += ["#lx = :e", "#ea = :ea"]
                values[":ea"] = _n(math.ceil(expires_at_ms / 1000) + _LEDGER_GRACE_S)
            else:
                conditions.append("#lx > :e")
            if lower_min:
                conditions.append("#nx > :e")
                sets.append("#nx = :e")
            else:
                conditions.append("(attribute_not_exists(#nx) OR #nx <= :e)")
                sets.append("#nx = if_not_exists(#nx, :e)")
        update = "SET " + ", ".join(sets)
        if removes:
            update += " REMOVE " + ", ".join(removes)
        update += " ADD #n :one, #v :one"
        return {
            **_params(
                self._table,
                UpdateExpression=update,
                ConditionExpression=" AND ".join(conditions) if conditions else None,
                values=values,
            ),
            "Key": self._ledger_key(owner),
        }

    @staticmethod
    def _may_overcount(ledger: _Ledger, now: int) -> bool:
        """Whether the ledger's count may include phantoms (deleted or expired tasks)."""
        return ledger.dirty or (ledger.min_expiry is not None and ledger.min_expiry <= now)

    def _repair(self, owner: str, ledger: _Ledger, now: int, max_live: int) -> bool:
        """Recount ``owner``'s live tasks into the ledger; return whether a slot is free.

        The recount is stored only if the ledger is still at the version we started from: a
        create that slipped in between changed it, and its task may be missing from our count.
        Losing that race returns ``True`` (the caller simply retries its create).
        """
        count = 0
        earliest: int | None = None
        latest: int | None = None
        start: dict[str, Any] | None = None
        while True:
            params = {
                **_params(
                    self._table,
                    KeyConditionExpression="#pk = :pk",
                    FilterExpression=_LIVE,
                    ProjectionExpression="#lsk, #x",
                    values={":pk": self._ledger_key(owner)["PK"], ":now": _n(now)},
                ),
                "IndexName": _INDEX,
                "ConsistentRead": True,
            }
            if start is not None:
                params["ExclusiveStartKey"] = start
            page = self._send("query", params)
            for item in page.get("Items", []):
                count += 1
                expires = _int(item, "x")
                stamp = _NEVER if expires is None else expires
                latest = stamp if latest is None else max(latest, stamp)
                if expires is not None:
                    earliest = expires if earliest is None else min(earliest, expires)
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        sets = ["#n = :n", "#v = :v"]
        removes = ["#dt"]
        values: dict[str, Any] = {":n": _n(count), ":v": _n((ledger.version or 0) + 1)}
        if earliest is None:
            removes.append("#nx")
        else:
            sets.append("#nx = :nx")
            values[":nx"] = _n(earliest)
        if latest is None:
            # Nothing live: let the ledger lapse a grace period from now.
            removes.append("#lx")
            sets.append("#ea = :ea")
            values[":ea"] = _n(math.ceil(now / 1000) + _LEDGER_GRACE_S)
        elif latest >= _NEVER:
            sets.append("#lx = :lx")
            removes.append("#ea")
            values[":lx"] = _n(_NEVER)
        else:
            sets += ["#lx = :lx", "#ea = :ea"]
            values[":lx"] = _n(latest)
            values[":ea"] = _n(math.ceil(latest / 1000) + _LEDGER_GRACE_S)
        if ledger.version is None:
            condition = "attribute_not_exists(#v)"
        else:
            condition = "#v = :old"
            values[":old"] = _n(ledger.version)
        try:
            self._send(
                "update_item",
                {
                    **_params(
                        self._table,
                        UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
                        ConditionExpression=condition,
                        values=values,
                    ),
                    "Key": self._ledger_key(owner),
                },
            )
        except (_ConditionFailed, _Busy):
            return True
        self._set_hint(
            owner, _Ledger((ledger.version or 0) + 1, count, earliest, latest, False)
        )
        return count < max_live

    def delete(self, key: RecordKey) -> bool:
        """Remove ``key`` and its outcome; return ``True`` if an item was removed.

        One transaction that also marks the owner's ledger for repair (the task may have been
        counted), so the freed slot is usable at once.

        :raises BackendError: DynamoDB failed.
        """
        try:
            item_key = self._key_attrs(key)
        except InvalidParamsError:
            return False  # DynamoDB cannot hold such a key
        task = {
            **_params(self._table, ConditionExpression="attribute_exists(#pk)"),
            "Key": item_key,
        }
        ledger = {
            **_params(
                self._table,
                UpdateExpression="SET #dt = :true ADD #v :one",
                ConditionExpression="attribute_exists(#pk)",
                values={":true": {"BOOL": True}, ":one": _n(1)},
            ),
            "Key": self._ledger_key(key[0]),
        }
        last: Exception | None = None
        attempts = 0
        removed = False
        for attempts in self._retries():  # noqa: B007 - read after the loop
            try:
                self._send(
                    "transact_write_items",
                    {
                        "TransactItems": [{"Delete": task}, {"Update": ledger}],
                        "ClientRequestToken": uuid.uuid4().hex,
                    },
                )
                removed = True
            except _Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed":
                    removed = False
                elif exc.code(1) == "ConditionalCheckFailed":
                    # No ledger: it lapsed after every counted task had long expired, so the
                    # task is a phantom already and nothing needs repairing.
                    try:
                        response = self._send(
                            "delete_item",
                            {"TableName": self._table, "Key": item_key, "ReturnValues": "ALL_OLD"},
                        )
                    except _Busy as busy:
                        last = busy
                        continue
                    removed = bool(response.get("Attributes"))
                elif exc.transient:
                    last = exc
                    continue
                else:
                    raise self._error("transact_write_items", exc.error) from exc.error
            break
        else:
            self._gave_up(key, attempts, last)
        self._remember(key, None)
        if removed:
            self._written(key, 0, None)
        return removed

    def list_by_prefix(
        self,
        owner: str,
        after: ListPosition | None = None,
        limit: int = 50,
        *,
        now_ms: int | None = None,
    ) -> list[VersionedRecord]:
        """Return up to ``limit`` live records of ``owner``, newest first, strictly after
        ``after``: one strongly consistent ``Query`` of the listing index per page (more only
        when expired items thinned it), outcomes never read; records too large for the index
        add one ``BatchGetItem``.

        :raises RecordNotFound: ``after`` names a record that is no longer live.
        :raises BackendError: DynamoDB failed.
        """
        now = self._now(now_ms)
        anchor: str | None = None
        if after is not None:
            try:
                anchor = self._sort_key(after.sort_ms, after.task_id)
                _utf8_len(anchor)
            except (InvalidParamsError, UnicodeEncodeError, TypeError):
                # No record can have this position: the cursor is stale by definition.
                raise RecordNotFound((owner, str(after.task_id))) from None
        elif limit <= 0:
            return []
        try:
            self._pk(owner)
        except InvalidParamsError:
            # DynamoDB cannot hold such an owner: it has no records, and no anchor is live.
            if after is not None:
                raise RecordNotFound((owner, str(after.task_id))) from None
            return []
        for _ in range(8):
            rows = self._query_page(owner, anchor, limit, now)
            unindexed = [row for row in rows if "d" not in row]
            if unindexed and not self._fill_unindexed(owner, unindexed, now):
                continue  # a large record changed between the two requests: list again
            return [
                self._record((owner, row["lsk"]["S"][_SORT_DIGITS + 1:]), row, outcome=False)
                for row in rows
            ]
        raise ConflictError("The listing kept changing under concurrent writes; try again")

    def _query_page(
        self, owner: str, anchor: str | None, limit: int, now: int
    ) -> list[dict[str, Any]]:
        """The page's index entries (keys, ``lsk``, ``d``, ``v``, ``x``), anchor checked."""
        values: dict[str, Any] = {":pk": self._ledger_key(owner)["PK"], ":now": _n(now)}
        key_condition = "#pk = :pk"
        if anchor is not None:
            key_condition += " AND #lsk <= :anchor"
            values[":anchor"] = _s(anchor)
        base = {
            **_params(
                self._table,
                KeyConditionExpression=key_condition,
                FilterExpression=_LIVE,
                values=values,
            ),
            "IndexName": _INDEX,
            # Index-only by definition: never a fetch from the table (which would read, and
            # bill, the outcomes stored there).
            "Select": "ALL_PROJECTED_ATTRIBUTES",
            "ConsistentRead": True,
            "ScanIndexForward": False,
        }
        rows: list[dict[str, Any]] = []
        need_anchor = anchor is not None
        start: dict[str, Any] | None = None
        while True:
            wanted = max(limit, 0) - len(rows) + (1 if need_anchor else 0)
            params = {**base, "Limit": max(wanted, 1)}
            if start is not None:
                params["ExclusiveStartKey"] = start
            response = self._send("query", params)
            items = response.get("Items", [])
            if need_anchor:
                # The query starts at the anchor inclusive and filters expired items, so a
                # live anchor is always the first item returned.
                if not items or items[0]["lsk"]["S"] != anchor:
                    raise RecordNotFound((owner, str(anchor)[_SORT_DIGITS + 1:]))
                items = items[1:]
                need_anchor = False
            rows.extend(items[: max(limit, 0) - len(rows)])
            start = response.get("LastEvaluatedKey")
            if len(rows) >= limit or not start:
                return rows

    def _fill_unindexed(self, owner: str, rows: list[dict[str, Any]], now: int) -> bool:
        """Read the records kept out of the index (``dx``) into ``rows``; ``False`` if one of
        them is no longer the record the index showed (the caller lists again)."""
        pk = self._ledger_key(owner)["PK"]
        wanted = {"TASK#" + encode_key_part(row["lsk"]["S"][_SORT_DIGITS + 1:]): row
                  for row in rows}
        found: dict[str, dict[str, Any]] = {}
        keys = [{"PK": pk, "SK": _s(sk)} for sk in wanted]
        projection = "#sk, #lsk, #d, #dx, #v, #x"
        while keys:
            batch, keys = keys[:100], keys[100:]
            pending: dict[str, Any] = {
                self._table: {
                    "Keys": batch,
                    "ConsistentRead": True,
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": {p: _NAMES[p] for p in projection.split(", ")},
                }
            }
            for _ in self._retries():
                response = self._send("batch_get_item", {"RequestItems": pending})
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["SK"]["S"]] = item
                # Keys DynamoDB did not get to (throttling, size): ask again after a backoff.
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise BackendError("DynamoDB kept leaving BatchGetItem keys unprocessed")
        for sk, row in wanted.items():
            item = found.get(sk)
            if item is None or not self._live(item, now) or item["lsk"] != row["lsk"]:
                return False
            row.update(item)
        return True

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """Delete every expired item; return how many.

        DynamoDB's TTL does this by itself (within days), and expired items are invisible in
        the meantime, so this is rarely needed. It costs a strongly consistent ``Scan`` of
        the listing index (every task item, never outcomes) plus one conditional
        ``DeleteItem`` per expired item: O(table), unlike the other backends.

        :raises BackendError: DynamoDB failed.
        """
        now = self._now(now_ms)
        removed = 0
        start: dict[str, Any] | None = None
        while True:
            params = {
                **_params(
                    self._table,
                    FilterExpression="#x <= :now",
                    ProjectionExpression="#pk, #sk, #lsk",
                    values={":now": _n(now)},
                ),
                "IndexName": _INDEX,
                "ConsistentRead": True,
            }
            if start is not None:
                params["ExclusiveStartKey"] = start
            response = self._send("scan", params)
            for item in response.get("Items", []):
                try:
                    # Re-checked at delete time: the key may have been created anew since.
                    self._send(
                        "delete_item",
                        {
                            **_params(self._table, ConditionExpression="#x <= :now",
                                      values={":now": _n(now)}),
                            "Key": {"PK": item["PK"], "SK": item["SK"]},
                        },
                    )
                except (_ConditionFailed, _Busy):
                    continue
                removed += 1
            start = response.get("LastEvaluatedKey")
            if not start:
                return removed

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """Block until a write through this object moves ``key`` past ``version`` (or
        deletes it), or ``timeout_s``.

        Writes by other processes (or other backend objects) are not noticed: the call then
        simply returns after ``timeout_s`` and the caller re-reads. A write through this
        object that finished after the caller read ``version`` is never missed.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while True:
                seen = self._recent.get(key)
                # Only news wakes: a newer version, or a delete. An older version recorded
                # here is stale knowledge (another process wrote since), and returning on it
                # would make the caller re-read in a busy loop.
                if seen is not None and (seen > version or (seen == 0 and version != 0)):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return
                self._changed.wait(remaining)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Deliver the ``event`` of every write made through this object to ``listener``
        (on the writer's thread); return a function that removes it."""
        return self._listeners.add(listener)

    def close(self) -> None:
        """Drop listeners, wake waiters and close the client if this object built it.
        Idempotent; further requests raise ``ConfigurationError``."""
        if self._closed:
            return
        self._closed = True
        self._listeners.clear()
        with self._changed:
            self._changed.notify_all()
        if self._owns_client:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing sockets must never fail a shutdown
                _log.debug("closing the boto3 client failed", exc_info=True)


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _make_client(
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
    backs off under throttling instead of hammering the table)."""
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
