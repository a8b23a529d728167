"""Races between real threads and typed errors: part of the backend contract."""

from __future__ import annotations

import pytest

from taskstore.backends.base import StorageBackend
from taskstore.errors import (
    BackendError,
    QuotaExceededError,
    RecordNotFound,
    TaskStoreError,
    VersionConflict,
)
from taskstore.testing._support import FUTURE, T0, data, run_barrier_threads

__all__ = ["ConcurrencyContract"]


class ConcurrencyContract:
    """Races between real threads (skipped where conditional writes are not atomic) and typed
    errors."""

    # -- concurrency ----------------------------------------------------------------------

    def test_concurrent_cas_exactly_one_winner(
        self, backend: StorageBackend, backend_is_atomic: bool
    ) -> None:
        """16 threads CAS from the same version: exactly one wins, the rest conflict."""
        if not backend_is_atomic:
            pytest.skip("this backend's conditional writes are not atomic (a mock)")
        key = ("alice", "t1")
        backend.put(key, data(0), FUTURE, sort_ms=T0, now_ms=T0)
        results = run_barrier_threads(
            16, lambda i: backend.put_if_version(key, data(i), 1, now_ms=T0)
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
        backend.put(key, b"0", FUTURE, sort_ms=T0, now_ms=T0)

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
                ("alice", f"t{i}"), data(i), FUTURE, sort_ms=T0, max_live=10, now_ms=T0
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
