"""The DynamoDB backend's per-owner quota ledger.

An exact per-owner quota under concurrent creates from many processes needs the count and the
insert in one atomic step, so every ``create`` is a transaction of the task ``Put`` and an
``UpdateItem`` of the owner's ledger (``PK = OWNER#O``, ``SK = QUOTA``) conditioned on
``n < :max``. The ledger holds:

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
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from taskstore.backends.base import quota_exceeded
from taskstore.backends.dynamodb.cache import BoundedCache
from taskstore.backends.dynamodb.client import Busy, ConditionFailed, Requests
from taskstore.backends.dynamodb.items import (
    INDEX,
    LIVE,
    NEVER,
    int_attr,
    n,
    params,
    partition_key,
    s,
)

__all__ = ["Ledger", "QuotaLedger", "transaction"]

_LEDGER_SK = "QUOTA"
#: How long a ledger outlives the latest expiry it counted (clock skew between hosts and
#: DynamoDB's sweeper must never make it vanish while a counted task is live).
_LEDGER_GRACE_S = 86_400


class Ledger(NamedTuple):
    """The owner's quota ledger as DynamoDB returned it."""

    version: int | None
    counted: int
    min_expiry: int | None
    max_expiry: int | None
    dirty: bool

    @classmethod
    def parse(cls, item: Mapping[str, Any] | None) -> Ledger:
        """The ledger of a ledger item (``None`` or empty: no ledger)."""
        if not item:
            return cls(None, 0, None, None, False)
        dirty = item.get("dt")
        return cls(
            int_attr(item, "v"),
            int_attr(item, "n") or 0,
            int_attr(item, "nx"),
            int_attr(item, "lx"),
            bool(dirty and dirty.get("BOOL")),
        )

    def may_overcount(self, now: int) -> bool:
        """Whether the count may include phantoms (deleted or expired tasks)."""
        return self.dirty or (self.min_expiry is not None and self.min_expiry <= now)


def transaction(first: dict[str, Any], ledger: dict[str, Any]) -> dict[str, Any]:
    """The ``TransactWriteItems`` parameters of a task write (a ``Put`` or an ``Update``) and
    its ledger update; both report ALL_OLD when their condition fails."""
    kind = "Update" if "UpdateExpression" in first else "Put"
    first = {**first, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    ledger = {**ledger, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    return {
        "TransactItems": [{kind: first}, {"Update": ledger}],
        # Idempotent under boto3's retries: a commit whose answer was lost is not re-applied.
        "ClientRequestToken": uuid.uuid4().hex,
    }


class QuotaLedger:
    """The ledger updates of every write, the repair, and what this object believes each
    owner's ledger holds (hints: a wrong one only costs a failed condition). Thread-safe."""

    def __init__(self, requests: Requests) -> None:
        self._requests = requests
        self._hints: BoundedCache[str, Ledger] = BoundedCache()

    def key(self, owner: str) -> dict[str, dict[str, Any]]:
        """The owner's ledger item key (raises like
        :func:`~taskstore.backends.dynamodb.items.partition_key`)."""
        return {"PK": partition_key(owner), "SK": s(_LEDGER_SK)}

    def hint(self, owner: str) -> Ledger | None:
        """What this object last learnt of ``owner``'s ledger, if anything."""
        return self._hints.get(owner)

    def counted(self, owner: str, hint: Ledger | None, expires_at_ms: int | None) -> None:
        """A create counted a task expiring at ``expires_at_ms``: widen the hint's bounds."""
        if hint is not None and expires_at_ms is not None:
            self._hints.put(
                owner,
                hint._replace(
                    max_expiry=max(hint.max_expiry or 0, expires_at_ms),
                    min_expiry=min(hint.min_expiry, expires_at_ms)
                    if hint.min_expiry is not None
                    else expires_at_ms,
                ),
            )

    def refused(
        self, owner: str, item: Mapping[str, Any] | None, now: int, max_live: int | None
    ) -> Ledger | None:
        """A create's ledger condition failed with ``item`` (ALL_OLD): learn the ledger, and
        return the hint for the next attempt.

        :raises QuotaExceededError: the owner holds ``max_live`` live tasks (after a repair,
            when the ledger may overcount).
        """
        ledger = Ledger.parse(item)
        self._hints.put(owner, ledger)
        if max_live is not None and ledger.counted >= max_live:
            if not ledger.may_overcount(now) or not self.repair(owner, ledger, now, max_live):
                raise quota_exceeded(max_live) from None
            return self.hint(owner)
        # else: our guess of the ledger's expiry bounds was wrong; now we know.
        return ledger

    def insert_update(
        self, owner: str, expires_at_ms: int | None, max_live: int | None, hint: Ledger | None
    ) -> dict[str, Any]:
        """The ledger update of a create: count the task, keep the ledger's expiry bounds.

        DynamoDB's update expressions have no min/max, so the bounds are kept with
        conditions: the update is built for what we believe the ledger holds, and a wrong
        belief fails the condition and tells us (ALL_OLD) what it does hold. Usually tasks
        share one TTL and are created in order, so the newest expiry raises ``lx`` and leaves
        ``nx``: the default belief.
        """
        values: dict[str, Any] = {":one": n(1)}
        conditions: list[str] = []
        sets: list[str] = []
        removes: list[str] = []
        if max_live is not None:
            conditions.append("(attribute_not_exists(#n) OR #n < :max)")
            values[":max"] = n(max_live)
        if expires_at_ms is None:
            sets.append("#lx = :never")
            removes.append("#ea")
            values[":never"] = n(NEVER)
        else:
            values[":e"] = n(expires_at_ms)
            raise_max = hint is None or hint.max_expiry is None or hint.max_expiry <= expires_at_ms
            lower_min = hint is not None and hint.min_expiry is not None and (
                hint.min_expiry > expires_at_ms
            )
            if raise_max:
                conditions.append("(attribute_not_exists(#lx) OR #lx <= :e)")
                sets += ["#lx = :e", "#ea = :ea"]
                values[":ea"] = n(math.ceil(expires_at_ms / 1000) + _LEDGER_GRACE_S)
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
            **params(
                self._requests.table,
                UpdateExpression=update,
                ConditionExpression=" AND ".join(conditions) if conditions else None,
                values=values,
            ),
            "Key": self.key(owner),
        }

    def dirty_update(self, owner: str, *, insert: bool = False) -> dict[str, Any]:
        """The ledger update of a write outside ``create``: may break the ledger's expiry
        bounds, so mark it for repair and keep it from expiring until then."""
        add = "ADD #v :one" + (", #n :one" if insert else "")
        return {
            **params(
                self._requests.table,
                UpdateExpression=f"SET #dt = :true, #lx = :never REMOVE #ea {add}",
                values={":true": {"BOOL": True}, ":never": n(NEVER), ":one": n(1)},
            ),
            "Key": self.key(owner),
        }

    def delete_update(self, owner: str) -> dict[str, Any]:
        """The ledger update of a delete: the task may have been counted, so mark the ledger
        for repair (the freed slot is then usable at once). Fails when there is no ledger."""
        return {
            **params(
                self._requests.table,
                UpdateExpression="SET #dt = :true ADD #v :one",
                ConditionExpression="attribute_exists(#pk)",
                values={":true": {"BOOL": True}, ":one": n(1)},
            ),
            "Key": self.key(owner),
        }

    def repair(self, owner: str, ledger: Ledger, now: int, max_live: int) -> bool:
        """Recount ``owner``'s live tasks into the ledger; return whether a slot is free.

        The recount is stored only if the ledger is still at the version we started from: a
        create that slipped in between changed it, and its task may be missing from our count.
        Losing that race returns ``True`` (the caller simply retries its create).
        """
        table = self._requests.table
        count = 0
        earliest: int | None = None
        latest: int | None = None
        start: dict[str, Any] | None = None
        while True:
            query = {
                **params(
                    table,
                    KeyConditionExpression="#pk = :pk",
                    FilterExpression=LIVE,
                    ProjectionExpression="#lsk, #x",
                    values={":pk": partition_key(owner), ":now": n(now)},
                ),
                "IndexName": INDEX,
                "ConsistentRead": True,
            }
            if start is not None:
                query["ExclusiveStartKey"] = start
            page = self._requests.send("query", query)
            for item in page.get("Items", []):
                count += 1
                expires = int_attr(item, "x")
                stamp = NEVER if expires is None else expires
                latest = stamp if latest is None else max(latest, stamp)
                if expires is not None:
                    earliest = expires if earliest is None else min(earliest, expires)
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        sets = ["#n = :n", "#v = :v"]
        removes = ["#dt"]
        values: dict[str, Any] = {":n": n(count), ":v": n((ledger.version or 0) + 1)}
        if earliest is None:
            removes.append("#nx")
        else:
            sets.append("#nx = :nx")
            values[":nx"] = n(earliest)
        if latest is None:
            # Nothing live: let the ledger lapse a grace period from now.
            removes.append("#lx")
            sets.append("#ea = :ea")
            values[":ea"] = n(math.ceil(now / 1000) + _LEDGER_GRACE_S)
        elif latest >= NEVER:
            sets.append("#lx = :lx")
            removes.append("#ea")
            values[":lx"] = n(NEVER)
        else:
            sets += ["#lx = :lx", "#ea = :ea"]
            values[":lx"] = n(latest)
            values[":ea"] = n(math.ceil(latest / 1000) + _LEDGER_GRACE_S)
        if ledger.version is None:
            condition = "attribute_not_exists(#v)"
        else:
            condition = "#v = :old"
            values[":old"] = n(ledger.version)
        try:
            self._requests.send(
                "update_item",
                {
                    **params(
                        table,
                        UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
                        ConditionExpression=condition,
                        values=values,
                    ),
                    "Key": self.key(owner),
                },
            )
        except (ConditionFailed, Busy):
            return True
        self._hints.put(owner, Ledger((ledger.version or 0) + 1, count, earliest, latest, False))
        return count < max_live
