"""What only the in-memory backend promises beyond the shared contract."""

from __future__ import annotations

import pytest

from taskstore.backends.base import encode_scan_cursor
from taskstore.backends.memory import InMemoryBackend
from taskstore.errors import InvalidCursorError
from taskstore.testing import T0


def test_create_delete_churn_keeps_the_expiry_index_bounded() -> None:
    """10,000 create+delete cycles leave the expiry heap small, not 10,000 entries long."""
    backend = InMemoryBackend(stripes=1)
    backend.create(("alice", "keep"), b"{}", T0 + 60_000, sort_ms=T0, now_ms=T0)
    for i in range(10_000):
        key = ("alice", f"t{i}")
        backend.create(key, b"{}", T0 + 60_000, sort_ms=T0, now_ms=T0)
        assert backend.delete(key)
    heap = backend._stripes[0].expiry
    assert len(heap) <= 64
    assert ((T0 + 60_000, "alice", "keep")) in heap
    assert backend.cleanup_expired(T0 + 60_000) == 1


def test_snapshot_reads_are_immutable() -> None:
    """A record returned by get never changes when the key is written again."""
    backend = InMemoryBackend()
    backend.put(("alice", "t"), b"1", None, sort_ms=T0, now_ms=T0)
    first = backend.get(("alice", "t"), now_ms=T0)
    backend.put_if_version(("alice", "t"), b"2", 1, now_ms=T0)
    assert (first.data, first.version) == (b"1", 1)
    assert backend.get(("alice", "t"), now_ms=T0).data == b"2"


def test_scan_order_and_full_pages() -> None:
    """The scan walks owners in order within a stripe and each owner's records by (sort_ms,
    task id); every page is full until the last, which alone has no cursor (none empty)."""
    backend = InMemoryBackend(stripes=1)
    for owner, task_id, sort in [("b", "x", 2), ("a", "y", 1), ("a", "x", 1), ("a", "z", 0)]:
        backend.put((owner, task_id), b"{}", None, sort_ms=T0 + sort, now_ms=T0)
    first = backend.scan(None, 2, now_ms=T0)
    assert [r.key for r in first.records] == [("a", "z"), ("a", "x")]
    second = backend.scan(first.next_cursor, 2, now_ms=T0)
    assert [r.key for r in second.records] == [("a", "y"), ("b", "x")]
    assert second.next_cursor is None


@pytest.mark.parametrize("stripe", [-1, 4, 64])
def test_scan_cursor_of_a_stripe_this_backend_lacks_is_invalid(stripe: int) -> None:
    """A well-formed cursor naming a stripe this backend does not have is InvalidCursorError."""
    backend = InMemoryBackend(stripes=4)
    with pytest.raises(InvalidCursorError):
        backend.scan(encode_scan_cursor(("m1", stripe, b"a", T0, b"t")), 5, now_ms=T0)
