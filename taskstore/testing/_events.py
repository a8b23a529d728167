"""Write events, listeners and blocking waits: part of the backend contract."""

from __future__ import annotations

import threading
import time

from taskstore.backends.base import StorageBackend
from taskstore.testing._support import FUTURE, T0, data, wait_until, warm_up_waiting

__all__ = ["EventsContract"]


class EventsContract:
    """Write events, listeners and blocking waits."""

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
                backend.create(key, data(1), FUTURE, sort_ms=T0, event=b'{"e":1}', now_ms=T0)
                backend.put_if_version(key, data(2), 1, now_ms=T0)
                backend.put_if_version(key, data(3), 2, event=b'{"e":3}', now_ms=T0)
                backend.put(key, data(4), FUTURE, event=b'{"e":4}', now_ms=T0)
                assert wait_until(lambda: len(received) >= 3)
                assert sorted(received) == [b'{"e":1}', b'{"e":3}', b'{"e":4}']
            finally:
                remove()
            backend.put(key, data(5), FUTURE, event=b'{"e":5}', now_ms=T0)
            # The marker is written after event 5: once the witness holds it, event 5 has
            # been dispatched to every listener that was registered when it was published.
            backend.put(key, data(6), FUTURE, event=b'{"e":6}', now_ms=T0)
            assert wait_until(lambda: {b'{"e":5}', b'{"e":6}'} <= set(witness))
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
                backend.put(("alice", "t"), data(1), FUTURE, sort_ms=T0, event=b"{}", now_ms=T0)
                == 1
            )
            assert wait_until(lambda: good == [b"{}"])
        finally:
            remove_bad()
            remove_good()

    def test_wait_for_change_wakes_on_write(self, backend: StorageBackend) -> None:
        """A waiter stays blocked until another thread writes the key with an event, then
        returns long before its timeout (at most one spurious early return before the write)."""
        key = ("alice", "t1")
        backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
        warm_up_waiting(backend, key)
        write_started: list[float] = []

        def write() -> None:
            time.sleep(0.3)  # lets the waiter block first; no outcome depends on this sleep
            write_started.append(time.monotonic())
            backend.put_if_version(key, data(2), 1, event=b"{}", now_ms=T0)

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
        backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
        warm_up_waiting(backend, key)
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
        backend.put(key, data(1), None, sort_ms=T0, now_ms=T0)
        for version, event in ((1, None), (2, b"{}")):
            assert backend.get(key, now_ms=T0).version == version  # the caller's read
            backend.put_if_version(key, data(version + 1), version, event=event, now_ms=T0)
            started = time.monotonic()
            backend.wait_for_change(key, version, 30.0)
            elapsed = time.monotonic() - started
            assert elapsed < 10.0, f"missed the write: returned after {elapsed:.2f}s"
