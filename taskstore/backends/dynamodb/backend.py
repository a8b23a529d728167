"""The DynamoDB backend: single table, conditional writes, native TTL, enforced item size
(DESIGN §8).

Layout
------

One table, one item per task, one *quota ledger* item per owner (:mod:`.ledger`), all of an
owner's items in the owner's partition (``O``/``T`` are the owner and task id through
:func:`~taskstore.backends.base.encode_key_part`)::

    PK = OWNER#O   SK = TASK#T   the task
        lsk         S  listing sort key: sort_ms zero-padded to 16 digits, "#", the raw task id
        v           N  version (1, 2, ...)
        d           B  the record bytes, whenever the item still fits with them indexed
        dx          B  the record bytes otherwise (too large to copy into the index)
        o, os       B, N  the outcome blob and its length (absent until an outcome is written)
        x           N  exact expiry, epoch ms (absent: never expires)
        expires_at  N  the native TTL attribute: ceil(x / 1000), epoch seconds
        w           B  the write token of the last write (a write sent again knows itself)
    PK = OWNER#O   SK = QUOTA    the owner's quota ledger

    LSI "by_created": PK + lsk, projecting d, v and x (never o)

Reads: :meth:`~DynamoDbBackend.get` is one strongly consistent ``GetItem`` whose projection
leaves the outcome out unless asked for; listing pages are queries of the LSI, and a scan
across owners (:meth:`~DynamoDbBackend.scan`) is a ``Scan`` of it (:mod:`.listing`).
Item sizes are checked before every write (:mod:`.items`).

Writes (:mod:`.writes`) are all conditional; every atomicity guarantee comes from DynamoDB's
conditional writes and transactions. Expired items (DynamoDB's sweeper may take days) are
filtered from every read and count as absent in every condition; expiry is judged against the
caller's ``now_ms`` (the store's clock), never DynamoDB's.

Faults (:mod:`.client`): boto3 retries throttling and transport errors (``max_attempts`` per
request); a request boto3 gave up on is sent again, unchanged, until the retry deadline of the
store operation making it (``StoreConfig.retry_deadline_ms``). Every write carries a write
token (``w``) and every transaction a ``ClientRequestToken``, so a write sent again after its
answer was lost is recognised and answers as its first attempt would have. A call that still
fails raises ``BackendError`` whose ``applied`` is ``False`` when no attempt can have reached
DynamoDB (refused or timed-out connections, throttling), else ``None``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from taskstore.backends._options import Converter, to_float, to_int, to_optional_str, url_options
from taskstore.backends.base import (
    KEEP,
    EventListener,
    Keep,
    ListPosition,
    RecordKey,
    ScanPage,
    VersionedRecord,
    check_scan_limit,
)
from taskstore.backends.base import now_ms as _now_ms
from taskstore.backends.dynamodb import admin, items, listing
from taskstore.backends.dynamodb.client import Requests, make_client
from taskstore.backends.dynamodb.items import Shape, int_attr, params
from taskstore.backends.dynamodb.waits import Changes
from taskstore.backends.dynamodb.writes import Writes
from taskstore.errors import ConfigurationError, InvalidParamsError, RecordNotFound

__all__ = ["DynamoDbBackend"]

_log = logging.getLogger("taskstore.backends.dynamodb")

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")

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
    :param max_attempts: attempts per request, retries included (boto3 adaptive mode); the
        backend sends a request boto3 gave up on again until the retry deadline.
    :param max_pool_connections: HTTP connections kept for concurrent threads.
    :param retry_budget_s: how long a write keeps retrying transactions cancelled by concurrent
        writers or throttling before it gives up (a budget for conflicts; outages are ridden
        out until the store's ``retry_deadline_ms``).
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
        if client is None:
            client = make_client(
                region=region,
                endpoint_url=endpoint_url,
                profile=profile,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
                max_pool_connections=max_pool_connections,
            )
        self._requests = Requests(client, table_name, float(retry_budget_s))
        self._changes = Changes()
        self._writes = Writes(self._requests, self._changes)
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
        return self._requests.client

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DynamoDbBackend:
        """Build from ``dynamodb://TABLE?region=...&endpoint_url=...``; keyword options win.

        Query parameters and keywords: ``region``, ``endpoint_url``, ``profile``,
        ``connect_timeout``, ``read_timeout``, ``max_attempts``, ``max_pool_connections``,
        ``retry_budget_s``; keyword only: ``client``. How long calls retry transient faults
        is the store's ``retry_deadline_ms`` (a query option of :func:`taskstore.open` for
        every URL), handed to each call; see :func:`~taskstore.backends.base.retrying_until`.

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
        converted = url_options(url, options, _OPTIONS)
        client = converted.pop("client", None)
        return cls(table, client, **converted)

    @staticmethod
    def table_definition(name: str) -> dict[str, Any]:
        """The ``CreateTable`` parameters of the table this backend needs (for infrastructure
        as code: CloudFormation, Terraform and CDK mirror them): on-demand billing, the key
        schema and the ``by_created`` listing index of the module docstring. TTL on
        ``expires_at`` is a separate ``UpdateTimeToLive`` call."""
        return admin.table_definition(name)

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
        admin.create_table(name, endpoint_url=endpoint_url, region=region, client=client, ttl=ttl)

    # -- the contract ----------------------------------------------------------------------

    def get(
        self, key: RecordKey, *, include_outcome: bool = False, now_ms: int | None = None
    ) -> VersionedRecord:
        """Return the live record at ``key``: one strongly consistent ``GetItem`` that leaves
        the outcome in DynamoDB unless ``include_outcome``.

        :raises RecordNotFound: absent or expired.
        :raises BackendError: DynamoDB failed.
        """
        now = _now_ms(now_ms)
        try:
            item_key = items.key_attrs(key)
        except InvalidParamsError:
            raise RecordNotFound(key) from None  # DynamoDB cannot hold such a key
        projection = "#d, #dx, #v, #x, #lsk, #os" + (", #o" if include_outcome else "")
        response = self._requests.send(
            "get_item",
            {
                **params(self._table, ProjectionExpression=projection),
                "Key": item_key,
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        if not item or not items.is_live(item, now):
            raise RecordNotFound(key)
        record = items.to_record(key, item, outcome=include_outcome)
        self._writes.remember(
            key,
            Shape(record.version, items.expiry_size(record.expires_at_ms), int_attr(item, "os")),
        )
        self._changes.observed(key, record.version)
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
        now = _now_ms(now_ms)
        return self._writes.put(key, data, expires_at_ms, sort_ms, outcome, event, now)

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
        now = _now_ms(now_ms)
        return self._writes.put_if_version(
            key, data, expected, expires_at_ms, outcome, event, now
        )

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
        owner's quota ledger (plus a repair of the ledger when it may overcount, see
        :mod:`.ledger`).

        :raises VersionConflict: the key is live (``actual`` = its version).
        :raises QuotaExceededError: the owner already holds ``max_live`` live records.
        :raises InvalidParamsError: the item would exceed DynamoDB's item size limit.
        :raises ConflictError: concurrent creates kept winning for ``retry_budget_s``.
        :raises BackendError: DynamoDB failed.
        """
        now = _now_ms(now_ms)
        return self._writes.create(key, data, expires_at_ms, sort_ms, max_live, event, now)

    def delete(self, key: RecordKey) -> bool:
        """Remove ``key`` and its outcome; return ``True`` if an item was removed.

        One transaction that also marks the owner's ledger for repair (the task may have been
        counted), so the freed slot is usable at once.

        :raises BackendError: DynamoDB failed.
        """
        return self._writes.delete(key)

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
        return listing.list_page(self._requests, owner, after, limit, _now_ms(now_ms))

    def scan(
        self, cursor: str | None = None, limit: int = 100, *, now_ms: int | None = None
    ) -> ScanPage:
        """See :meth:`ScanningBackend.scan <taskstore.backends.base.ScanningBackend.scan>`.

        A full scan: DynamoDB has no order across partitions, so a pass is a strongly
        consistent ``Scan`` of the listing index (every task's index entry, expired ones
        included, never quota ledgers or outcomes), in DynamoDB's order; the cursor is the
        ``LastEvaluatedKey``. A page costs up to 8 ``Scan`` requests, each reading at most
        the records the page still lacks (fewer when expired items thin it: the page then
        comes back short, or empty, with a cursor), plus one ``BatchGetItem`` when it holds
        records too large for the index. Requests retry transient faults until the
        operation's retry deadline.

        :raises InvalidCursorError: a cursor no DynamoDB backend issued.
        :raises InvalidParamsError: ``limit`` below 1.
        :raises ConflictError: large records kept changing between the scan and their read.
        :raises BackendError: DynamoDB failed.
        """
        check_scan_limit(limit)
        return listing.scan_page(self._requests, cursor, limit, _now_ms(now_ms))

    def cleanup_expired(self, now_ms: int | None = None) -> int:
        """Delete every expired item; return how many.

        DynamoDB's TTL does this by itself (within days), and expired items are invisible in
        the meantime, so this is rarely needed. It costs a strongly consistent ``Scan`` of
        the listing index (every task item, never outcomes) plus one conditional
        ``DeleteItem`` per expired item: O(table), unlike the other backends.

        :raises BackendError: DynamoDB failed.
        """
        return listing.cleanup(self._requests, _now_ms(now_ms))

    def wait_for_change(self, key: RecordKey, version: int, timeout_s: float) -> None:
        """Block until a write through this object moves ``key`` past ``version`` (or
        deletes it), or ``timeout_s``.

        Writes by other processes (or other backend objects) are not noticed: the call then
        simply returns after ``timeout_s`` and the caller re-reads. A write through this
        object that finished after the caller read ``version`` is never missed.
        """
        self._changes.wait(key, version, timeout_s)

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Deliver the ``event`` of every write made through this object to ``listener``
        (on the writer's thread); return a function that removes it."""
        return self._changes.add_listener(listener)

    def close(self) -> None:
        """Drop listeners, wake waiters and close the client if this object built it.
        Idempotent; further requests raise ``ConfigurationError``."""
        if self._closed:
            return
        self._closed = True
        self._requests.closed = True
        self._changes.close()
        if self._owns_client:
            try:
                self._requests.client.close()
            except Exception:  # noqa: BLE001 - closing sockets must never fail a shutdown
                _log.debug("closing the boto3 client failed", exc_info=True)
