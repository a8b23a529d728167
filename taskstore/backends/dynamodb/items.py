"""Items of the DynamoDB backend: keys, attribute encoding, request expressions and item size.

Item size
---------

DynamoDB rejects items over 400 KB (409,600 bytes, counting attribute names and values; numbers
take one byte per two digits, aligned on the decimal point, plus one), the item's index entry
included (its keys, the table's sort key, and d, v, x). Every write computes the resulting size
first and raises :class:`~taskstore.errors.InvalidParamsError` naming the limit
(:class:`~taskstore.errors.ResultTooLargeError` when the outcome being written does not fit)
without sending anything. A compare-and-set that keeps a stored outcome knows its size from the
``get`` that preceded it through the same backend object (the store always reads before it
writes; see :class:`Shape`); as a safety net every such write also carries the condition
``os <= :room``. The declared caps ``max_variable_bytes`` and ``max_result_bytes`` (350 KiB
each) each leave room for the rest of an item; a task whose variables *and* result together
exceed an item is refused at the write that would overflow it.

Why two record attributes: on a table with a local secondary index, DynamoDB's 400 KB item
limit covers the item *and* its index entries, so an indexed record counts twice. Records up to
about 200 KB (less when a large outcome is stored) live in the indexed ``d``; larger ones, up
to what the item can hold, in ``dx`` (:func:`place`). Every write picks the attribute anew (and
removes the other one).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

from taskstore.backends.base import (
    KEEP,
    Keep,
    RecordKey,
    VersionedRecord,
    check_expiry,
    encode_key_part,
)
from taskstore.config import MAX_EXPIRES_AT_MS
from taskstore.errors import InvalidParamsError, ResultTooLargeError

__all__ = [
    "INDEX",
    "ITEM_LIMIT_BYTES",
    "LIVE",
    "MAX_EXPIRY_SIZE",
    "NAMES",
    "NEVER",
    "SORT_DIGITS",
    "Shape",
    "b",
    "check_expiry",
    "check_size",
    "expiry_attrs",
    "expiry_size",
    "frame_size",
    "full_item",
    "int_attr",
    "is_live",
    "key_attrs",
    "max_outcome_length",
    "n",
    "number_size",
    "params",
    "partition_key",
    "place",
    "record_data",
    "s",
    "sort_key",
    "task_id_of",
    "to_record",
    "token_of",
    "update_params",
    "utf8_len",
    "write_token",
]

#: DynamoDB's item size limit: 400 KB, where 1 KB is 1024 bytes.
ITEM_LIMIT_BYTES = 400 * 1024
_PARTITION_KEY_LIMIT = 2048
_SORT_KEY_LIMIT = 1024
#: Width of the zero-padded ``sort_ms`` that opens every listing sort key (``lsk``).
SORT_DIGITS = 16
_SORT_MAX = 10**SORT_DIGITS - 1
#: ``lx`` of a ledger whose counted tasks include one that never expires.
NEVER = _SORT_MAX
#: The listing index (LSI): PK + lsk, projecting d, v and x.
INDEX = "by_created"

# Every attribute name goes through a placeholder: several short names are reserved words.
NAMES = {
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
    "#w": "w",
}
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
#: The condition (and filter) "the item has not expired at ``:now``".
LIVE = "(attribute_not_exists(#x) OR #x > :now)"


# -- AttributeValue helpers ---------------------------------------------------------------


def s(value: str) -> dict[str, Any]:
    """A string AttributeValue."""
    return {"S": value}


def n(value: int) -> dict[str, Any]:
    """A number AttributeValue."""
    return {"N": str(value)}


def b(value: bytes) -> dict[str, Any]:
    """A binary AttributeValue."""
    return {"B": value}


def int_attr(item: Mapping[str, Any], name: str) -> int | None:
    """The number attribute ``name`` of ``item``, or ``None`` when absent."""
    value = item.get(name)
    return None if value is None else int(value["N"])


def params(
    table: str, *, values: Mapping[str, Any] | None = None, **expressions: Any
) -> dict[str, Any]:
    """Request parameters with only the name and value placeholders the expressions use
    (DynamoDB rejects unused ones)."""
    request: dict[str, Any] = {"TableName": table}
    used: set[str] = set()
    for field, text in expressions.items():
        if text is None:
            continue
        request[field] = text
        if isinstance(text, str):
            used.update(_PLACEHOLDER.findall(text))
    names = {p: NAMES[p] for p in sorted(used) if p.startswith("#")}
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        chosen = {p: v for p, v in values.items() if p in used}
        if chosen:
            request["ExpressionAttributeValues"] = chosen
    return request


# -- keys -------------------------------------------------------------------------------------


def _key_part(prefix: str, text: object, what: str, key_name: str, limit: int) -> str:
    if not isinstance(text, str):
        raise InvalidParamsError(f"{what} must be a string")
    try:
        # DynamoDB strings are UTF-8: text without a UTF-8 form (lone surrogates) is refused
        # here rather than stored under its surrogatepass encoding.
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParamsError(f"{what} must be valid Unicode") from None
    value = prefix + encode_key_part(text)
    if utf8_len(value) > limit:
        raise InvalidParamsError(
            f"{what} too long for a DynamoDB {key_name} ({limit} bytes once encoded)"
        )
    return value


def partition_key(owner: str) -> dict[str, Any]:
    """The owner's partition key, ``OWNER#<encoded owner>``.

    :raises InvalidParamsError: not a string, not valid Unicode (a lone surrogate), or too
        long for a DynamoDB partition key once encoded: no record can have such an owner.
    """
    return s(_key_part("OWNER#", owner, "owner", "partition key", _PARTITION_KEY_LIMIT))


def key_attrs(key: RecordKey) -> dict[str, dict[str, Any]]:
    """The task's primary key (``SK = TASK#<encoded task id>``); raises like
    :func:`partition_key` for the task id too."""
    owner, task_id = key
    pk = partition_key(owner)
    return {"PK": pk, "SK": s(_key_part("TASK#", task_id, "task id", "sort key", _SORT_KEY_LIMIT))}


def sort_key(sort_ms: int, task_id: str) -> str:
    """The listing sort key ``lsk``: ``sort_ms`` zero-padded, ``#``, the raw task id.

    :raises InvalidParamsError: ``sort_ms`` out of range or the key too long for the index.
    """
    if isinstance(sort_ms, bool) or not isinstance(sort_ms, int) or not (
        0 <= sort_ms <= _SORT_MAX
    ):
        raise InvalidParamsError(f"sort_ms must be an integer from 0 to {_SORT_MAX}")
    value = f"{sort_ms:0{SORT_DIGITS}d}#{task_id}"
    if utf8_len(value) > _SORT_KEY_LIMIT:
        raise InvalidParamsError(
            f"task id too long for a DynamoDB index key (at most {_SORT_KEY_LIMIT} bytes)"
        )
    return value


def task_id_of(lsk: str) -> str:
    """The raw task id a listing sort key ends with."""
    return lsk[SORT_DIGITS + 1:]


# -- sizes ------------------------------------------------------------------------------------


def number_size(value: int) -> int:
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


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    return len(text.encode("utf-8"))


def _attr_size(name: str, value: Mapping[str, Any]) -> int:
    size = utf8_len(name)
    if "S" in value:
        return size + utf8_len(value["S"])
    if "B" in value:
        return size + len(value["B"])
    if "N" in value:
        return size + number_size(int(value["N"]))
    return size + 1  # BOOL / NULL


def _item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(_attr_size(name, value) for name, value in item.items())


def _outcome_size(length: int) -> int:
    return 1 + length + 2 + number_size(length)  # "o" + blob, "os" + its length


def place(fixed: int, data_length: int, outcome_length: int | None) -> tuple[str, int, int]:
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


def expiry_attrs(expires_at_ms: int) -> dict[str, dict[str, Any]]:
    """The exact expiry ``x`` (epoch ms) and the native TTL attribute ``expires_at``."""
    # Round the TTL up: DynamoDB must never delete an item before its millisecond expiry.
    return {"x": n(expires_at_ms), "expires_at": n(math.ceil(expires_at_ms / 1000))}


def expiry_size(expires_at_ms: int | None) -> int:
    """What the expiry adds to an item and its index entry (``x`` is in both)."""
    if expires_at_ms is None:
        return 0
    attrs = expiry_attrs(expires_at_ms)
    return _item_size(attrs) + _attr_size("x", attrs["x"])


#: Largest the expiry attributes can be when the stored expiry is unknown.
MAX_EXPIRY_SIZE = expiry_size(_SORT_MAX)


def max_outcome_length(room: int) -> int:
    """Longest outcome whose two attributes fit in ``room`` bytes (-1 if none does)."""
    length = max(room - 3 - 1, -1)
    while length >= 0 and _outcome_size(length) > room:
        length -= 1
    return length


#: Bytes of the write token every write stores (``w``): the one way a write whose answer was
#: lost recognises itself when it is sent again (see :mod:`.writes`).
TOKEN_BYTES = 8


def write_token() -> bytes:
    """A fresh write token (random; one per write call, kept across its resends)."""
    return secrets.token_bytes(TOKEN_BYTES)


def token_of(item: Mapping[str, Any] | None) -> bytes | None:
    """The write token of the last write to ``item`` (``None``: none stored)."""
    value = None if item is None else item.get("w")
    return None if value is None else bytes(value["B"])


def frame_size(key: RecordKey, version: int) -> int:
    """Charged size of an item's keys and version, which its index entry repeats, plus the
    write token (``w``, in the item only).

    The entry is counted with the table's sort key, as AWS documents ("key values and
    projected attributes"); DynamoDB Local leaves that key out of its count, so we stay
    on the safe side of both by the sort key's few dozen bytes.
    """
    item = key_attrs(key)
    # lsk's size does not depend on sort_ms (fixed-width digits), only on the task id.
    item["lsk"] = s(sort_key(0, key[1]))
    item["v"] = n(version)
    return 2 * _item_size(item) + len("w") + TOKEN_BYTES


# Every expiry the contract allows fits the fixed-width listing keys with room to spare
# (NEVER, the ledger's "never expires", stays above all of them).
assert MAX_EXPIRES_AT_MS < NEVER


def check_size(size: int, *, outcome: bool) -> None:
    """Refuse an item of ``size`` charged bytes over the limit, before any request.

    :param outcome: the write carries a new outcome (it is then the one to blame).
    :raises ResultTooLargeError: over the limit with a new outcome.
    :raises InvalidParamsError: over the limit otherwise.
    """
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


class Shape(NamedTuple):
    """What a backend object last saw of an item's size: exact sizes for the size check."""

    version: int
    expiry_size: int
    outcome_length: int | None


# -- whole items and updates --------------------------------------------------------------


def full_item(
    key: RecordKey,
    data: bytes,
    version: int,
    expires_at_ms: int | None,
    sort_ms: int,
    outcome: bytes | None,
    token: bytes,
) -> dict[str, dict[str, Any]]:
    """A whole task item carrying write ``token``, checked against the item size limit."""
    check_expiry(expires_at_ms)
    item = key_attrs(key)
    item["lsk"] = s(sort_key(sort_ms, key[1]))
    item["v"] = n(version)
    item["w"] = b(token)
    fixed = frame_size(key, version) + expiry_size(expires_at_ms)
    attr, size, _ = place(fixed, len(data), None if outcome is None else len(outcome))
    check_size(size, outcome=outcome is not None)
    item[attr] = b(bytes(data))
    if expires_at_ms is not None:
        item.update(expiry_attrs(expires_at_ms))
    if outcome is not None:
        item["o"] = b(bytes(outcome))
        item["os"] = n(len(outcome))
    return item


def update_params(
    table: str,
    key: RecordKey,
    data: bytes,
    attr: str,
    version: int,
    expires_at_ms: int | Keep | None,
    outcome: bytes | None,
    now: int,
    token: bytes,
    *,
    room: int | None = None,
    lsk: str | None = None,
) -> dict[str, Any]:
    """The conditional ``UpdateItem`` of a compare-and-set from ``version - 1``, storing
    write ``token``.

    :param attr: where the record goes (``d`` or ``dx``; the other one is removed).
    :param room: when given, also require a stored outcome of at most this many bytes.
    :param lsk: a new listing sort key, if it changes.
    """
    other = "dx" if attr == "d" else "d"
    sets = [f"#{attr} = :data", "#v = :v", "#w = :w"]
    removes = [f"#{other}"]
    values: dict[str, Any] = {
        ":data": b(bytes(data)),
        ":w": b(token),
        ":v": n(version),
        ":expected": n(version - 1),
        ":now": n(now),
    }
    condition = "#v = :expected AND " + LIVE
    if room is not None:
        condition += " AND (attribute_not_exists(#os) OR #os <= :room)"
        values[":room"] = n(room)
    if lsk is not None:
        sets.append("#lsk = :lsk")
        values[":lsk"] = s(lsk)
    if outcome is not None:
        sets += ["#o = :o", "#os = :os"]
        values[":o"], values[":os"] = b(bytes(outcome)), n(len(outcome))
    if expires_at_ms is None:
        removes += ["#x", "#ea"]
    elif expires_at_ms is not KEEP:
        assert isinstance(expires_at_ms, int)
        attrs = expiry_attrs(expires_at_ms)
        sets += ["#x = :x", "#ea = :ea"]
        values[":x"], values[":ea"] = attrs["x"], attrs["expires_at"]
    return {
        **params(
            table,
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
            ConditionExpression=condition,
            values=values,
        ),
        "Key": key_attrs(key),
    }


# -- reading items ----------------------------------------------------------------------------


def is_live(item: Mapping[str, Any] | None, now: int) -> bool:
    """Whether ``item`` exists and has not expired at ``now``."""
    if not item:
        return False
    expires = int_attr(item, "x")
    return expires is None or expires > now


def record_data(item: Mapping[str, Any]) -> bytes:
    """The record bytes of a task item, from ``d`` or ``dx``."""
    value = item.get("d") or item.get("dx")
    return b"" if value is None else bytes(value["B"])


def to_record(key: RecordKey, item: Mapping[str, Any], *, outcome: bool) -> VersionedRecord:
    """The :class:`VersionedRecord` of a task item (with its outcome when ``outcome``)."""
    blob = item.get("o") if outcome else None
    return VersionedRecord(
        key=key,
        data=record_data(item),
        version=int(item["v"]["N"]),
        expires_at_ms=int_attr(item, "x"),
        sort_ms=int(item["lsk"]["S"][:SORT_DIGITS]),
        outcome=None if blob is None else bytes(blob["B"]),
    )
