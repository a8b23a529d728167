"""Reads that walk the DynamoDB backend's listing index: an owner's pages, the scan across
owners, and the cleanup scan.

A page is one strongly consistent ``Query`` of the ``by_created`` LSI, newest first
(``ScanIndexForward=False``; the zero-padded ``lsk`` orders by ``sort_ms``, then by task id,
both descending, exactly like every other backend), answered from the index alone: outcomes are
never in it, so stored results cost a listing nothing, in bytes or in read capacity. Keyset
pagination starts the query *at* the anchor inclusive, so one request both proves the anchor is
still live (a stale one raises ``RecordNotFound``) and fetches the page; it pages further only
when expired items thinned it. Records too large for the index (``dx``) cost their page one
``BatchGetItem``.

The scan across owners (:func:`scan_page`) is a strongly consistent ``Scan`` of the same
index: DynamoDB keeps no order across partitions, so a pass reads every task's index entry
(sparse: quota ledgers are not in it, outcomes never are), expired ones included (filtered
out, but read and billed). The cursor is the ``LastEvaluatedKey``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from taskstore.backends.base import (
    ListPosition,
    ScanPage,
    VersionedRecord,
    decode_key_part,
    decode_scan_cursor,
    encode_scan_cursor,
)
from taskstore.backends.dynamodb.client import Busy, ConditionFailed, Requests
from taskstore.backends.dynamodb.items import (
    INDEX,
    LIVE,
    NAMES,
    SORT_DIGITS,
    is_live,
    n,
    params,
    partition_key,
    s,
    sort_key,
    task_id_of,
    to_record,
    utf8_len,
)
from taskstore.errors import (
    BackendError,
    ConflictError,
    InvalidCursorError,
    InvalidParamsError,
    RecordNotFound,
)

__all__ = ["SCAN_REQUESTS", "cleanup", "list_page", "scan_page"]

#: ``Scan`` requests one scan page may send: bounds a page's time when expired items thin
#: it; the page then comes back short, with a cursor.
SCAN_REQUESTS = 8
# A scan position: format tag and the LastEvaluatedKey's string attributes, (name, value).
_SCAN_CURSOR = msgspec.msgpack.Decoder(tuple[Literal["d1"], list[tuple[str, str]]])
# What a LastEvaluatedKey of the listing index holds, and the limits of those key values.
_START_KEY_LIMITS = {"PK": 2048, "SK": 1024, "lsk": 1024}
_LSK = re.compile(rf"[0-9]{{{SORT_DIGITS}}}#")


def list_page(
    requests: Requests, owner: str, after: ListPosition | None, limit: int, now: int
) -> list[VersionedRecord]:
    """Up to ``limit`` live records of ``owner``, newest first, strictly after ``after``.

    :raises RecordNotFound: ``after`` names a record that is no longer live.
    :raises ConflictError: large records kept changing between the query and their read.
    :raises BackendError: DynamoDB failed.
    """
    anchor: str | None = None
    if after is not None:
        try:
            anchor = sort_key(after.sort_ms, after.task_id)
        except (InvalidParamsError, UnicodeEncodeError, TypeError):
            # No record can have this position: the cursor is stale by definition.
            raise RecordNotFound((owner, str(after.task_id))) from None
    elif limit <= 0:
        return []
    try:
        partition_key(owner)
    except InvalidParamsError:
        # DynamoDB cannot hold such an owner: it has no records, and no anchor is live.
        if after is not None:
            raise RecordNotFound((owner, str(after.task_id))) from None
        return []
    for _ in range(8):
        rows = _query_page(requests, owner, anchor, limit, now)
        unindexed = [row for row in rows if "d" not in row]
        if unindexed and not _fill_unindexed(requests, unindexed, now):
            continue  # a large record changed between the two requests: list again
        return [
            to_record((owner, task_id_of(row["lsk"]["S"])), row, outcome=False) for row in rows
        ]
    raise ConflictError("The listing kept changing under concurrent writes; try again")


def _query_page(
    requests: Requests, owner: str, anchor: str | None, limit: int, now: int
) -> list[dict[str, Any]]:
    """The page's index entries (keys, ``lsk``, ``d``, ``v``, ``x``), anchor checked."""
    values: dict[str, Any] = {":pk": partition_key(owner), ":now": n(now)}
    key_condition = "#pk = :pk"
    if anchor is not None:
        key_condition += " AND #lsk <= :anchor"
        values[":anchor"] = s(anchor)
    base = {
        **params(
            requests.table,
            KeyConditionExpression=key_condition,
            FilterExpression=LIVE,
            values=values,
        ),
        "IndexName": INDEX,
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
        query = {**base, "Limit": max(wanted, 1)}
        if start is not None:
            query["ExclusiveStartKey"] = start
        response = requests.send("query", query)
        items = response.get("Items", [])
        if need_anchor:
            # The query starts at the anchor inclusive and filters expired items, so a
            # live anchor is always the first item returned.
            if not items or items[0]["lsk"]["S"] != anchor:
                raise RecordNotFound((owner, task_id_of(str(anchor))))
            items = items[1:]
            need_anchor = False
        rows.extend(items[: max(limit, 0) - len(rows)])
        start = response.get("LastEvaluatedKey")
        if len(rows) >= limit or not start:
            return rows


def _fill_unindexed(requests: Requests, rows: list[dict[str, Any]], now: int) -> bool:
    """Read the records kept out of the index (``dx``) into ``rows`` (index entries, which
    always carry the table's keys); ``False`` if one of them is no longer the record the index
    showed (the caller reads the page again)."""
    table = requests.table
    wanted = {(row["PK"]["S"], row["SK"]["S"]): row for row in rows}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    keys = [{"PK": s(pk), "SK": s(sk)} for pk, sk in wanted]
    projection = "#pk, #sk, #lsk, #d, #dx, #v, #x"
    while keys:
        batch, keys = keys[:100], keys[100:]
        pending: dict[str, Any] = {
            table: {
                "Keys": batch,
                "ConsistentRead": True,
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": {p: NAMES[p] for p in projection.split(", ")},
            }
        }
        for _ in requests.retries():
            response = requests.send("batch_get_item", {"RequestItems": pending})
            for item in response.get("Responses", {}).get(table, []):
                found[(item["PK"]["S"], item["SK"]["S"])] = item
            # Keys DynamoDB did not get to (throttling, size): ask again after a backoff.
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
        else:
            raise BackendError("DynamoDB kept leaving BatchGetItem keys unprocessed")
    for key, row in wanted.items():
        item = found.get(key)
        if item is None or not is_live(item, now) or item["lsk"] != row["lsk"]:
            return False
        row.update(item)
    return True


def scan_page(requests: Requests, cursor: str | None, limit: int, now: int) -> ScanPage:
    """Up to ``limit`` live records of any owners, in the index's scan order, after the
    position ``cursor`` names (see the module docstring).

    DynamoDB's ``Limit`` counts the items a request reads, not those the filter keeps, so
    each request asks for what the page still lacks and the page never overfills; requests
    continue while the page is short and the index goes on, up to :data:`SCAN_REQUESTS`.

    :raises InvalidCursorError: a cursor no DynamoDB backend issued.
    :raises ConflictError: large records kept changing between the scan and their read.
    :raises BackendError: DynamoDB failed.
    """
    start = None if cursor is None else _start_key(cursor)
    for _ in range(8):
        rows, after = _scan_rows(requests, start, limit, now)
        unindexed = [row for row in rows if "d" not in row]
        if unindexed and not _fill_unindexed(requests, unindexed, now):
            continue  # a large record changed between the two requests: read the page again
        records = [
            to_record(
                (decode_key_part(row["PK"]["S"][len("OWNER#"):]), task_id_of(row["lsk"]["S"])),
                row,
                outcome=False,
            )
            for row in rows
        ]
        if after is None:
            return ScanPage(records, None)
        fields = sorted((name, value["S"]) for name, value in after.items())
        return ScanPage(records, encode_scan_cursor(("d1", fields)))
    raise ConflictError("The scan kept changing under concurrent writes; try again")


def _scan_rows(
    requests: Requests, start: dict[str, Any] | None, limit: int, now: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The page's live index entries and the ``LastEvaluatedKey`` after them (``None``: the
    index ends there)."""
    base = {
        **params(requests.table, FilterExpression=LIVE, values={":now": n(now)}),
        "IndexName": INDEX,
        # Index-only: never a fetch from the table, which would read (and bill) outcomes.
        "Select": "ALL_PROJECTED_ATTRIBUTES",
        "ConsistentRead": True,
    }
    rows: list[dict[str, Any]] = []
    for _ in range(SCAN_REQUESTS):
        scan = {**base, "Limit": limit - len(rows)}
        if start is not None:
            scan["ExclusiveStartKey"] = start
        response = requests.send("scan", scan)
        rows.extend(response.get("Items", []))
        start = response.get("LastEvaluatedKey") or None
        if start is None or len(rows) >= limit:
            break
    return rows, start


def _start_key(cursor: str) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` a scan cursor names, checked so that a crafted one is
    InvalidCursorError rather than a request DynamoDB refuses."""
    _, fields = decode_scan_cursor(cursor, _SCAN_CURSOR)
    key = dict(fields)
    if (
        len(key) != len(fields)
        or not {"PK", "SK"} <= key.keys() <= _START_KEY_LIMITS.keys()
        or not key["PK"].startswith("OWNER#")
        or not key["SK"].startswith("TASK#")
        or ("lsk" in key and not _LSK.match(key["lsk"]))
        or any(utf8_len(value) > _START_KEY_LIMITS[name] for name, value in fields)
    ):
        raise InvalidCursorError("Invalid scan cursor")
    return {name: s(value) for name, value in fields}


def cleanup(requests: Requests, now: int) -> int:
    """Delete every item expired at ``now``; return how many: a strongly consistent ``Scan``
    of the listing index plus one conditional ``DeleteItem`` per expired item.

    :raises BackendError: DynamoDB failed.
    """
    removed = 0
    start: dict[str, Any] | None = None
    while True:
        scan = {
            **params(
                requests.table,
                FilterExpression="#x <= :now",
                ProjectionExpression="#pk, #sk, #lsk",
                values={":now": n(now)},
            ),
            "IndexName": INDEX,
            "ConsistentRead": True,
        }
        if start is not None:
            scan["ExclusiveStartKey"] = start
        response = requests.send("scan", scan)
        for item in response.get("Items", []):
            try:
                # Re-checked at delete time: the key may have been created anew since.
                requests.send(
                    "delete_item",
                    {
                        **params(requests.table, ConditionExpression="#x <= :now",
                                 values={":now": n(now)}),
                        "Key": {"PK": item["PK"], "SK": item["SK"]},
                    },
                )
            except (ConditionFailed, Busy):
                continue
            removed += 1
        start = response.get("LastEvaluatedKey")
        if not start:
            return removed
