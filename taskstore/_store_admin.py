"""The operator's view across owners (a mixin of :class:`~taskstore.store.TaskStore`):
:meth:`AdminMixin.scan` pages through every owner's live tasks and :meth:`AdminMixin.stats`
counts them, for ``python -m taskstore tasks stats|list`` and dashboards.

Both ride on the backend's optional cross-owner scan
(:class:`~taskstore.backends.base.ScanningBackend`, which every bundled backend has): memory
stays bounded by one page whatever the store holds. What a page costs is the backend's (an
index walk on memory, Redis, SQLite and PostgreSQL; a full table scan on DynamoDB).
"""

from __future__ import annotations

import msgspec

from taskstore._store_stale import StaleTasksMixin
from taskstore.backends.base import check_scan_limit
from taskstore.clock import format_timestamp
from taskstore.errors import InvalidParamsError
from taskstore.record import TaskRecord, decode_record
from taskstore.states import TaskStatus

__all__ = ["AdminMixin", "OldestTask", "ScanResult", "StoreStats"]

#: Records read per scan page by :meth:`AdminMixin.stats`.
STATS_PAGE = 500


class ScanResult(msgspec.Struct, frozen=True):
    """One page of :meth:`AdminMixin.scan`: tasks of any owners in the backend's scan order.

    :ivar tasks: at most the ``limit`` asked for, possibly fewer (even none) with more to
        come; filtered by status when asked.
    :ivar next_cursor: pass it back for the next page; ``None`` once the pass is complete.
    """

    tasks: list[TaskRecord]
    next_cursor: str | None


class OldestTask(msgspec.Struct, frozen=True, kw_only=True):
    """The oldest unfinished task of :class:`StoreStats`."""

    task_id: str
    owner: str
    status: str
    created_at: str
    last_updated_at: str
    age_ms: int


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    """What the store holds right now, across owners (:meth:`AdminMixin.stats`).

    :ivar tasks: live tasks.
    :ivar by_status: live tasks per status, every status named (zeros included).
    :ivar owners: owners holding at least one live task.
    :ivar expired: tasks past their expiry whose space is not yet reclaimed (invisible to
        every operation; ``cleanup_expired`` or the backend's native TTL removes them).
    :ivar oldest_unfinished: the ``working`` or ``input_required`` task created first, if any.
    :ivar at: the store clock's time of the count (the pass is not a snapshot: tasks written
        during it may or may not be counted).
    """

    tasks: int
    by_status: dict[str, int]
    owners: int
    expired: int
    oldest_unfinished: OldestTask | None
    at: str


class AdminMixin(StaleTasksMixin):
    """Cross-owner reads for operators."""

    def scan(
        self,
        cursor: str | None = None,
        limit: int = 100,
        *,
        status: TaskStatus | str | None = None,
    ) -> ScanResult:
        """One page of a pass over every owner's live tasks (start with ``cursor=None``; pass
        each page's ``next_cursor`` until it is ``None``).

        The order is the backend's own; a task present for the whole pass is returned exactly
        once. Pages may be short, even empty, and still carry a cursor.

        :param limit: records read for this page (at least 1).
        :param status: only tasks in this status.
        :raises ConfigurationError: the backend cannot scan across owners.
        :raises InvalidCursorError: a cursor this kind of backend did not issue.
        :raises InvalidParamsError: a bad ``limit`` or ``status``.
        :raises BackendError: the storage failed.
        """
        check_scan_limit(limit)
        wanted = None if status is None else _status(status)
        scanner = self._scanner()
        with self._recorded("scan"):
            page = scanner.scan(cursor, limit, now_ms=self.clock.now_ms())
        tasks = []
        for stored in page.records:
            record = decode_record(stored.data, stored.version)
            if (record.owner, record.task_id) != stored.key:
                continue  # never show a record filed under another key
            if wanted is None or record.status is wanted:
                tasks.append(record)
        return ScanResult(tasks, page.next_cursor)

    def stats(self) -> StoreStats:
        """Count every owner's tasks: by status, owners, expired ones awaiting cleanup, and
        the oldest unfinished task. One pass of the backend's scan, a page of
        :data:`STATS_PAGE` records at a time: time grows with the store, memory does not.

        Owners are counted as the runs of one owner's tasks in scan order, exact on every
        bundled backend (each returns an owner's tasks together).

        :raises ConfigurationError: the backend cannot scan across owners.
        :raises BackendError: the storage failed.
        """
        scanner = self._scanner()
        now = self.clock.now_ms()
        by_status = dict.fromkeys((status.value for status in TaskStatus), 0)
        owners = expired = 0
        last_owner: str | None = None
        oldest: TaskRecord | None = None
        cursor: str | None = None
        while True:
            # The pass reads at time 0, when nothing has expired yet, to see the expired
            # records still stored too; each is then judged against the real clock.
            with self._recorded("stats"):
                page = scanner.scan(cursor, STATS_PAGE, now_ms=0)
            for stored in page.records:
                if stored.expires_at_ms is not None and stored.expires_at_ms <= now:
                    expired += 1
                    continue
                record = decode_record(stored.data, stored.version)
                by_status[record.status.value] += 1
                if stored.key[0] != last_owner:
                    owners += 1
                    last_owner = stored.key[0]
                if not record.is_terminal and (
                    oldest is None or _created(record) < _created(oldest)
                ):
                    oldest = record
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return StoreStats(
            tasks=sum(by_status.values()),
            by_status=by_status,
            owners=owners,
            expired=expired,
            oldest_unfinished=None if oldest is None else _oldest(oldest, now),
            at=format_timestamp(now),
        )


def _status(status: TaskStatus | str) -> TaskStatus:
    try:
        return TaskStatus(status)
    except ValueError:
        names = ", ".join(s.value for s in TaskStatus)
        raise InvalidParamsError(f"Unknown status {status!r}; one of: {names}") from None


def _created(record: TaskRecord) -> int:
    return record.created_at_ms


def _oldest(record: TaskRecord, now: int) -> OldestTask:
    return OldestTask(
        task_id=record.task_id,
        owner=record.owner,
        status=record.status.value,
        created_at=record.task.created_at,
        last_updated_at=record.task.last_updated_at,
        age_ms=max(0, now - _created(record)),
    )
