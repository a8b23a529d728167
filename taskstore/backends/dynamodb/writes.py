"""The DynamoDB backend's writes: conditional requests, their retries, and what they learn.

Every write is conditional. ``create`` is one ``TransactWriteItems`` (the task ``Put`` with
``attribute_not_exists(PK) OR x <= :now`` plus the ledger update, see :mod:`.ledger`); a
compare-and-set is one ``UpdateItem`` with ``v = :expected AND (attribute_not_exists(x) OR x >
:now)``. Every condition asks for ``ReturnValuesOnConditionCheckFailure=ALL_OLD``, so a conflict
reports the actual version without another read. Expired items (DynamoDB's sweeper may take
days) count as absent in every condition; expiry is judged against the caller's ``now_ms`` (the
store's clock), never DynamoDB's. Item sizes are checked before anything is sent
(:mod:`.items`).

Every write stores a fresh random *write token* (``w``). A write sent again after its answer
was lost (by boto3, or by :meth:`~.client.Requests.send` riding out an outage) finds its own
token when the first attempt had landed, and answers as that attempt would have: a repeated
transaction is also deduplicated by DynamoDB itself (``ClientRequestToken``), and a
compare-and-set or insert whose condition fails against an item holding its own token, one
version on, is that write, not a conflict. Nothing is applied twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from taskstore.backends.base import KEEP, Keep, RecordKey
from taskstore.backends.dynamodb import items
from taskstore.backends.dynamodb.cache import BoundedCache
from taskstore.backends.dynamodb.client import Busy, Cancelled, ConditionFailed, Requests
from taskstore.backends.dynamodb.items import ITEM_LIMIT_BYTES, Shape, int_attr, n, params
from taskstore.backends.dynamodb.ledger import QuotaLedger, transaction
from taskstore.backends.dynamodb.waits import Changes
from taskstore.errors import InvalidParamsError, VersionConflict

__all__ = ["Writes"]

#: The condition of an insert: the key is absent, or holds an expired item.
_ABSENT = "attribute_not_exists(#pk) OR #x <= :now"


class Writes:
    """The writes of one backend object (thread-safe). Each successful write is recorded in
    ``changes`` (waking waiters and delivering its event)."""

    def __init__(self, requests: Requests, changes: Changes) -> None:
        self._requests = requests
        self._table = requests.table
        self._ledger = QuotaLedger(requests)
        self._changes = changes
        self._shapes: BoundedCache[RecordKey, Shape] = BoundedCache()

    def remember(self, key: RecordKey, shape: Shape | None) -> None:
        """Note what an item looks like now (``None``: unknown), for later size checks."""
        if shape is None:
            self._shapes.pop(key)
        else:
            self._shapes.put(key, shape)

    def _shape(self, key: RecordKey, version: int) -> Shape | None:
        shape = self._shapes.get(key)
        return shape if shape is not None and shape.version == version else None

    @staticmethod
    def _own_write(item: Mapping[str, Any] | None, version: int, token: bytes, now: int) -> bool:
        """Whether ``item`` (the ALL_OLD of a failed condition) is our own write of
        ``version``, landed by an earlier attempt whose answer was lost."""
        return (
            items.is_live(item, now)
            and item is not None
            and int(item["v"]["N"]) == version
            and items.token_of(item) == token
        )

    def _insert(self, key: RecordKey, item: dict[str, Any], now: int) -> dict[str, Any]:
        """The conditional ``Put`` of a new task item over an absent or expired key."""
        return {
            **params(self._table, ConditionExpression=_ABSENT, values={":now": n(now)}),
            "Item": item,
        }

    # -- put ------------------------------------------------------------------------------

    def put(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        sort_ms: int | None,
        outcome: bytes | None,
        event: bytes | None,
        now: int,
    ) -> int:
        """``DynamoDbBackend.put``: read, then write over the live item or insert anew;
        retried while other writers slip in between."""
        items.check_expiry(expires_at_ms)
        token = items.write_token()
        last: Exception | None = None
        attempts = 0
        for attempts in self._requests.retries():  # noqa: B007 - read after the loop
            current = self._requests.send(
                "get_item",
                {
                    **params(self._table, ProjectionExpression="#v, #x, #lsk, #os"),
                    "Key": items.key_attrs(key),
                    "ConsistentRead": True,
                },
            ).get("Item")
            try:
                if items.is_live(current, now):
                    assert current is not None
                    version = int(current["v"]["N"]) + 1
                    shape: Shape | None = self._put_over(
                        key, data, expires_at_ms, sort_ms, outcome, current, now, token
                    )
                else:
                    version = 1
                    shape = self._put_new(
                        key, data, expires_at_ms, now if sort_ms is None else sort_ms, outcome,
                        now, token,
                    )
            except ConditionFailed as exc:
                shape = None  # our own write landed, but its shape is not worth a guess
                if not self._own_write(exc.item, version, token, now):
                    last = exc  # someone wrote between our read and write: read again
                    continue
            except Busy as exc:
                last = exc
                continue
            except Cancelled as exc:
                shape = None
                own = exc.code(0) == "ConditionalCheckFailed" and self._own_write(
                    exc.item(0), version, token, now
                )
                if not own:
                    if exc.code(0) == "ConditionalCheckFailed" or exc.transient:
                        last = exc
                        continue
                    self._requests.failed(exc)
            self.remember(key, shape)
            self._changes.written(key, version, event)
            return version
        self._requests.gave_up(key, attempts, last)

    def _put_over(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        sort_ms: int | None,
        outcome: bytes | None,
        current: Mapping[str, Any],
        now: int,
        token: bytes,
    ) -> Shape:
        """Overwrite a live item at its current version, keeping what ``put`` keeps; return
        the item's new shape."""
        version = int(current["v"]["N"]) + 1
        outcome_length = len(outcome) if outcome is not None else int_attr(current, "os")
        fixed = items.frame_size(key, version) + items.expiry_size(expires_at_ms)
        attr, size, _ = items.place(fixed, len(data), outcome_length)
        items.check_size(size, outcome=outcome is not None)
        task = items.update_params(
            self._table, key, data, attr, version, expires_at_ms, outcome, now, token,
            lsk=None if sort_ms is None else items.sort_key(sort_ms, key[1]),
        )
        shape = Shape(version, items.expiry_size(expires_at_ms), outcome_length)
        if int_attr(current, "x") == expires_at_ms:
            self._requests.send(
                "update_item", {**task, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            )
        else:
            # The expiry moves: the ledger's expiry bounds may no longer hold.
            self._requests.send(
                "transact_write_items", transaction(task, self._ledger.dirty_update(key[0]))
            )
        return shape

    def _put_new(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        sort_ms: int,
        outcome: bytes | None,
        now: int,
        token: bytes,
    ) -> Shape:
        """Insert over an absent or expired key, counting the record in the quota ledger;
        return the item's shape."""
        task = self._insert(
            key, items.full_item(key, data, 1, expires_at_ms, sort_ms, outcome, token), now
        )
        ledger = self._ledger.dirty_update(key[0], insert=True)
        self._requests.send("transact_write_items", transaction(task, ledger))
        return Shape(1, items.expiry_size(expires_at_ms), None if outcome is None else len(outcome))

    # -- compare-and-set ------------------------------------------------------------------

    def put_if_version(
        self,
        key: RecordKey,
        data: bytes,
        expected: int,
        expires_at_ms: int | Keep | None,
        outcome: bytes | None,
        event: bytes | None,
        now: int,
    ) -> int:
        """``DynamoDbBackend.put_if_version``: one conditional ``UpdateItem`` (a transaction
        with the ledger when the expiry changes), decided again when the stored outcome turns
        out larger than believed."""
        try:
            items.key_attrs(key)
        except InvalidParamsError:
            raise VersionConflict(key, expected, 0) from None  # DynamoDB cannot hold such a key
        if expires_at_ms is not KEEP:
            items.check_expiry(expires_at_ms)
        version = expected + 1
        shape = self._shape(key, expected)
        if expires_at_ms is not KEEP:
            expiry_size = items.expiry_size(expires_at_ms)
        elif shape is not None:
            expiry_size = shape.expiry_size
        else:
            expiry_size = items.MAX_EXPIRY_SIZE  # the stored expiry is unknown: its largest size
        fixed = items.frame_size(key, version) + expiry_size
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
        token = items.write_token()
        last: Exception | None = None
        attempts = 0
        for attempts in self._requests.retries():  # noqa: B007 - read after the loop
            attr, size, bare = items.place(fixed, len(data), outcome_length)
            items.check_size(size, outcome=outcome is not None)
            room = (
                None if outcome is not None
                else items.max_outcome_length(ITEM_LIMIT_BYTES - bare)
            )
            task = items.update_params(
                self._table, key, data, attr, version, expires_at_ms, outcome, now, token,
                room=room,
            )
            try:
                if expires_at_ms is KEEP:
                    self._requests.send(
                        "update_item", {**task, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
                    )
                else:
                    # The expiry moves: the ledger's expiry bounds may no longer hold.
                    self._requests.send(
                        "transact_write_items",
                        transaction(task, self._ledger.dirty_update(key[0])),
                    )
            except Busy as exc:
                last = exc
                continue
            except ConditionFailed as exc:
                if self._explain(key, expected, exc.item, now, token, room):
                    break  # our own write had landed before it was sent again
                outcome_length, known = int_attr(exc.item or {}, "os"), True
                last = exc
                continue
            except Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed":
                    if self._explain(key, expected, exc.item(0), now, token, room):
                        break
                    outcome_length, known = int_attr(exc.item(0) or {}, "os"), True
                elif not exc.transient:
                    self._requests.failed(exc)
                last = exc
                continue
            break
        else:
            self._requests.gave_up(key, attempts, last)
        self.remember(key, Shape(version, expiry_size, outcome_length) if known else None)
        self._changes.written(key, version, event)
        return version

    def _explain(
        self,
        key: RecordKey,
        expected: int,
        item: Mapping[str, Any] | None,
        now: int,
        token: bytes,
        room: int | None,
    ) -> bool:
        """Explain a failed compare-and-set from its ALL_OLD item.

        :param token: the write token the compare-and-set carries.
        :param room: the stored-outcome size guard the write carried, if any.
        :returns: ``True`` when the item shows our own write already landed (the request
            was sent again after its answer was lost): one version on, holding our token;
            ``False`` when only the size guard failed (the caller now knows the stored
            outcome's size and decides again).
        :raises VersionConflict: anything else: the version moved, or the record is gone.
        """
        if self._own_write(item, expected + 1, token, now):
            return True
        if not items.is_live(item, now):
            raise VersionConflict(key, expected, 0)
        assert item is not None
        actual = int(item["v"]["N"])
        if actual == expected and room is not None and (int_attr(item, "os") or 0) > room:
            self.remember(key, None)
            return False
        raise VersionConflict(key, expected, actual)

    # -- create and delete ----------------------------------------------------------------

    def create(
        self,
        key: RecordKey,
        data: bytes,
        expires_at_ms: int | None,
        sort_ms: int,
        max_live: int | None,
        event: bytes | None,
        now: int,
    ) -> int:
        """``DynamoDbBackend.create``: the task's ``Put`` and the ledger's count in one
        transaction, retried as the ledger's refusals teach us what it holds."""
        token = items.write_token()
        task = self._insert(
            key, items.full_item(key, data, 1, expires_at_ms, sort_ms, None, token), now
        )
        owner = key[0]
        hint = self._ledger.hint(owner)
        last: Exception | None = None
        attempts = 0
        for attempts in self._requests.retries():  # noqa: B007 - read after the loop
            ledger_update = self._ledger.insert_update(owner, expires_at_ms, max_live, hint)
            try:
                self._requests.send("transact_write_items", transaction(task, ledger_update))
            except Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed":
                    existing = exc.item(0)
                    if self._own_write(existing, 1, token, now):
                        break  # our create had landed before it was sent again
                    raise VersionConflict(
                        key, 0, int(existing["v"]["N"]) if existing and "v" in existing else 1
                    ) from None
                if exc.code(1) == "ConditionalCheckFailed":
                    hint = self._ledger.refused(owner, exc.item(1), now, max_live)
                    last = exc
                    continue
                if exc.transient:
                    last = exc
                    continue
                self._requests.failed(exc)
            break
        else:
            self._requests.gave_up(key, attempts, last)
        self.remember(key, Shape(1, items.expiry_size(expires_at_ms), None))
        self._ledger.counted(owner, hint, expires_at_ms)
        self._changes.written(key, 1, event)
        return 1

    def delete(self, key: RecordKey) -> bool:
        """``DynamoDbBackend.delete``: the ``Delete`` and the ledger's repair mark in one
        transaction (a plain ``DeleteItem`` when the owner has no ledger)."""
        try:
            item_key = items.key_attrs(key)
        except InvalidParamsError:
            return False  # DynamoDB cannot hold such a key
        task = {
            **params(self._table, ConditionExpression="attribute_exists(#pk)"),
            "Key": item_key,
        }
        ledger = self._ledger.delete_update(key[0])
        last: Exception | None = None
        attempts = 0
        removed = False
        for attempts in self._requests.retries():  # noqa: B007 - read after the loop
            try:
                self._requests.send(
                    "transact_write_items",
                    {
                        "TransactItems": [{"Delete": task}, {"Update": ledger}],
                        "ClientRequestToken": uuid.uuid4().hex,
                    },
                )
                removed = True
            except Cancelled as exc:
                if exc.code(0) == "ConditionalCheckFailed":
                    removed = False
                elif exc.code(1) == "ConditionalCheckFailed":
                    # No ledger: it lapsed after every counted task had long expired, so the
                    # task is a phantom already and nothing needs repairing.
                    try:
                        response = self._requests.send(
                            "delete_item",
                            {"TableName": self._table, "Key": item_key, "ReturnValues": "ALL_OLD"},
                        )
                    except Busy as busy:
                        last = busy
                        continue
                    removed = bool(response.get("Attributes"))
                elif exc.transient:
                    last = exc
                    continue
                else:
                    self._requests.failed(exc)
            break
        else:
            self._requests.gave_up(key, attempts, last)
        self.remember(key, None)
        if removed:
            self._changes.written(key, 0, None)
        return removed
