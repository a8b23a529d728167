"""Versions, expiry, compare-and-set, outcomes, quota and delete: part of the backend contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskstore.backends.base import StorageBackend
from taskstore.config import MAX_EXPIRES_AT_MS
from taskstore.errors import (
    InvalidParamsError,
    QuotaExceededError,
    RecordNotFound,
    VersionConflict,
)
from taskstore.testing._support import FUTURE, T0, data

__all__ = ["RecordsContract"]


class RecordsContract:
    """Versions, expiry, compare-and-set, outcomes, create with the quota, delete."""

    # -- get / put ------------------------------------------------------------------------

    def test_get_missing_raises_record_not_found(self, backend: StorageBackend) -> None:
        """A key never written is RecordNotFound."""
        try:
            backend.get(("alice", "nope"), now_ms=T0)
        except RecordNotFound:
            return
        raise AssertionError("expected RecordNotFound")

    def test_put_new_key_starts_at_version_1(self, backend: StorageBackend) -> None:
        """The first write of a key returns version 1 and get returns exactly what was put."""
        key = ("alice", "t1")
        assert backend.put(key, data(1), FUTURE, sort_ms=T0, now_ms=T0) == 1
        stored = backend.get(key, now_ms=T0)
        assert stored.key == key
        assert stored.data == data(1)
        assert stored.version == 1
        assert stored.expires_at_ms == FUTURE
        assert stored.sort_ms == T0
        assert stored.outcome is None

    def test_put_existing_key_increments_version(self, backend: StorageBackend) -> None:
        """Each unconditional write adds exactly 1 to the version and replaces the data."""
        key = ("alice", "t1")
        versions = [backend.put(key, data(i), FUTURE, sort_ms=T0, now_ms=T0) for i in range(5)]
        assert versions == [1, 2, 3, 4, 5]
        assert backend.get(key, now_ms=T0).data == data(4)

    def test_put_keeps_sort_key_of_existing_record(self, backend: StorageBackend) -> None:
        """A put without sort_ms keeps the existing record's sort key."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0 - 5, now_ms=T0)
        backend.put(key, data(2), FUTURE, now_ms=T0)
        assert backend.get(key, now_ms=T0).sort_ms == T0 - 5

    def test_put_without_expiry_never_expires(self, backend: StorageBackend) -> None:
        """expires_at_ms=None keeps the record forever, through cleanup too."""
        key = ("alice", "forever")
        backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
        far = T0 + 10 * 365 * 86_400_000
        assert backend.get(key, now_ms=far).expires_at_ms is None
        assert backend.cleanup_expired(far) == 0
        assert backend.get(key, now_ms=far).version == 1

    def test_put_over_expired_record_restarts_at_version_1(self, backend: StorageBackend) -> None:
        """An expired record is absent: writing its key again starts a new record."""
        key = ("alice", "t1")
        backend.put(key, data(1), T0 + 10, sort_ms=T0, now_ms=T0)
        backend.put(key, data(2), T0 + 10, now_ms=T0)
        assert backend.put(key, data(3), FUTURE, sort_ms=T0 + 20, now_ms=T0 + 20) == 1

    def test_binary_safe_utf8_data(self, backend: StorageBackend) -> None:
        """Multibyte UTF-8 bytes come back byte for byte."""
        key = ("ünïcode", "tâsk")
        data = '{"s":"日本語 🚀 \\u0000 \\"q\\""}'.encode()
        backend.put(key, data, FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.get(key, now_ms=T0).data == data

    # -- expiry ---------------------------------------------------------------------------

    def test_expiry_boundary(self, backend: StorageBackend) -> None:
        """A record is live strictly before expires_at_ms and absent from that instant on."""
        key = ("alice", "t1")
        backend.put(key, data(1), T0 + 1000, sort_ms=T0, now_ms=T0)
        assert backend.get(key, now_ms=T0 + 999).version == 1
        for now in (T0 + 1000, T0 + 1001):
            try:
                backend.get(key, now_ms=now)
            except RecordNotFound:
                continue
            raise AssertionError(f"record still visible at {now - T0} ms")

    def test_expired_record_is_absent_for_every_operation(self, backend: StorageBackend) -> None:
        """Expired means absent: get, CAS, list and the quota all ignore it."""
        key = ("alice", "old")
        backend.put(key, data(1), T0 + 10, sort_ms=T0, now_ms=T0)
        later = T0 + 10
        try:
            backend.put_if_version(key, data(2), 1, now_ms=later)
        except VersionConflict as conflict:
            assert conflict.actual == 0
        else:
            raise AssertionError("CAS on an expired record must conflict")
        assert backend.list_by_prefix("alice", now_ms=later) == []
        assert (
            backend.create(
                ("alice", "new"), data(3), None, sort_ms=later, max_live=1, now_ms=later
            )
            == 1
        )

    def test_cleanup_expired_counts_and_removes(self, backend: StorageBackend) -> None:
        """cleanup_expired removes exactly the expired records and reports how many."""
        for i in range(5):
            backend.put(("alice", f"short{i}"), data(i), T0 + 100, sort_ms=T0, now_ms=T0)
        for i in range(3):
            backend.put(("bob", f"long{i}"), data(i), FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.cleanup_expired(T0 + 50) == 0
        assert backend.cleanup_expired(T0 + 100) == 5
        assert backend.cleanup_expired(T0 + 100) == 0
        assert len(backend.list_by_prefix("bob", limit=10, now_ms=T0 + 100)) == 3
        assert backend.list_by_prefix("alice", limit=10, now_ms=T0) == []

    # -- compare-and-set ------------------------------------------------------------------

    def test_put_if_version_success(self, backend: StorageBackend) -> None:
        """A CAS with the current version writes and returns version + 1."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.put_if_version(key, data(2), 1, now_ms=T0) == 2
        assert backend.put_if_version(key, data(3), 2, now_ms=T0) == 3
        stored = backend.get(key, now_ms=T0)
        assert (stored.data, stored.version) == (data(3), 3)

    def test_put_if_version_conflict_reports_actual(self, backend: StorageBackend) -> None:
        """A stale CAS raises VersionConflict with expected and actual, and writes nothing."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(key, data(2), FUTURE, now_ms=T0)
        try:
            backend.put_if_version(key, data(9), 1, now_ms=T0)
        except VersionConflict as conflict:
            assert (conflict.key, conflict.expected, conflict.actual) == (key, 1, 2)
        else:
            raise AssertionError("expected VersionConflict")
        assert backend.get(key, now_ms=T0).data == data(2)

    def test_put_if_version_missing_key_conflicts_with_zero(self, backend: StorageBackend) -> None:
        """A CAS on a missing key is a conflict with actual version 0 and creates nothing."""
        key = ("alice", "ghost")
        try:
            backend.put_if_version(key, data(1), 1, now_ms=T0)
        except VersionConflict as conflict:
            assert conflict.actual == 0
        else:
            raise AssertionError("expected VersionConflict")
        try:
            backend.get(key, now_ms=T0)
        except RecordNotFound:
            return
        raise AssertionError("a failed CAS must not create the record")

    def test_put_if_version_keeps_or_sets_expiry(self, backend: StorageBackend) -> None:
        """CAS keeps the stored expiry by default and changes it when given."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0, now_ms=T0)
        backend.put_if_version(key, data(2), 1, now_ms=T0)
        assert backend.get(key, now_ms=T0).expires_at_ms == FUTURE
        backend.put_if_version(key, data(3), 2, T0 + 500, now_ms=T0)
        assert backend.get(key, now_ms=T0).expires_at_ms == T0 + 500
        backend.put_if_version(key, data(4), 3, None, now_ms=T0)
        assert backend.get(key, now_ms=T0 + 1000).expires_at_ms is None

    def test_latest_expiry_is_stored_exactly(self, backend: StorageBackend) -> None:
        """MAX_EXPIRES_AT_MS (year 9999) is stored and read back to the millisecond by
        create, put and compare-and-set alike, and such a record is live and listed."""
        backend.create(("alice", "c"), data(1), MAX_EXPIRES_AT_MS, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "p"), data(2), MAX_EXPIRES_AT_MS, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "v"), data(3), FUTURE, sort_ms=T0, now_ms=T0)
        backend.put_if_version(("alice", "v"), data(4), 1, MAX_EXPIRES_AT_MS, now_ms=T0)
        late = MAX_EXPIRES_AT_MS - 1
        for task_id in ("c", "p", "v"):
            assert backend.get(("alice", task_id), now_ms=late).expires_at_ms == MAX_EXPIRES_AT_MS
        listed = backend.list_by_prefix("alice", now_ms=late)
        assert sorted(r.key[1] for r in listed) == ["c", "p", "v"]
        assert {r.expires_at_ms for r in listed} == {MAX_EXPIRES_AT_MS}

    @pytest.mark.parametrize("expires", [MAX_EXPIRES_AT_MS + 1, 2**63, -1, True, 1.5])
    def test_expiry_outside_the_range_is_refused(
        self, backend: StorageBackend, expires: Any
    ) -> None:
        """An expiry past MAX_EXPIRES_AT_MS, negative or not an integer is InvalidParamsError
        on every write, the same on every backend, and nothing is written."""
        key = ("alice", "t1")
        backend.put(("alice", "kept"), data(0), FUTURE, sort_ms=T0, now_ms=T0)
        writes: tuple[Callable[[], int], ...] = (
            lambda: backend.create(key, data(1), expires, sort_ms=T0, now_ms=T0),
            lambda: backend.put(key, data(1), expires, sort_ms=T0, now_ms=T0),
            lambda: backend.put_if_version(("alice", "kept"), data(1), 1, expires, now_ms=T0),
        )
        for write in writes:
            with pytest.raises(InvalidParamsError):
                write()
        with pytest.raises(RecordNotFound):
            backend.get(key, now_ms=T0)
        assert backend.get(("alice", "kept"), now_ms=T0).version == 1

    # -- outcomes -------------------------------------------------------------------------

    def test_outcome_only_transferred_when_asked(self, backend: StorageBackend) -> None:
        """The outcome blob is stored beside the record and returned only with
        include_outcome=True; writes without an outcome keep it; list never returns it."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0, now_ms=T0)
        blob = b'{"kind":"result","result":{"big":"' + b"x" * 1000 + b'"}}'
        backend.put_if_version(key, data(2), 1, outcome=blob, now_ms=T0)
        assert backend.get(key, now_ms=T0).outcome is None
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome == blob
        backend.put_if_version(key, data(3), 2, now_ms=T0)
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome == blob
        assert [r.outcome for r in backend.list_by_prefix("alice", now_ms=T0)] == [None]

    def test_include_outcome_without_outcome_is_none(self, backend: StorageBackend) -> None:
        """A record without an outcome reports None even when asked for it."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome is None

    def test_outcome_gone_with_expired_record(self, backend: StorageBackend) -> None:
        """A new record written over an expired key does not inherit the old outcome."""
        key = ("alice", "t1")
        backend.put(key, data(1), T0 + 10, sort_ms=T0, outcome=b'{"kind":"result"}', now_ms=T0)
        backend.put(key, data(2), FUTURE, sort_ms=T0 + 20, now_ms=T0 + 20)
        assert backend.get(key, include_outcome=True, now_ms=T0 + 20).outcome is None

    # -- create and the quota -------------------------------------------------------------

    def test_create_inserts_version_1(self, backend: StorageBackend) -> None:
        """create inserts a new record at version 1."""
        key = ("alice", "t1")
        assert backend.create(key, data(1), FUTURE, sort_ms=T0, max_live=5, now_ms=T0) == 1
        stored = backend.get(key, now_ms=T0)
        assert (stored.version, stored.sort_ms, stored.data) == (1, T0, data(1))

    def test_create_existing_key_conflicts(self, backend: StorageBackend) -> None:
        """create on a live key raises VersionConflict with its version and changes nothing."""
        key = ("alice", "t1")
        backend.create(key, data(1), FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(key, data(2), FUTURE, now_ms=T0)
        try:
            backend.create(key, data(9), FUTURE, sort_ms=T0, now_ms=T0)
        except VersionConflict as conflict:
            assert conflict.actual == 2
        else:
            raise AssertionError("expected VersionConflict")
        assert backend.get(key, now_ms=T0).data == data(2)

    def test_create_enforces_quota_per_owner(self, backend: StorageBackend) -> None:
        """The owner's live count is capped at max_live; other owners are unaffected."""
        for i in range(3):
            backend.create(
                ("alice", f"t{i}"), data(i), FUTURE, sort_ms=T0 + i, max_live=3, now_ms=T0
            )
        try:
            backend.create(("alice", "t3"), data(3), FUTURE, sort_ms=T0, max_live=3, now_ms=T0)
        except QuotaExceededError:
            pass
        else:
            raise AssertionError("expected QuotaExceededError")
        try:
            backend.get(("alice", "t3"), now_ms=T0)
        except RecordNotFound:
            pass
        else:
            raise AssertionError("a refused create must not write")
        assert (
            backend.create(("alice:", "t0"), data(0), FUTURE, sort_ms=T0, max_live=3, now_ms=T0)
            == 1
        )
        assert (
            backend.create(("alice", "t9"), data(9), FUTURE, sort_ms=T0, max_live=None, now_ms=T0)
            == 1
        )

    def test_quota_ignores_expired_and_deleted(self, backend: StorageBackend) -> None:
        """Expired and deleted records free their quota slot at once."""
        backend.create(("alice", "a"), data(1), T0 + 100, sort_ms=T0, max_live=2, now_ms=T0)
        backend.create(("alice", "b"), data(2), FUTURE, sort_ms=T0, max_live=2, now_ms=T0)
        try:
            backend.create(("alice", "c"), data(3), FUTURE, sort_ms=T0, max_live=2, now_ms=T0)
        except QuotaExceededError:
            pass
        else:
            raise AssertionError("expected QuotaExceededError")
        assert (
            backend.create(
                ("alice", "c"), data(3), FUTURE, sort_ms=T0 + 100, max_live=2, now_ms=T0 + 100
            )
            == 1
        )
        assert backend.delete(("alice", "b")) is True
        assert (
            backend.create(
                ("alice", "d"), data(4), FUTURE, sort_ms=T0 + 100, max_live=2, now_ms=T0 + 100
            )
            == 1
        )

    def test_create_over_expired_key(self, backend: StorageBackend) -> None:
        """create may reuse the key of an expired record, starting at version 1."""
        key = ("alice", "t1")
        backend.create(key, data(1), T0 + 10, sort_ms=T0, now_ms=T0)
        assert backend.create(key, data(2), FUTURE, sort_ms=T0 + 10, now_ms=T0 + 10) == 1
        assert backend.get(key, now_ms=T0 + 10).data == data(2)

    # -- delete ---------------------------------------------------------------------------

    def test_delete(self, backend: StorageBackend) -> None:
        """delete reports whether something was removed and removes it from list too."""
        key = ("alice", "t1")
        backend.put(key, data(1), FUTURE, sort_ms=T0, outcome=b'{"kind":"result"}', now_ms=T0)
        assert backend.delete(key) is True
        assert backend.delete(key) is False
        assert backend.list_by_prefix("alice", now_ms=T0) == []
        assert backend.put(key, data(2), FUTURE, sort_ms=T0, now_ms=T0) == 1
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome is None
