"""Constants and helpers shared by the contract's test groups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from taskstore.backends.base import StorageBackend

__all__ = [
    "FUTURE",
    "T0",
    "TRICKY_OWNERS",
    "data",
    "run_barrier_threads",
    "wait_until",
    "warm_up_waiting",
]

#: The base "now" of the suite (2026-01-01T00:00:00Z in epoch ms).
T0 = 1_767_225_600_000
#: An expiry one hour after T0: a record that stays live throughout a test.
FUTURE = T0 + 3_600_000

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


def run_barrier_threads(
    count: int, target: Callable[[int], Any], *, during: Callable[[], None] | None = None
) -> list[Any]:
    """Run ``target(i)`` on ``count`` real threads released together by a barrier.

    :param during: run on the calling thread right after the release (the calling thread
        then joins the barrier too): a fault injected while the threads work, say.
    :returns: each thread's return value or raised exception, by index.
    :raises AssertionError: a thread was still running after 120 s.
    """
    barrier = threading.Barrier(count + (during is not None))
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
    if during is not None:
        barrier.wait()
        during()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a thread hung"
    return results


def data(n: int | str) -> bytes:
    """Record bytes for ``n``: valid UTF-8 JSON with non-ASCII text."""
    return f'{{"n":"{n}","text":"héllo ✓"}}'.encode()


def warm_up_waiting(backend: StorageBackend, key: tuple[str, str]) -> None:
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


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its final value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()
