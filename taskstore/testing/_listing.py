"""Listing order, keyset pages and injective owner keys: part of the backend contract."""

from __future__ import annotations

from taskstore.backends.base import ListPosition, StorageBackend
from taskstore.errors import RecordNotFound
from taskstore.testing._support import FUTURE, T0, TRICKY_OWNERS, data

__all__ = ["ListingContract"]


class ListingContract:
    """Listing: order, keyset pages, expiry, stale anchors, injective owner keys."""

    # -- listing --------------------------------------------------------------------------

    def test_list_newest_first_ties_by_task_id(self, backend: StorageBackend) -> None:
        """Listing is by sort key descending, then task id descending."""
        backend.put(("alice", "b"), data("b"), FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "a"), data("a"), FUTURE, sort_ms=T0, now_ms=T0)
        backend.put(("alice", "c"), data("c"), FUTURE, sort_ms=T0 - 1, now_ms=T0)
        backend.put(("alice", "z"), data("z"), FUTURE, sort_ms=T0 + 1, now_ms=T0)
        listed = backend.list_by_prefix("alice", limit=10, now_ms=T0)
        assert [r.key[1] for r in listed] == ["z", "b", "a", "c"]
        assert [r.sort_ms for r in listed] == [T0 + 1, T0, T0, T0 - 1]

    def test_list_keyset_pagination_visits_each_once(self, backend: StorageBackend) -> None:
        """Paging with the last record's position visits every live record exactly once."""
        ids = [f"t{i:03d}" for i in range(23)]
        for i, task_id in enumerate(ids):
            backend.put(("alice", task_id), data(i), FUTURE, sort_ms=T0 + i // 3, now_ms=T0)
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
            expires = T0 + 100 if i % 2 else FUTURE
            backend.put(("alice", f"t{i}"), data(i), expires, sort_ms=T0 + i, now_ms=T0)
        listed = backend.list_by_prefix("alice", limit=3, now_ms=T0 + 100)
        assert [r.key[1] for r in listed] == ["t4", "t2", "t0"]

    def test_list_stale_anchor_raises(self, backend: StorageBackend) -> None:
        """Paging after a record that was deleted or expired raises RecordNotFound."""
        for i in range(3):
            backend.put(
                ("alice", f"t{i}"),
                data(i),
                T0 + 100 if i == 1 else FUTURE,
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
            backend.put(("alice", f"t{i}"), data(i), FUTURE, sort_ms=T0 + i, now_ms=T0)
        assert len(backend.list_by_prefix("alice", limit=2, now_ms=T0)) == 2
        assert backend.list_by_prefix("nobody", limit=2, now_ms=T0) == []

    def test_owner_keys_are_injective(self, backend: StorageBackend) -> None:
        """Owners that are prefixes of each other or contain separators never see each other's
        records, by get or by list."""
        for i, owner in enumerate(TRICKY_OWNERS):
            backend.put((owner, "same-id"), data(i), FUTURE, sort_ms=T0, now_ms=T0)
            backend.put((owner, f"own-{i}"), data(i), FUTURE, sort_ms=T0 + 1, now_ms=T0)
        for i, owner in enumerate(TRICKY_OWNERS):
            assert backend.get((owner, "same-id"), now_ms=T0).data == data(i)
            listed = backend.list_by_prefix(owner, limit=50, now_ms=T0)
            assert sorted(r.key[1] for r in listed) == sorted(["same-id", f"own-{i}"])
            assert {r.key[0] for r in listed} == {owner}

    def test_task_ids_with_separators(self, backend: StorageBackend) -> None:
        """Task ids are arbitrary strings too."""
        ids = ["a:b", "a", "a:", "{x}", "a/b#c", "ß"]
        for i, task_id in enumerate(ids):
            backend.put(("alice", task_id), data(i), FUTURE, sort_ms=T0, now_ms=T0)
        for i, task_id in enumerate(ids):
            assert backend.get(("alice", task_id), now_ms=T0).data == data(i)
        assert len(backend.list_by_prefix("alice", limit=50, now_ms=T0)) == len(ids)
