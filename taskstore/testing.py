"""The backend contract suite (DESIGN §6), shipped so every backend, ours or yours, runs it.

Subclass :class:`BackendContract` in a pytest module, name the subclass ``Test…`` and provide a
``backend`` fixture that yields a fresh, empty backend (a new key prefix or table per test)::

    import pytest
    from taskstore.testing import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self):
            backend = MyBackend(...)
            yield backend
            backend.close()

Every test passes ``now_ms`` explicitly, so expiry is tested without sleeping. The concurrency
tests need real atomicity: a test double whose conditional writes are not atomic (moto)
overrides the ``backend_is_atomic`` fixture to return ``False`` and they skip. Requires pytest
(the ``test`` extra).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskstore.backends.base import ListPosition, StorageBackend
from taskstore.errors import (
    BackendError,
    QuotaExceededError,
    RecordNotFound,
    TaskStoreError,
    VersionConflict,
)

__all__ = ["T0", "BackendContract", "run_barrier_threads"]

#: The base "now" of the suite (2026-01-01T00:00:00Z in epoch ms).
T0 = 1_767_225_600_000
_FUTURE = T0 + 3_600_000

#: Owners that are prefixes of one another or contain separators and key syntax: a key encoding
#: that is not injective makes some of them collide.
TRICKY_OWNERS = [
    "a",
    "a:",
    "a:b",
    ":b",
    "a/b",
    "a#b",
    "a{b}",
    "{a}",
    "a%3Ab",
    "a b",
    "ä",
    "a\x00b",
    "日本",
    "",
]


def run_barrier_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` on ``count`` real threads released together by a barrier.

    :returns: each thread's return value or raised exception, by index.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target(index)
        except BaseException as exc:  # noqa: BLE001 - collected for the test to assert on
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _data(n: int | str) -> bytes:
    return f'{{"n":"{n}","text":"héllo ✓"}}'.encode()


def _warm_up_waiting(backend: StorageBackend, key: tuple[str, str]) -> None:
    """Let ``backend`` set up its change notifications before a test times a wait.

    A backend may start them on first use and return early from the wait that starts them
    (Redis wakes its waiters when the subscription is confirmed): early returns are allowed,
    they just must not be the steady state. A wait on version 0 of a key that exists asks about
    a write already made, so it returns promptly on every backend.
    """
    started = time.monotonic()
    backend.wait_for_change(key, 0, 30.0)
    elapsed = time.monotonic() - started
    assert elapsed < 10.0, f"missed the write that created {key}: returned after {elapsed:.2f}s"


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class BackendContract:
    """Tests every rule of the :class:`~taskstore.backends.base.StorageBackend` contract.

    Subclasses provide a ``backend`` fixture (fresh and empty for each test).
    """

    @pytest.fixture
    def backend_is_atomic(self) -> bool:
        """Whether the backend's conditional writes are really atomic (override for mocks)."""
        return True

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
        assert backend.put(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0) == 1
        stored = backend.get(key, now_ms=T0)
        assert stored.key == key
        assert stored.data == _data(1)
        assert stored.version == 1
        assert stored.expires_at_ms == _FUTURE
        assert stored.sort_ms == T0
        assert stored.outcome is None

    def test_put_existing_key_increments_version(self, backend: StorageBackend) -> None:
        """Each unconditional write adds exactly 1 to the version and replaces the data."""
        key = ("alice", "t1")
        versions = [backend.put(key, _data(i), _FUTURE, sort_ms=T0, now_ms=T0) for i in range(5)]
        assert versions == [1, 2, 3, 4, 5]
        assert backend.get(key, now_ms=T0).data == _data(4)

    def test_put_keeps_sort_key_of_existing_record(self, backend: StorageBackend) -> None:
        """A put without sort_ms keeps the existing record's sort key."""
        key = ("alice", "t1")
        backend.put(key, _data(1), _FUTURE, sort_ms=T0 - 5, now_ms=T0)
        backend.put(key, _data(2), _FUTURE, now_ms=T0)
        assert backend.get(key, now_ms=T0).sort_ms == T0 - 5

    def test_put_without_expiry_never_expires(self, backend: StorageBackend) -> None:
        """expires_at_ms=None keeps the record forever, through cleanup too."""
        key = ("alice", "forever")
        backend.put(key, _data(1), None, sort_ms=T0, now_ms=T0)
        far = T0 + 10 * 365 * 86_400_000
        assert backend.get(key, now_ms=far).expires_at_ms is None
        assert backend.cleanup_expired(far) == 0
        assert backend.get(key, now_ms=far).version == 1

    def test_put_over_expired_record_restarts_at_version_1(self, backend: StorageBackend) -> None:
        """An expired record is absent: writing its key again starts a new record."""
        key = ("alice", "t1")
        backend.put(key, _data(1), T0 + 10, sort_ms=T0, now_ms=T0)
        backend.put(key, _data(2), T0 + 10, now_ms=T0)
        assert backend.put(key, _data(3), _FUTURE, sort_ms=T0 + 20, now_ms=T0 + 20) == 1

    def test_binary_safe_utf8_data(self, backend: StorageBackend) -> None:
        """Multibyte UTF-8 bytes come back byte for byte."""
        key = ("ünïcode", "tâsk")
        data = '{"s":"日本語 🚀 \\u0000 \\"q\\""}'.encode()
        backend.put(key, data, _FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.get(key, now_ms=T0).data == data

    # -- expiry ---------------------------------------------------------------------------

    def test_expiry_boundary(self, backend: StorageBackend) -> None:
        """A record is live strictly before expires_at_ms and absent from that instant on."""
        key = ("alice", "t1")
        backend.put(key, _data(1), T0 + 1000, sort_ms=T0, now_ms=T0)
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
        backend.put(key, _data(1), T0 + 10, sort_ms=T0, now_ms=T0)
        later = T0 + 10
        try:
            backend.put_if_version(key, _data(2), 1, now_ms=later)
        except VersionConflict as conflict:
            assert conflict.actual == 0
        else:
            raise AssertionError("CAS on an expired record must conflict")
        assert backend.list_by_prefix("alice", now_ms=later) == []
        assert (
            backend.create(
                ("alice", "new"), _data(3), None, sort_ms=later, max_live=1, now_ms=later
            )
            == 1
        )

    def test_cleanup_expired_counts_and_removes(self, backend: StorageBackend) -> None:
        """cleanup_expired removes exactly the expired records and reports how many."""
        for i in range(5):
            backend.put(("alice", f"short{i}"), _data(i), T0 + 100, sort_ms=T0, now_ms=T0)
        for i in range(3):
            backend.put(("bob", f"long{i}"), _data(i), _FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.cleanup_expired(T0 + 50) == 0
        assert backend.cleanup_expired(T0 + 100) == 5
        assert backend.cleanup_expired(T0 + 100) == 0
        assert len(backend.list_by_prefix("bob", limit=10, now_ms=T0 + 100)) == 3
        assert backend.list_by_prefix("alice", limit=10, now_ms=T0) == []

    # -- compare-and-set ------------------------------------------------------------------

    def test_put_if_version_success(self, backend: StorageBackend) -> None:
        """A CAS with the current version writes and returns version + 1."""
        key = ("alice", "t1")
        backend.put(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.put_if_version(key, _data(2), 1, now_ms=T0) == 2
        assert backend.put_if_version(key, _data(3), 2, now_ms=T0) == 3
        stored = backend.get(key, now_ms=T0)
        assert (stored.data, stored.version) == (_data(3), 3)

    def test_put_if_version_conflict_reports_actual(self, backend: StorageBackend) -> None:
        """A stale CAS raises VersionConflict with expected and actual, and writes nothing."""
        key = ("alice", "t1")
        backend.put(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(key, _data(2), _FUTURE, now_ms=T0)
        try:
            backend.put_if_version(key, _data(9), 1, now_ms=T0)
        except VersionConflict as conflict:
            assert (conflict.key, conflict.expected, conflict.actual) == (key, 1, 2)
        else:
            raise AssertionError("expected VersionConflict")
        assert backend.get(key, now_ms=T0).data == _data(2)

    def test_put_if_version_missing_key_conflicts_with_zero(self, backend: StorageBackend) -> None:
        """A CAS on a missing key is a conflict with actual version 0 and creates nothing."""
        key = ("alice", "ghost")
        try:
            backend.put_if_version(key, _data(1), 1, now_ms=T0)
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
        backend.put(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0)
        backend.put_if_version(key, _data(2), 1, now_ms=T0)
        assert backend.get(key, now_ms=T0).expires_at_ms == _FUTURE
        backend.put_if_version(key, _data(3), 2, T0 + 500, now_ms=T0)
        assert backend.get(key, now_ms=T0).expires_at_ms == T0 + 500
        backend.put_if_version(key, _data(4), 3, None, now_ms=T0)
        assert backend.get(key, now_ms=T0 + 1000).expires_at_ms is None

    # -- outcomes -------------------------------------------------------------------------

    def test_outcome_only_transferred_when_asked(self, backend: StorageBackend) -> None:
        """The outcome blob is stored beside the record and returned only with
        include_outcome=True; writes without an outcome keep it; list never returns it."""
        key = ("alice", "t1")
        backend.put(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0)
        blob = b'{"kind":"result","result":{"big":"' + b"x" * 1000 + b'"}}'
        backend.put_if_version(key, _data(2), 1, outcome=blob, now_ms=T0)
        assert backend.get(key, now_ms=T0).outcome is None
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome == blob
        backend.put_if_version(key, _data(3), 2, now_ms=T0)
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome == blob
        assert [r.outcome for r in backend.list_by_prefix("alice", now_ms=T0)] == [None]

    def test_include_outcome_without_outcome_is_none(self, backend: StorageBackend) -> None:
        """A record without an outcome reports None even when asked for it."""
        key = ("alice", "t1")
        backend.put(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0)
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome is None

    def test_outcome_gone_with_expired_record(self, backend: StorageBackend) -> None:
        """A new record written over an expired key does not inherit the old outcome."""
        key = ("alice", "t1")
        backend.put(key, _data(1), T0 + 10, sort_ms=T0, outcome=b'{"kind":"result"}', now_ms=T0)
        backend.put(key, _data(2), _FUTURE, sort_ms=T0 + 20, now_ms=T0 + 20)
        assert backend.get(key, include_outcome=True, now_ms=T0 + 20).outcome is None

    # -- create and the quota -------------------------------------------------------------

    def test_create_inserts_version_1(self, backend: StorageBackend) -> None:
        """create inserts a new record at version 1."""
        key = ("alice", "t1")
        assert backend.create(key, _data(1), _FUTURE, sort_ms=T0, max_live=5, now_ms=T0) == 1
        stored = backend.get(key, now_ms=T0)
        assert (stored.version, stored.sort_ms, stored.data) == (1, T0, _data(1))

    def test_create_existing_key_conflicts(self, backend: StorageBackend) -> None:
        """create on a live key raises VersionConflict with its version and changes nothing."""
        key = ("alice", "t1")
        backend.create(key, _data(1), _FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(key, _data(2), _FUTURE, now_ms=T0)
        try:
            backend.create(key, _data(9), _FUTURE, sort_ms=T0, now_ms=T0)
        except VersionConflict as conflict:
            assert conflict.actual == 2
        else:
            raise AssertionError("expected VersionConflict")
        assert backend.get(key, now_ms=T0).data == _data(2)

    def test_create_enforces_quota_per_owner(self, backend: StorageBackend) -> None:
        """The owner's live count is capped at max_live; other owners are unaffected."""
        for i in range(3):
            backend.create(
                ("alice", f"t{i}"), _data(i), _FUTURE, sort_ms=T0 + i, max_live=3, now_ms=T0
            )
        try:
            backend.create(("alice", "t3"), _data(3), _FUTURE, sort_ms=T0, max_live=3, now_ms=T0)
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
            backend.create(("alice:", "t0"), _data(0), _FUTURE, sort_ms=T0, max_live=3, now_ms=T0)
            == 1
        )
        assert (
            backend.create(("alice", "t9"), _data(9), _FUTURE, sort_ms=T0, max_live=None, now_ms=T0)
            == 1
        )

    def test_quota_ignores_expired_and_deleted(self, backend: StorageBackend) -> None:
        """Expired and deleted records free their quota slot at once."""
        backend.create(("alice", "a"), _data(1), T0 + 100, sort_ms=T0, max_live=2, now_ms=T0)
        backend.create(("alice", "b"), _data(2), _FUTURE, sort_ms=T0, max_live=2, now_ms=T0)
        try:
            backend.create(("alice", "c"), _data(3), _FUTURE, sort_ms=T0, max_live=2, now_ms=T0)
        except QuotaExceededError:
            pass
        else:
            raise AssertionError("expected QuotaExceededError")
        assert (
            backend.create(
                ("alice", "c"), _data(3), _FUTURE, sort_ms=T0 + 100, max_live=2, now_ms=T0 + 100
            )
            == 1
        )
        assert backend.delete(("alice", "b")) is True
        assert (
            backend.create(
                ("alice", "d"), _data(4), _FUTURE, sort_ms=T0 + 100, max_live=2, now_ms=T0 + 100
            )
            == 1
        )

    def test_create_over_expired_key(self, backend: StorageBackend) -> None:
        """create may reuse the key of an expired record, starting at version 1."""
        key = ("alice", "t1")
        backend.create(key, _data(1), T0 + 10, sort_ms=T0, now_ms=T0)
        assert backend.create(key, _data(2), _FUTURE, sort_ms=T0 + 10, now_ms=T0 + 10) == 1
        assert backend.get(key, now_ms=T0 + 10).data == _data(2)

    # -- delete ---------------------------------------------------------------------------

    def test_delete(self, backend: StorageBackend) -> None:
        """delete reports whether something was removed and removes it from list too."""
        key = ("alice", "t1")
        backend.put(key, _data(1), _FUTURE, sort_ms=T0, outcome=b'{"kind":"result"}', now_ms=T0)
        assert backend.delete(key) is True
        assert backend.delete(key) is False
        assert backend.list_by_prefix("alice", now_ms=T0) == []
        assert backend.put(key, _data(2), _FUTURE, sort_ms=T0, now_ms=T0) == 1
        assert backend.get(key, include_outcome=True, now_ms=T0).outcome is None

    # -- listing --------------------------------------------------------------------------

    def test_list_newest_first_ties_by_task_id(self, backend: StorageBackend) -> None:
        """Listing is by sort key descending, then task id descending."""
        backend.put(("alice", "b"), _data("b"), _FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "a"), _data("a"), _FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "c"), _data("c"), _FUTURE, sort_ms=T0 - 1, now_ms=T0)
        backend.put(("alice", "z"), _data("z"), _FUTURE, sort_ms=T0 + 1, now_ms=T0)
        listed = backend.list_by_prefix("alice", limit=10, now_ms=T0)
        assert [r.key[1] for r in listed] == ["z", "b", "a", "c"]
        assert [r.sort_ms for r in listed] == [T0 + 1, T0, T0, T0 - 1]

    def test_list_keyset_pagination_visits_each_once(self, backend: StorageBackend) -> None:
        """Paging with the last record's position visits every live record exactly once."""
        ids = [f"t{i:03d}" for i in range(23)]
        for i, task_id in enumerate(ids):
            backend.put(("alice", task_id), _data(i), _FUTURE, sort_ms=T0 + i // 3, now_ms=T0)
        seen: list[str] = []
        after = None
        while True:
            page = backend.list_by_prefix("alice", after, 5, now_ms=T0)
            seen.extend(r.key[1] for r in page)
            if len(page) < 5:
                break
            after = ListPosition(page[-1].sort_ms, page[-1].key[1])
        assert seen == sorted(ids, key=lambda t: (int(t[1:]) // 3, t), reverse=True)

    def test_list_skips_expired(self, backend: StorageBackend) -> None:
        """Expired records never appear in a page, and the page is still filled."""
        for i in range(6):
            expires = T0 + 100 if i % 2 else _FUTURE
            backend.put(("alice", f"t{i}"), _data(i), expires, sort_ms=T0 + i, now_ms=T0)
        listed = backend.list_by_prefix("alice", limit=3, now_ms=T0 + 100)
        assert [r.key[1] for r in listed] == ["t4", "t2", "t0"]

    def test_list_stale_anchor_raises(self, backend: StorageBackend) -> None:
        """Paging after a record that was deleted or expired raises RecordNotFound."""
        for i in range(3):
            backend.put(
                ("alice", f"t{i}"),
                _data(i),
                T0 + 100 if i == 1 else _FUTURE,
                sort_ms=T0 + i,
                now_ms=T0,
            )
        backend.delete(("alice", "t2"))
        for anchor, now in (
            (ListPosition(T0 + 2, "t2"), T0),
            (ListPosition(T0 + 1, "t1"), T0 + 100),
        ):
            try:
                backend.list_by_prefix("alice", anchor, 5, now_ms=now)
            except RecordNotFound:
                continue
            raise AssertionError(f"stale anchor {anchor} accepted")

    def test_list_limit_and_empty_owner(self, backend: StorageBackend) -> None:
        """limit caps the page; an unknown owner lists nothing."""
        for i in range(4):
            backend.put(("alice", f"t{i}"), _data(i), _FUTURE, sort_ms=T0 + i, now_ms=T0)
        assert len(backend.list_by_prefix("alice", limit=2, now_ms=T0)) == 2
        assert backend.list_by_prefix("nobody", limit=2, now_ms=T0) == []

    def test_owner_keys_are_injective(self, backend: StorageBackend) -> None:
        """Owners that are prefixes of each other or contain separators never see each other's
        records, by get or by list."""
        for i, owner in enumerate(TRICKY_OWNERS):
            backend.put((owner, "same-id"), _data(i), _FUTURE, sort_ms=T0, now_ms=T0)
            backend.put((owner, f"own-{i}"), _data(i), _FUTURE, sort_ms=T0 + 1, now_ms=T0)
        for i, owner in enumerate(TRICKY_OWNERS):
            assert backend.get((owner, "same-id"), now_ms=T0).data == _data(i)
            listed = backend.list_by_prefix(owner, limit=50, now_ms=T0)
            assert sorted(r.key[1] for r in listed) == sorted(["same-id", f"own-{i}"])
            assert {r.key[0] for r in listed} == {owner}

    def test_task_ids_with_separators(self, backend: StorageBackend) -> None:
        """Task ids are arbitrary strings too."""
        ids = ["a:b", "a", "a:", "{x}", "a/b#c", "ß"]
        for i, task_id in enumerate(ids):
            backend.put(("alice", task_id), _data(i), _FUTURE, sort_ms=T0, now_ms=T0)
        for i, task_id in enumerate(ids):
            assert backend.get(("alice", task_id), now_ms=T0).data == _data(i)
        assert len(backend.list_by_prefix("alice", limit=50, now_ms=T0)) == len(ids)

    # -- events and waiting ---------------------------------------------------------------

    def test_listener_receives_events_of_writes(self, backend: StorageBackend) -> None:
        """Writes that carry an event deliver it to listeners; writes without one don't;
        a removed listener hears nothing more."""
        received: list[bytes] = []
        # A second listener stays registered throughout: it proves the later events were
        # published, so the removed listener's silence is not just a delivery still on its way.
        witness: list[bytes] = []
        remove = backend.add_listener(received.append)
        remove_witness = backend.add_listener(witness.append)
        try:
            key = ("alice", "t1")
            try:
                backend.create(key, _data(1), _FUTURE, sort_ms=T0, event=b'{"e":1}', now_ms=T0)
                backend.put_if_version(key, _data(2), 1, now_ms=T0)
                backend.put_if_version(key, _data(3), 2, event=b'{"e":3}', now_ms=T0)
                backend.put(key, _data(4), _FUTURE, event=b'{"e":4}', now_ms=T0)
                assert _wait_until(lambda: len(received) >= 3)
                assert sorted(received) == [b'{"e":1}', b'{"e":3}', b'{"e":4}']
            finally:
                remove()
            backend.put(key, _data(5), _FUTURE, event=b'{"e":5}', now_ms=T0)
            # The marker is written after event 5: once the witness holds it, event 5 has
            # been dispatched to every listener that was registered when it was published.
            backend.put(key, _data(6), _FUTURE, event=b'{"e":6}', now_ms=T0)
            assert _wait_until(lambda: {b'{"e":5}', b'{"e":6}'} <= set(witness))
        finally:
            remove_witness()
        assert sorted(witness) == [b'{"e":1}', b'{"e":3}', b'{"e":4}', b'{"e":5}', b'{"e":6}']
        assert sorted(received) == [b'{"e":1}', b'{"e":3}', b'{"e":4}']

    def test_failing_listener_never_breaks_writes(self, backend: StorageBackend) -> None:
        """A listener that raises does not fail the write or starve other listeners."""
        good: list[bytes] = []

        def bad(_: bytes) -> None:
            raise RuntimeError("listener bug")

        remove_bad = backend.add_listener(bad)
        remove_good = backend.add_listener(good.append)
        try:
            assert (
                backend.put(("alice", "t"), _data(1), _FUTURE, sort_ms=T0, event=b"{}", now_ms=T0)
                == 1
            )
            assert _wait_until(lambda: good == [b"{}"])
        finally:
            remove_bad()
            remove_good()

    def test_wait_for_change_wakes_on_write(self, backend: StorageBackend) -> None:
        """A waiter stays blocked until another thread writes the key with an event, then
        returns long before its timeout (at most one spurious early return before the write)."""
        key = ("alice", "t1")
        backend.put(key, _data(1), None, sort_ms=T0, now_ms=T0)
        _warm_up_waiting(backend, key)
        write_started: list[float] = []

        def write() -> None:
            time.sleep(0.3)  # lets the waiter block first; no outcome depends on this sleep
            write_started.append(time.monotonic())
            backend.put_if_version(key, _data(2), 1, event=b"{}", now_ms=T0)

        writer = threading.Thread(target=write)
        started = time.monotonic()
        writer.start()
        returns: list[float] = []
        try:
            # As a caller does: re-read after every return, wait again while nothing changed.
            while backend.get(key, now_ms=T0).version == 1 and time.monotonic() - started < 30:
                backend.wait_for_change(key, 1, 30.0)
                returns.append(time.monotonic())
        finally:
            writer.join(30)
        assert write_started, "the writer never wrote"
        early = [t - started for t in returns if t < write_started[0]]
        assert len(early) <= 1, f"returned {len(early)} times before the write: busy waiting"
        assert returns, "the write landed before the waiter ever waited"
        assert returns[-1] - started < 10.0, f"woke only after {returns[-1] - started:.2f}s"
        assert backend.get(key, now_ms=T0).version == 2

    def test_wait_for_change_blocks_until_timeout_without_a_write(
        self, backend: StorageBackend
    ) -> None:
        """Without any write, wait_for_change blocks for its timeout: it may return early once
        (a spurious wake-up) but never keeps returning at once, which would make callers
        re-read in a busy loop; nor does it hang."""
        key = ("alice", "t1")
        backend.put(key, _data(1), None, sort_ms=T0, now_ms=T0)
        _warm_up_waiting(backend, key)
        timeout_s = 0.3
        started = time.monotonic()
        deadline = started + timeout_s
        returns: list[float] = []
        while time.monotonic() < deadline:
            backend.wait_for_change(key, 1, deadline - time.monotonic())
            returns.append(time.monotonic() - started)
        assert len(returns) <= 2, (
            f"returned {len(returns)} times within {timeout_s}s without a write: "
            f"first returns after {[round(t, 4) for t in returns[:5]]}s"
        )
        assert returns[-1] < 10.0, f"hung for {returns[-1]:.2f}s"

    def test_wait_for_change_never_misses_a_write_made_before_the_call(
        self, backend: StorageBackend
    ) -> None:
        """A write made after the caller read ``version`` but before it called wait_for_change
        (with or without an event) is not missed: the call returns long before its timeout."""
        key = ("alice", "t1")
        backend.put(key, _data(1), None, sort_ms=T0, now_ms=T0)
        for version, event in ((1, None), (2, b"{}")):
            assert backend.get(key, now_ms=T0).version == version  # the caller's read
            backend.put_if_version(key, _data(version + 1), version, event=event, now_ms=T0)
            started = time.monotonic()
            backend.wait_for_change(key, version, 30.0)
            elapsed = time.monotonic() - started
            assert elapsed < 10.0, f"missed the write: returned after {elapsed:.2f}s"

    # -- concurrency ----------------------------------------------------------------------

    def test_concurrent_cas_exactly_one_winner(
        self, backend: StorageBackend, backend_is_atomic: bool
    ) -> None:
        """16 threads CAS from the same version: exactly one wins, the rest conflict."""
        if not backend_is_atomic:
            pytest.skip("this backend's conditional writes are not atomic (a mock)")
        key = ("alice", "t1")
        backend.put(key, _data(0), _FUTURE, sort_ms=T0, now_ms=T0)
        results = run_barrier_threads(
            16, lambda i: backend.put_if_version(key, _data(i), 1, now_ms=T0)
        )
        assert sum(1 for r in results if r == 2) == 1
        assert sum(1 for r in results if isinstance(r, VersionConflict)) == 15
        assert backend.get(key, now_ms=T0).version == 2

    def test_concurrent_cas_retry_loops_lose_nothing(
        self, backend: StorageBackend, backend_is_atomic: bool
    ) -> None:
        """8 threads × 10 increments through read-CAS-retry loops end at exactly version 81."""
        if not backend_is_atomic:
            pytest.skip("this backend's conditional writes are not atomic (a mock)")
        key = ("alice", "counter")
        backend.put(key, b"0", _FUTURE, sort_ms=T0, now_ms=T0)

        def increment(_: int) -> int:
            done = 0
            while done < 10:
                current = backend.get(key, now_ms=T0)
                try:
                    backend.put_if_version(
                        key, str(int(current.data) + 1).encode(), current.version, now_ms=T0
                    )
                except VersionConflict:
                    continue
                done += 1
            return done

        results = run_barrier_threads(8, increment)
        assert results == [10] * 8
        stored = backend.get(key, now_ms=T0)
        assert (stored.data, stored.version) == (b"80", 81)

    def test_concurrent_create_quota_admits_exactly_the_limit(
        self, backend: StorageBackend, backend_is_atomic: bool
    ) -> None:
        """32 threads creating for one owner with room for 10: exactly 10 succeed."""
        if not backend_is_atomic:
            pytest.skip("this backend's conditional writes are not atomic (a mock)")
        results = run_barrier_threads(
            32,
            lambda i: backend.create(
                ("alice", f"t{i}"), _data(i), _FUTURE, sort_ms=T0, max_live=10, now_ms=T0
            ),
        )
        assert sum(1 for r in results if r == 1) == 10
        assert sum(1 for r in results if isinstance(r, QuotaExceededError)) == 22
        assert len(backend.list_by_prefix("alice", limit=100, now_ms=T0)) == 10

    def test_errors_are_taskstore_errors(self, backend: StorageBackend) -> None:
        """Contract signals are typed: a missing key is RecordNotFound (a TaskStoreError, not a
        BackendError), whatever the key's characters."""
        try:
            backend.get(("", ""), now_ms=T0)
        except RecordNotFound as exc:
            assert not isinstance(exc, BackendError)
            assert isinstance(exc, TaskStoreError)
            return
        except BackendError as exc:
            raise AssertionError(f"backend error for a plain missing key: {exc}") from exc
        raise AssertionError("get of a key never written returned instead of RecordNotFound")
