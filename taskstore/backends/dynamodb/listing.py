"""Reads that walk the DynamoDB backend's listing index: an owner's pages, and the cleanup scan.

A page is one strongly consistent ``Query`` of the ``by_created`` LSI, newest first
(``ScanIndexForward=False``; the zero-padded ``lsk`` orders by ``sort_ms``, then by task id,
both descending, exactly like every other backend), answered from the index alone: outcomes are
never in it, so stored results cost a listing nothing, in bytes or in read capacity. Keyset
pagination starts the query *at* the anchor inclusive, so one request both proves the anchor is
still live (a stale one raises ``RecordNotFound``) and fetches the page; it pages further only
when expired items thinned it. Records too large for the index (``dx``) cost their page one
``BatchGetItem``.
"""

from __future__ import annotations

from typing import Any

from taskstore.backends.base import ListPosition, VersionedRecord, encode_key_part
from taskstore.backends.dynamodb.client import Busy, ConditionFailed, Requests
from taskstore.backends.dynamodb.items import (
    INDEX,
    LIVE,
    NAMES,
    is_live,
    n,
    params,
    partition_key,
    s,
    sort_key,
    task_id_of,
    to_record,
)
from taskstore.errors import BackendError, ConflictError, InvalidParamsError, RecordNotFound

__all__ = ["cleanup", "list_page"]


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
        if unindexed and not _fill_unindexed(requests, owner, unindexed, now):
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


def _fill_unindexed(
    requests: Requests, owner: str, rows: list[dict[str, Any]], now: int
) -> bool:
    """Read the records kept out of the index (``dx``) into ``rows``; ``False`` if one of
    them is no longer the record the index showed (the caller lists again)."""
    table = requests.table
    pk = partition_key(owner)
    wanted = {"TASK#" + encode_key_part(task_id_of(row["lsk"]["S"])): row for row in rows}
    found: dict[str, dict[str, Any]] = {}
    keys = [{"PK": pk, "SK": s(sk)} for sk in wanted]
    projection = "#sk, #lsk, #d, #dx, #v, #x"
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
                found[item["SK"]["S"]] = item
            # Keys DynamoDB did not get to (throttling, size): ask again after a backoff.
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
        else:
            raise BackendError("DynamoDB kept leaving BatchGetItem keys unprocessed")
    for sk, row in wanted.items():
        item = found.get(sk)
        if item is None or not is_live(item, now) or item["lsk"] != row["lsk"]:
            return False
        row.update(item)
    return True


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
