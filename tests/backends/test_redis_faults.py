"""Server faults on a dedicated redis-server: a stopped, frozen or restarted server and a
killed subscription. Calls must fail with BackendError once their retry deadline has passed
(never hang) and work again once the server is back; events and wake-ups must resume without
help. (Outages shorter than the deadline, dropped replies and ``applied`` are in
``test_faults_proxy.py``, driven by a TCP proxy.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from support.servers import require_modules

require_modules("redis", markers=["redis", "redis_server"])

import redis

import taskstore
from support.redis_support import RedisServer, fresh_prefix
from taskstore import BackendError, TaskStatus, TaskStore
from taskstore.backends.redis import RedisBackend

pytestmark = [pytest.mark.redis, pytest.mark.redis_server]

OWNER = "alice"
TIMEOUT_S = 0.5
#: The shortest retry deadline a store allows.
DEADLINE_MS = 1_000
#: The deadline, one attempt bounded by the 0.5 s timeouts begun just before it, plus slack for
#: a busy machine: still well under the 10 s default deadline or one attempt at the backend's
#: 5 s default timeouts, so only the configured deadline and timeouts explain a pass.
_FAIL_FAST_BUDGET_S = DEADLINE_MS / 1000 + TIMEOUT_S + 2.5


def _store(server: RedisServer, **options: Any) -> TaskStore:
    url = f"{server.url}?prefix={fresh_prefix()}"
    return taskstore.open(
        url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry_deadline_ms=DEADLINE_MS,
        **options,
    )


def _fails_fast(action: Callable[[], object], budget_s: float) -> BackendError:
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        action()
    elapsed = time.monotonic() - started
    assert elapsed < budget_s, f"took {elapsed:.2f}s"
    assert isinstance(info.value.__cause__, (redis.RedisError, OSError))
    return info.value


def _eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_stopped_server_fails_fast_then_recovers_on_restart(
    dedicated_redis_server: RedisServer,
) -> None:
    """With the server stopped every store call raises BackendError once its retry deadline
    has passed (the cause chained; transient; reads and refused writes known not applied), a
    wait rides the outage out until its own timeout, and after a restart on the same port the
    next calls succeed (scripts reloaded)."""
    server = dedicated_redis_server
    with _store(server) as store:
        task = store.create(OWNER)
        server.stop()
        budget = _FAIL_FAST_BUDGET_S
        for action in (
            lambda: store.get(task.task_id, OWNER),
            lambda: store.create(OWNER),
            lambda: store.list(OWNER),
            lambda: store.set_variables(task.task_id, OWNER, {"k": 1}),
            lambda: store.complete(task.task_id, OWNER, {"ok": True}),
            store.cleanup_expired,
        ):
            error = _fails_fast(action, budget)
            assert isinstance(error.__cause__, (redis.ConnectionError, OSError))
            # Every connection was refused: nothing was sent, so nothing can have been applied.
            assert error.transient and error.applied is False
        started = time.monotonic()
        with pytest.raises(TimeoutError) as timed_out:
            store.wait(task.task_id, OWNER, timeout=1.5)
        assert 1.5 <= time.monotonic() - started < 1.5 + budget
        assert isinstance(timed_out.value.__cause__, BackendError)
        server.start()  # same port, empty: the old task is gone, the scripts too
        fresh = store.create(OWNER)
        assert store.get(fresh.task_id, OWNER).status is TaskStatus.WORKING
        done = store.complete(fresh.task_id, OWNER, {"ok": True})
        assert done.version == 2
        assert [t.task_id for t in store.list(OWNER).tasks] == [fresh.task_id]


def test_frozen_server_times_out_within_the_configured_timeout(
    dedicated_redis_server: RedisServer,
) -> None:
    """A server that accepts nothing (SIGSTOP) makes calls raise BackendError (cause: a
    TimeoutError) within the retry deadline and one socket timeout, never hang; a write whose
    command was sent is of unknown outcome; after SIGCONT the same store works again."""
    server = dedicated_redis_server
    assert server.process is not None
    with _store(server) as store:
        task = store.create(OWNER)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            budget = _FAIL_FAST_BUDGET_S
            error = _fails_fast(lambda: store.get(task.task_id, OWNER), budget)
            assert isinstance(error.__cause__, redis.TimeoutError)
            assert error.applied is False  # a read
            # The read before the compare-and-set times out: nothing was written.
            error = _fails_fast(
                lambda: store.set_variables(task.task_id, OWNER, {"k": 1}), budget
            )
            assert error.applied is False and error.task_id == task.task_id
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert store.set_variables(task.task_id, OWNER, {"k": 2}).variables == {"k": 2}


def test_events_and_waiters_resume_after_a_restart(dedicated_redis_server: RedisServer) -> None:
    """The listener thread reconnects by itself after the server restarts: a subscriber
    started before the outage receives events again, and a waiter is woken by an event again
    (long before its 30 s poll interval)."""
    server = dedicated_redis_server
    prefix = fresh_prefix()
    url = f"{server.url}?prefix={prefix}"
    options = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    seen: list[dict[str, Any]] = []
    with (
        taskstore.open(url, poll_interval_ms=30_000, wait_slice_s=30, **options) as listener,
        taskstore.open(url, **options) as writer,
    ):
        listener.subscribe(seen.append)
        server.stop()
        time.sleep(0.3)  # the listener notices the outage meanwhile
        server.start()

        # Events published before the listener has resubscribed are lost by design; keep
        # writing until one arrives (the resubscription takes at most about a second).
        def delivered() -> bool:
            task = writer.create(OWNER)
            writer.cancel(task.task_id, OWNER)
            return _eventually(lambda: any(e["taskId"] == task.task_id for e in seen), 0.3)

        assert _eventually(delivered, 10)

        task = writer.create(OWNER)
        timer = threading.Timer(0.2, lambda: writer.complete(task.task_id, OWNER, None))
        started = time.monotonic()
        timer.start()
        assert listener.wait(task.task_id, OWNER, timeout=20).status is TaskStatus.COMPLETED
        timer.join()
        # The listener polls every 30 s at most (poll interval and wait slice): only the
        # completion's event, over the re-established subscription, ends the wait this soon.
        assert time.monotonic() - started < 10.0


def test_killed_subscription_is_reestablished(dedicated_redis_server: RedisServer) -> None:
    """CLIENT KILL of the pub/sub connection (e.g. an output-buffer limit hit) wakes waiters at
    once and the subscription comes back: later events are delivered again."""
    server = dedicated_redis_server
    backend = RedisBackend.from_url(server.url, prefix=fresh_prefix(), wait_slice_s=30)
    admin = redis.Redis(port=server.port)
    try:
        received: list[bytes] = []
        backend.add_listener(received.append)
        key = (OWNER, "t")
        # An event's round trip: the subscription is confirmed and its confirmation (which
        # wakes every waiter once) handled before the waiter starts.
        backend.put(key, b"{}", None, event=b"settled")
        assert _eventually(lambda: b"settled" in received)
        woke: list[float] = []

        def wait() -> None:
            backend.wait_for_change(key, 1, 20)
            woke.append(time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)
        killed_at = time.monotonic()
        assert admin.client_kill_filter(_type="pubsub") >= 1
        waiter.join(30)
        assert woke, "the waiter never returned"
        assert killed_at <= woke[0] < killed_at + 10.0  # not the 20 s timeout nor the 30 s slice

        def delivered() -> bool:
            backend.put(key, b"{}", None, event=b"after-kill")
            return _eventually(lambda: b"after-kill" in received, 0.3)

        assert _eventually(delivered, 10)
    finally:
        backend.close()
        admin.close()
