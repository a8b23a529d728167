"""What only the in-memory backend promises beyond the shared contract."""

from __future__ import annotations

from taskstore.backends.memory import InMemoryBackend
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
