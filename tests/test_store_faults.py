"""How the store answers storage faults, over a scripted backend (no server, no sleeps that
decide outcomes): the retry deadline it hands to backend calls, ``BackendError``'s
``applied``/``transient``/``task_id``, waits riding out outages, and the configuration of
the deadline and the caps. Real servers behind a TCP proxy: ``backends/test_faults_proxy.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import taskstore
from taskstore import (
    BackendError,
    ConfigurationError,
    ManualClock,
    StoreConfig,
    TaskNotFoundError,
    TaskStatus,
    TaskStore,
)
from taskstore.backends.base import retry_deadline
from taskstore.backends.memory import InMemoryBackend
from taskstore.config import DEFAULT_RETRY_DEADLINE_MS, MAX_EXPIRES_AT_MS
from taskstore.testing import T0

OWNER = "alice"


class FlakyBackend(InMemoryBackend):
    """An in-memory backend whose next calls fail as scripted, and which records the retry
    deadline each call was made under."""

    def __init__(self) -> None:
        super().__init__()
        #: Errors the next calls of the named methods raise, in order.
        self.faults: dict[str, list[BackendError]] = {}
        #: Seconds left until the retry deadline, per call, as (method, seconds).
        self.deadlines: list[tuple[str, float]] = []
        #: Called with the method's name before every call (to move a clock, say).
        self.before: Callable[[str], None] = lambda name: None

    def _call(self, name: str) -> None:
        self.deadlines.append((name, retry_deadline() - time.monotonic()))
        self.before(name)
        pending = self.faults.get(name)
        if pending:
            raise pending.pop(0)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._call("get")
        return super().get(*args, **kwargs)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        self._call("create")
        return super().create(*args, **kwargs)

    def put_if_version(self, *args: Any, **kwargs: Any) -> Any:
        self._call("put_if_version")
        return super().put_if_version(*args, **kwargs)

    def wait_for_change(self, *args: Any, **kwargs: Any) -> None:
        self._call("wait_for_change")
        super().wait_for_change(*args, **kwargs)


def _down(applied: bool | None = False) -> BackendError:
    return BackendError("storage unreachable", applied=applied, transient=True)


@pytest.fixture
def flaky() -> FlakyBackend:
    """A scripted backend."""
    return FlakyBackend()


def _store(backend: FlakyBackend, **config: Any) -> TaskStore:
    return TaskStore(backend, config=StoreConfig(**config), clock=ManualClock(T0))


# -- the error ------------------------------------------------------------------------------


def test_backend_error_carries_applied_transient_and_task() -> None:
    """BackendError says what became of the write (False or None, never True), whether the
    fault is transient and which task it was about; its wire form stays generic."""
    error = BackendError("down", applied=None, transient=True, task_id="t1")
    assert (error.applied, error.transient, error.task_id) == (None, True, "t1")
    assert error.to_jsonrpc() == {
        "code": -32603,
        "message": "Internal error: the task storage failed",
    }
    plain = BackendError("corrupt")
    assert (plain.applied, plain.transient, plain.task_id) == (None, False, None)
    with pytest.raises(ValueError, match="never True"):
        BackendError("x", applied=True)


def test_failed_create_names_the_task_it_would_have_made(flaky: FlakyBackend) -> None:
    """A create that fails with an unknown outcome names the task id it generated, so the
    caller can resolve it with get; the same id is what a later get finds when it landed."""
    store = _store(flaky)
    flaky.faults["create"] = [_down(applied=None)]
    with pytest.raises(BackendError) as info:
        store.create(OWNER)
    assert info.value.applied is None and info.value.task_id is not None
    with pytest.raises(TaskNotFoundError):  # this scripted failure applied nothing
        store.get(info.value.task_id, OWNER)


def test_failed_mutation_names_its_task(flaky: FlakyBackend) -> None:
    """A compare-and-set that fails names its task, keeps the backend's verdict, and leaves
    the task as it was when applied is False."""
    store = _store(flaky)
    task = store.create(OWNER)
    flaky.faults["put_if_version"] = [_down(applied=False)]
    with pytest.raises(BackendError) as info:
        store.complete(task.task_id, OWNER, {"ok": True})
    assert (info.value.task_id, info.value.applied) == (task.task_id, False)
    assert store.get(task.task_id, OWNER).status is TaskStatus.WORKING
    # Retrying the same call is safe either way; here it completes the task.
    assert store.complete(task.task_id, OWNER, {"ok": True}).version == 2


# -- the retry deadline ---------------------------------------------------------------------


def test_every_backend_call_runs_under_the_operations_deadline(flaky: FlakyBackend) -> None:
    """Each store operation hands its backend calls one deadline, retry_deadline_ms from its
    start (the read and the compare-and-set of a mutation share it)."""
    store = _store(flaky, retry_deadline_ms=3_000)
    task = store.create(OWNER)
    store.complete(task.task_id, OWNER, None)
    store.get(task.task_id, OWNER)
    names = [name for name, _ in flaky.deadlines]
    assert names == ["create", "get", "put_if_version", "get"]
    assert all(2.5 < left <= 3.0 for _, left in flaky.deadlines), flaky.deadlines


def test_calls_outside_a_store_get_the_default_deadline() -> None:
    """A backend called directly (no store around it) retries for the default deadline."""
    left = retry_deadline() - time.monotonic()
    assert DEFAULT_RETRY_DEADLINE_MS / 1000 - 1 < left <= DEFAULT_RETRY_DEADLINE_MS / 1000


# -- waits ride out outages -----------------------------------------------------------------


def test_wait_rides_out_transient_faults(flaky: FlakyBackend) -> None:
    """Reads and waits that fail transiently do not end a wait: it tries again and returns
    the task once it is terminal."""
    store = _store(flaky)
    task = store.create(OWNER)
    store.complete(task.task_id, OWNER, None)
    flaky.faults["get"] = [_down(), _down(), _down()]
    assert store.wait(task.task_id, OWNER, timeout=30).status is TaskStatus.COMPLETED
    assert not flaky.faults["get"]


def test_wait_is_bounded_by_its_own_timeout_during_an_outage(flaky: FlakyBackend) -> None:
    """A wait whose storage stays down past its timeout raises TimeoutError (chained to the
    BackendError) at that timeout, not at the retry deadline, and each backend call inside
    it retries no longer than the wait has left."""
    store = _store(flaky, retry_deadline_ms=30_000)
    task = store.create(OWNER)
    flaky.faults["get"] = [_down() for _ in range(1_000)]
    flaky.deadlines.clear()
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        store.wait(task.task_id, OWNER, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    assert isinstance(info.value.__cause__, BackendError)
    assert all(left <= 0.3 for _, left in flaky.deadlines)


def test_wait_raises_a_fault_retrying_cannot_cure(flaky: FlakyBackend) -> None:
    """A non-transient BackendError (bad credentials, a missing table) ends a wait at once."""
    store = _store(flaky)
    task = store.create(OWNER)
    flaky.faults["get"] = [BackendError("table not found", applied=False)]
    with pytest.raises(BackendError, match="table not found"):
        store.wait(task.task_id, OWNER, timeout=30)


def test_wait_for_change_rides_out_transient_faults(flaky: FlakyBackend) -> None:
    """wait_for_change neither raises nor returns early on a transient fault: it asks again
    until its timeout (the caller re-reads after it returns)."""
    store = _store(flaky)
    task = store.create(OWNER)
    flaky.faults["wait_for_change"] = [_down() for _ in range(1_000)]
    started = time.monotonic()
    store.wait_for_change(task.task_id, OWNER, task.version, 0.3)
    assert 0.3 <= time.monotonic() - started < 5


def test_wait_of_an_expired_task_during_an_outage_is_not_found(flaky: FlakyBackend) -> None:
    """A task whose expiry passes while the storage is down is gone (TaskNotFoundError)."""
    clock = ManualClock(T0)
    store = TaskStore(flaky, clock=clock)
    task = store.create(OWNER, ttl_ms=5_000)

    def outage_past_expiry(name: str) -> None:
        if name == "wait_for_change":  # the wait has read the task: now the storage fails
            clock.advance(10_000)
            flaky.faults["get"] = [_down() for _ in range(1_000)]
            flaky.faults["wait_for_change"] = [_down() for _ in range(1_000)]

    flaky.before = outage_past_expiry
    with pytest.raises(TaskNotFoundError):
        store.wait(task.task_id, OWNER, timeout=30)


# -- configuration --------------------------------------------------------------------------


def test_default_limits_are_documented_values() -> None:
    """The retry deadline and the field caps default to the documented values."""
    config = StoreConfig()
    assert config.retry_deadline_ms == 10_000
    assert config.max_request_bytes == 262_144
    assert config.max_status_message_bytes == 4_096
    assert config.max_request_method_bytes == 256


@pytest.mark.parametrize(
    "fields",
    [
        {"retry_deadline_ms": 999},
        {"retry_deadline_ms": 30_001},
        {"retry_deadline_ms": True},
        {"max_status_message_bytes": 0},
        {"max_request_method_bytes": 0},
        {"max_request_bytes": -1},
        {"max_ttl_ms": MAX_EXPIRES_AT_MS + 1},
        {"max_ttl_ms": None, "default_ttl_ms": MAX_EXPIRES_AT_MS + 1},
    ],
)
def test_bad_limits_are_configuration_errors(fields: dict[str, Any]) -> None:
    """A retry deadline outside 1–30 s, a cap below its minimum or a TTL setting past the
    latest expiry is ConfigurationError."""
    with pytest.raises(ConfigurationError):
        StoreConfig(**fields)


def test_retry_deadline_is_a_query_option_of_every_url() -> None:
    """retry_deadline_ms is a store field, so taskstore.open takes it from any URL's query
    (and as a keyword), whatever the backend."""
    with taskstore.open("memory://?retry_deadline_ms=2500") as store:
        assert store.config.retry_deadline_ms == 2_500
    with taskstore.open("memory://", retry_deadline_ms=1_000) as store:
        assert store.config.retry_deadline_ms == 1_000
    with pytest.raises(ConfigurationError):
        taskstore.open("memory://?retry_deadline_ms=100")


def test_derived_status_message_is_cut_at_a_character(flaky: FlakyBackend) -> None:
    """fail() with a long error and no message derives the statusMessage from the error,
    cut to the cap at a character boundary; the error itself is stored whole."""
    store = _store(flaky, max_status_message_bytes=7)
    task = store.create(OWNER)
    failed = store.fail(task.task_id, OWNER, {"code": -1, "message": "abc€€€"})
    assert failed.task.status_message == "abc€"  # 6 bytes: the next € would make 9
    assert store.get_result(task.task_id, OWNER).error == {"code": -1, "message": "abc€€€"}
