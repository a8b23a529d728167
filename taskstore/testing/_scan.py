"""The scan across owners: the optional :class:`~taskstore.backends.base.ScanningBackend`
capability, tested on every backend that declares it and skipped on one that does not."""

from __future__ import annotations

from collections import Counter

import pytest

from taskstore.backends.base import (
    ScanningBackend,
    ScanPage,
    StorageBackend,
    VersionedRecord,
    encode_scan_cursor,
)
from taskstore.errors import InvalidCursorError, InvalidParamsError
from taskstore.testing._support import FUTURE, T0, TRICKY_OWNERS, data

__all__ = ["ScanContract", "scan_all"]

#: Cursors no backend issues: empty, not base64, base64 of junk, MessagePack of the wrong
#: shape or of a format tag nobody uses, and far too long.
BAD_CURSORS = [
    "",
    "!!!",
    "not a cursor",
    "AAAA",
    encode_scan_cursor((1, 2, 3)),
    encode_scan_cursor(("x1", 0, b"")),
    encode_scan_cursor(("x1", [("PK", "OWNER#a")])),
    "x" * 20_000,
]


def scan_all(
    backend: ScanningBackend, limit: int, now_ms: int, *, max_pages: int = 10_000
) -> tuple[list[VersionedRecord], list[ScanPage]]:
    """One full pass of ``backend.scan`` with pages of ``limit``: every record returned, in
    order, and every page.

    :raises AssertionError: a page over ``limit``, or more than ``max_pages`` pages.
    """
    records: list[VersionedRecord] = []
    pages: list[ScanPage] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = backend.scan(cursor, limit, now_ms=now_ms)
        assert len(page.records) <= limit, f"a page of {len(page.records)} over limit {limit}"
        pages.append(page)
        records.extend(page.records)
        if page.next_cursor is None:
            return records, pages
        assert isinstance(page.next_cursor, str)
        cursor = page.next_cursor
    raise AssertionError(f"the scan did not end within {max_pages} pages")


class ScanContract:
    """The scan across owners: each live record once per pass, expired ones skipped, bounded
    pages, opaque cursors that survive writes, malformed cursors refused."""

    @pytest.fixture
    def scanner(self, backend: StorageBackend) -> ScanningBackend:
        """The backend under test, if it declares the scan capability (else the test skips)."""
        if not isinstance(backend, ScanningBackend):
            pytest.skip(
                f"{type(backend).__name__} does not declare the optional ScanningBackend "
                "capability (no scan method): TaskStore.fail_stale(owner=None) and stale-task "
                "recovery are unavailable on it"
            )
        return backend

    def test_scan_empty_store(self, scanner: ScanningBackend) -> None:
        """An empty store scans to one empty page without a cursor."""
        assert scanner.scan(now_ms=T0) == ScanPage([], None)
        assert scanner.scan(None, 1, now_ms=T0) == ScanPage([], None)

    def test_scan_visits_every_live_record_once(
        self, backend: StorageBackend, scanner: ScanningBackend
    ) -> None:
        """Across many owners (tricky ones included) and task ids with separators, a paginated
        pass returns every live record exactly once, whatever the page size, with its key,
        bytes, version, expiry and sort key, and never an expired one or an outcome."""
        owners = [*TRICKY_OWNERS, *(f"owner-{i}" for i in range(12))]
        expected: dict[tuple[str, str], VersionedRecord] = {}
        for i, owner in enumerate(owners):
            ids = ["same-id", f"own-{i}", "a:b{c}/d#"] if i % 3 == 0 else [f"own-{i}"]
            for j, task_id in enumerate(ids):
                key = (owner, task_id)
                expires = None if (i + j) % 4 == 0 else FUTURE
                backend.put(key, data(f"{i}-{j}"), expires, sort_ms=T0 + j, now_ms=T0,
                            outcome=b'{"kind":"result","result":1}')
                if j == 1:
                    backend.put_if_version(key, data(f"{i}-{j}b"), 1, now_ms=T0)
                expected[key] = backend.get(key, now_ms=T0)
            backend.put((owner, "expired"), data(i), T0 + 10, sort_ms=T0, now_ms=T0)
        now = T0 + 10  # the "expired" records are absent from here on
        for limit in (1, 3, 7, 1000):
            records, _ = scan_all(scanner, limit, now)
            counts = Counter(record.key for record in records)
            assert [key for key, count in counts.items() if count > 1] == [], limit
            assert set(counts) == set(expected), limit
            for record in records:
                want = expected[record.key]
                assert (record.data, record.version, record.expires_at_ms, record.sort_ms) == (
                    want.data, want.version, want.expires_at_ms, want.sort_ms
                )
                assert record.outcome is None

    def test_scan_skips_expired_records_before_cleanup(
        self, backend: StorageBackend, scanner: ScanningBackend
    ) -> None:
        """A record is gone from the scan the moment it expires, without cleanup_expired."""
        backend.put(("alice", "short"), data(1), T0 + 100, sort_ms=T0, now_ms=T0)
        backend.put(("bob", "long"), data(2), FUTURE, sort_ms=T0, now_ms=T0)
        keys = {record.key for record in scan_all(scanner, 10, T0 + 99)[0]}
        assert keys == {("alice", "short"), ("bob", "long")}
        keys = {record.key for record in scan_all(scanner, 10, T0 + 100)[0]}
        assert keys == {("bob", "long")}
        records, pages = scan_all(scanner, 10, FUTURE)
        assert records == []
        assert pages[-1] == ScanPage([], None)

    def test_scan_cursor_survives_deletes_and_writes(
        self, backend: StorageBackend, scanner: ScanningBackend
    ) -> None:
        """A cursor is a position, not a record: deleting or rewriting the last record of a
        page neither breaks the pass nor repeats a record."""
        keys = {(f"owner-{i % 5}", f"t{i}") for i in range(20)}
        for key in sorted(keys):
            backend.put(key, data(key[1]), FUTURE, sort_ms=T0, now_ms=T0)
        seen: list[tuple[str, str]] = []
        deleted: set[tuple[str, str]] = set()
        page = scanner.scan(None, 3, now_ms=T0)
        while True:
            seen.extend(record.key for record in page.records)
            if page.next_cursor is None:
                break
            if page.records:
                last = page.records[-1]
                if len(deleted) < 2:
                    assert backend.delete(last.key)
                    deleted.add(last.key)
                else:
                    backend.put_if_version(last.key, data("again"), last.version, now_ms=T0)
            page = scanner.scan(page.next_cursor, 3, now_ms=T0)
        assert Counter(seen) == Counter(keys)

    def test_scan_rejects_malformed_cursors(
        self, backend: StorageBackend, scanner: ScanningBackend
    ) -> None:
        """A cursor the backend did not issue is InvalidCursorError (-32602), never a restart
        or a driver error."""
        backend.put(("alice", "t"), data(1), FUTURE, sort_ms=T0, now_ms=T0)
        for cursor in BAD_CURSORS:
            with pytest.raises(InvalidCursorError):
                scanner.scan(cursor, 5, now_ms=T0)

    def test_scan_limit_must_be_positive(self, scanner: ScanningBackend) -> None:
        """A page size below 1, or not an integer, is InvalidParamsError."""
        for limit in (0, -1, True, 2.5):
            with pytest.raises(InvalidParamsError):
                scanner.scan(None, limit, now_ms=T0)  # type: ignore[arg-type]
